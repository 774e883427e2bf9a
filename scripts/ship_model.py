"""Copy a training run's best model into the package, write its model card and its ``model.onnx``.

    python scripts/ship_model.py RUN_DIR --name qm9-small --test-report REPORT_DIR \
        [--command-train "..."] [--command-eval "..."] [--note "limitations paragraph"]

Every figure in the card is read from the run (``best/model.json``, ``logs/metrics.csv``) and
from ``rhosr evaluate`` reports (``report.json``); nothing is typed in.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

PRETRAINED = Path(__file__).resolve().parent.parent / "src" / "rhosr" / "pretrained"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--name", default="qm9-small")
    ap.add_argument("--test-report", required=True, help="rhosr evaluate -o folder, test split")
    ap.add_argument("--command-train", default="")
    ap.add_argument("--command-eval", default="")
    ap.add_argument("--validation-report", default=None,
                    help="rhosr evaluate -o folder on the store's current validation split (optional)")
    ap.add_argument("--note", default="", help="a limitations paragraph for the card")
    args = ap.parse_args()
    run = Path(args.run_dir)
    meta = json.loads((run / "best" / "model.json").read_text())
    report = json.loads((Path(args.test_report) / "report.json").read_text())
    target = PRETRAINED / args.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "best" / "model.safetensors", target / "model.safetensors")
    meta = {**meta, "store": Path(meta.get("store", "")).name, "test": report["summary"]}
    (target / "model.json").write_text(json.dumps(meta, indent=2))
    from rhosr.store import DatasetStore

    store = DatasetStore.open(Path(report["context"]["store"]).expanduser())
    counts = {s: len(store.entry_ids(s)) for s in ("train", "validation", "test")}
    s = report["summary"]
    m, sad = s["err_model"], s["err_sad"]
    from rhosr.checkpoint import load_model
    from rhosr.model import count_parameters
    from rhosr.predict import RARE_ELEMENT_MOLECULES

    net = load_model(target)[0]
    params = count_parameters(net)
    base = net.config.base.name
    base_text = {
        "none": "no base: the network's output is the density (the paper's).",
        "sad_linear": "base `sad_linear`: the network learns the correction to the linearly "
                      "interpolated coarse SAD.",
        "sad_fine": "base `sad_fine`: the network learns the correction to the SAD on the fine mesh.",
        "fitted_prior": "base `fitted_prior`: the SAD on the fine mesh plus radial corrections per atom "
                        "kind and terms along bonds and lobes, fitted to training labels "
                        "(`rhosr fit-prior`: least squares, then passes towards the least absolute "
                        "deviation); the network learns the correction to that prior.",
    }.get(base, f"base `{base}`.")
    tiling = ("local: large boxes are tiled exactly." if net.local else
              "not local: large boxes run the trunk's body whole and its local head in tiles (exact)."
              if net.head_tiled else "not tileable.")
    val_n = (f"{meta['validation']['n']} molecules" if "validation" in meta
             else "set size not recorded by runs of that time")
    v = None
    if args.validation_report:
        v = json.loads((Path(args.validation_report) / "report.json").read_text())["summary"]
    hours = (meta.get("train_seconds") or 0) / 3600
    lines = [
        f"# Model card: {args.name}",
        "",
        "What it does: coarse SAD density (x2 coarser than the label mesh) in, valence electron "
        "density on the fine mesh (~0.083 Angstrom, 200 Hartree plane-wave mesh) out, for molecules "
        "in the authors' box (extent + 4 Angstrom in total per axis).",
        "",
        "## Model",
        f"- {net.describe()}; {params:,} parameters.",
        "- Its full config (with the prior's coefficients, if any): `model` in `model.json`.",
        f"- The network is {tiling} It starts from its {base_text}",
        "",
        "## Training data",
        f"- Store `{meta['store']}` (QM9 geometries from qm9pack, seeded split "
        f"`{store.meta.get('split')}`), labels with preset `{meta['preset']['name']}` "
        f"({meta['preset'].get('label_error_vs_paper', '')}).",
        *([f"- Trained on {meta['train_entries']} training entries."] if meta.get("train_entries") else []),
        *([f"- Training molecules containing each element: "
           f"{', '.join(f'{el} {n}' for el, n in meta['train_elements'].items())} (`rhosr predict` "
           f"warns about elements in fewer than {RARE_ELEMENT_MOLECULES}, or none)."]
          if meta.get("train_elements") else []),
        f"- Entries in the store when this card was written: train {counts['train']}, validation "
        f"{counts['validation']}, test {counts['test']} (the test figures below use the "
        f"{s['n_molecules']} evaluated).",
        "",
        "## Training",
        f"- Config: `{json.dumps({k: v for k, v in meta['training'].items() if k != 'model'})}`.",
        f"- Best checkpoint at step {meta['step']} (epoch {meta['epoch']}), reached after {hours:.2f} h "
        f"of training on {meta.get('hardware', '?')}.",
        f"- Command: `{args.command_train}`" if args.command_train else "",
        "",
        "## Accuracy (held-out molecules only)",
        f"- Validation Err_rho when the checkpoint was chosen (whole boxes, {val_n}): "
        f"{meta['val_err']:.3f} %.",
        *([f"- On the store's validation split now ({v['n_molecules']} molecules): model mean "
           f"{v['err_model']['mean']:.3f} %, SAD {v['err_sad']['mean']:.3f} %."] if v else []),
        f"- Test Err_rho over {s['n_molecules']} test molecules: model mean {m['mean']:.3f} %, median "
        f"{m['median']:.3f} %, 90th percentile {m['p90']:.3f} %; the SAD input on the same molecules: mean "
        f"{sad['mean']:.3f} %, median {sad['median']:.3f} %"
        + (f"; the model's base alone: mean {s['err_base']['mean']:.3f} %, median "
           f"{s['err_base']['median']:.3f} %." if "err_base" in s else "."),
        f"- Command: `{args.command_eval}`" if args.command_eval else "",
        "",
        "| element | test molecules | model (%) | SAD (%) |",
        "|---|---|---|---|",
        *[f"| {el} | {v['molecules']} | {v['err_model']:.3f} | {v['err_sad']:.3f} |"
          for el, v in s["elements"].items()],
        "",
        "Per-element error: |drho| over the points within the element's covalent radius (Pyykko & "
        "Atsumi), relative to the reference electrons there.",
        *(["", "## Limitations", "", args.note] if args.note else []),
    ]
    (target / "MODEL_CARD.md").write_text("\n".join(line for line in lines) + "\n")
    from rhosr.onnx_export import export_onnx

    worst = export_onnx(target)  # rhosr predict runs it without importing torch
    print(f"shipped {target} (model.onnx within {worst:.1e} of PyTorch)")


if __name__ == "__main__":
    main()
