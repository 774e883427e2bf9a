"""SCF cycles and wall time from the model's guess against PySCF's ``minao`` and ``atom``.

For the first ``--n`` QM9 test molecules, ``fast`` preset, the same box for every guess (the
model's). The model guess's time includes the prediction and the Kohn-Sham potential of the
predicted density, which the SCF's first cycle diagonalises (``rhosr.dft.guess.start_from_density``;
its cycles count that diagonalisation, as minao's count the first diagonalisation of theirs).

    OMP_NUM_THREADS=2 python benchmarks/scf_guess.py --n 30 [--model M] [--label-store STORE]
        [--guesses minao atom] [--fresh]

``--label-store``: also start from each molecule's own converged ``fast`` DFT density (the
store's label, same box) the same way: the best a perfect model
could do on this path (column ``label``; cached like minao/atom; its time has no prediction).

The ``minao`` and ``atom`` runs do not depend on the model: they are kept in
``results/cache/scf_guess.jsonl`` (``result_cache.py``), so a rerun with a new model only redoes
the model's SCF, and an interrupted run resumes. Their wall times were measured when cached:
compare them with model times from the same machine and thread count (the table gives the
thread count of each). ``--fresh`` measures them again in this run (and refreshes the cache):
use it whenever the wall-time ratio is the figure you quote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from rhosr.commands.scf import run_scf
from rhosr.grid import Grid
from rhosr.molecule import Molecule, read_molecule
from rhosr.predict import load_predictor, model_folder
from rhosr.qm9 import load_split
from rhosr.store import DatasetStore, entry_atoms

sys.path.insert(0, str(Path(__file__).parent))
from result_cache import ResultCache  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GUESSES = ("model", "minao", "atom")


def label_density(store: DatasetStore, entry_id: str):
    """(placed molecule, grid, label rho) of a store entry, for ``run_scf(guess="density")``."""
    meta = store.entry_meta(entry_id)
    rho = np.asarray(store.read_entry(entry_id, ("label",)).label, np.float64)
    return Molecule(entry_atoms(meta), name=entry_id), Grid.from_dict(meta["grid"]), rho


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--model", default=None)
    ap.add_argument("--label-store", default=None, help="add the label-density ceiling column")
    ap.add_argument("--guesses", nargs="+", default=list(GUESSES[1:]), choices=GUESSES[1:],
                    help="PySCF guesses to compare the model's with (default: all)")
    ap.add_argument("--fresh", action="store_true",
                    help="re-measure the cached minao/atom/label rows in this run (same-run timings)")
    args = ap.parse_args()
    guesses = ("model", *args.guesses) + (("label",) if args.label_store else ())
    store = DatasetStore.open(args.label_store) if args.label_store else None
    folder = model_folder(args.model)
    margin = float(load_predictor(folder)[1]["grid"].get("margin_angstrom", 4.0))
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    cache = ResultCache("scf_guess")
    rows, runs = [], []
    for index in load_split()["test"][: args.n]:
        mol = read_molecule(f"qm9:{int(index)}")
        out = {"model": run_scf(mol, "model", "fast", folder, margin)}
        out["model"]["threads"] = threads
        for g in guesses[1:]:
            key = f"qm9:{int(index)}|fast|margin={margin}|{g}"
            if args.fresh or cache.get(key) is None:
                density = label_density(store, f"qm9_{int(index):06d}") if g == "label" else None
                g_run = "density" if g == "label" else g
                cache.put(key, {**run_scf(mol, g_run, "fast", folder, margin, density=density),
                                "threads": threads})
            out[g] = cache.get(key)
        runs.append(out)
        de = max(abs(out[g]["energy"] - out["minao"]["energy"]) for g in guesses)
        rows.append(
            f"| {int(index)} | "
            + " | ".join(f"{out[g]['cycles']}" for g in guesses)
            + " | "
            + " | ".join(f"{out[g]['total_seconds']:.1f}" for g in guesses)
            + f" | {de:.1e} |"
        )
        print(rows[-1], flush=True)
    mean = {
        g: (np.mean([r[g]["cycles"] for r in runs]), np.mean([r[g]["total_seconds"] for r in runs]))
        for g in guesses
    }
    command = " ".join("STORE" if a == args.label_store else a for a in sys.argv)  # no machine's path
    lines = [
        "# SCF from the model's density vs PySCF's guesses (`fast` preset)",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python {command}`; "
        f"model `{folder.name}`.",
        "",
        "| guess | mean cycles | mean wall s (incl. prediction for model) | OMP threads when measured |",
        "|---|---|---|---|",
        *[f"| {g} | {c:.1f} | {t:.1f} | {', '.join(sorted({str(r[g].get('threads', '?')) for r in runs}))} |"
          for g, (c, t) in mean.items()],
        "",
        f"Cycles saved vs minao: {100 * (1 - mean['model'][0] / mean['minao'][0]):.1f} %; wall time saved: "
        f"{100 * (1 - mean['model'][1] / mean['minao'][1]):.1f} %."
        + (f" From the DFT label's own density (the ceiling of this path): "
           f"{100 * (1 - mean['label'][0] / mean['minao'][0]):.1f} % fewer cycles."
           if "label" in mean else ""),
        "",
        f"| QM9 index | cycles {' | '.join(guesses)} | s {' | '.join(guesses)} | max |dE| vs minao (Ha) |",
        "|---|" + "---|" * (2 * len(guesses) + 1),
        *rows,
    ]
    (RESULTS / "scf_guess.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "scf_guess.json").write_text(json.dumps(runs, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
