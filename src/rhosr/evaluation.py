"""Err_rho of a model (and of its SAD input) over many molecules, with the per-element
analysis of the paper (error inside the atoms' covalent radii).

Per molecule: ``err_model`` and ``err_sad`` = 100 * integral |rho - rho_ref| / N_e (percent),
and ``err_base``, the same for the model's base alone (its prior: the interpolated or fine-mesh
SAD or the fitted prior, through the ReLU and rescaled to N_e; None for base ``none``), which
says what the trunk adds to it.
The SAD error is taken at the coarse points against the label there (the fine-mesh value
differs by < 0.01 percentage points, MEASUREMENTS.md). Per element X: 100 * sum of
|rho - rho_ref| over the fine points within the single-bond covalent radius of Pyykko and
Atsumi (2009) of any X atom, divided by the reference electrons on the same points - the
paper's "density error around the atoms" (section 3.3).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rhosr.grid import BOHR_ANGSTROM

# Pyykko & Atsumi, Chem. Eur. J. 15, 186 (2009), single-bond covalent radii in Angstrom.
COVALENT_RADII_PYYKKO = {
    "H": 0.32,
    "He": 0.46,
    "Li": 1.33,
    "Be": 1.02,
    "B": 0.85,
    "C": 0.75,
    "N": 0.71,
    "O": 0.63,
    "F": 0.64,
    "Ne": 0.67,
    "Na": 1.55,
    "Mg": 1.39,
    "Al": 1.26,
    "Si": 1.16,
    "P": 1.11,
    "S": 1.03,
    "Cl": 0.99,
    "Ar": 0.96,
    "K": 1.96,
    "Ca": 1.71,
    "Sc": 1.48,
    "Ti": 1.36,
    "V": 1.34,
    "Cr": 1.22,
    "Mn": 1.19,
    "Fe": 1.16,
    "Co": 1.11,
    "Ni": 1.10,
    "Cu": 1.12,
    "Zn": 1.18,
    "Ga": 1.24,
    "Ge": 1.21,
    "As": 1.21,
    "Se": 1.16,
    "Br": 1.14,
    "Kr": 1.17,
}


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a report shows it: the user's home folder written ``~``, so that a report
    committed or shared names no one machine's folders."""
    text, home = str(path), str(Path.home())
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home):]
    return text


def shown_model(folder: Path) -> str:
    """A model folder as a report shows it: ``NAME (shipped in the package)`` for a shipped model,
    else its path (see :func:`shown_path`)."""
    from rhosr.predict import PRETRAINED

    if Path(folder).resolve().parent == PRETRAINED.resolve():
        return f"{Path(folder).name} (shipped in the package)"
    return shown_path(folder)


def covalent_radius(symbol: str) -> float:
    """Angstrom; Pyykko-Atsumi up to Kr, ASE's (Cordero et al.) beyond."""
    if symbol in COVALENT_RADII_PYYKKO:
        return COVALENT_RADII_PYYKKO[symbol]
    from ase.data import atomic_numbers, covalent_radii

    return float(covalent_radii[atomic_numbers[symbol]])


def element_masks(symbols, positions_bohr: np.ndarray, lengths_bohr, mesh) -> dict[str, np.ndarray]:
    """Per element, the boolean mask (mesh shape) of points within its atoms' covalent radii
    (periodic minimum image)."""
    lengths = np.asarray(lengths_bohr, float)
    steps = lengths / np.asarray(mesh)
    masks: dict[str, np.ndarray] = {}
    for symbol, pos in zip(symbols, np.asarray(positions_bohr, float)):
        r = covalent_radius(symbol) / BOHR_ANGSTROM
        mask = masks.setdefault(symbol, np.zeros(mesh, bool))
        lo = np.floor((pos - r) / steps).astype(int)
        hi = np.ceil((pos + r) / steps).astype(int)
        axes = [np.arange(a, b + 1) for a, b in zip(lo, hi)]
        d2 = sum(
            np.square(ax * h - p).reshape([-1 if k == i else 1 for k in range(3)])
            for i, (ax, h, p) in enumerate(zip(axes, steps, pos))
        )
        idx = np.ix_(*[ax % n for ax, n in zip(axes, mesh)])
        mask[idx] |= d2 <= r * r
    return masks


def element_errors(rho: np.ndarray, ref: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    diff = np.abs(rho - ref)
    return {el: 100.0 * float(diff[m].sum() / max(ref[m].sum(), 1e-30)) for el, m in masks.items()}


@dataclass
class MoleculeResult:
    id: str
    n_atoms: int
    n_electrons: float
    err_model: float
    err_sad: float
    seconds: float
    elements_model: dict = field(default_factory=dict)
    elements_sad: dict = field(default_factory=dict)
    err_base: float | None = None


def evaluate_pair(
    entry_id,
    symbols,
    positions_bohr,
    lengths_bohr,
    n_electrons,
    prediction,
    label,
    sad_coarse,
    seconds: float = 0.0,
    base=None,
) -> MoleculeResult:
    """Compare one prediction (fine mesh), its SAD (coarse mesh) and the model's base (fine
    mesh, rescaled; or None) with the label (fine mesh)."""
    from rhosr.metrics import err_rho

    up = label.shape[0] // sad_coarse.shape[0]
    dv_fine = float(np.prod(lengths_bohr)) / label.size
    label_coarse = label[::up, ::up, ::up]
    masks_fine = element_masks(symbols, positions_bohr, lengths_bohr, label.shape)
    masks_coarse = element_masks(symbols, positions_bohr, lengths_bohr, sad_coarse.shape)
    return MoleculeResult(
        id=entry_id,
        n_atoms=len(symbols),
        n_electrons=float(n_electrons),
        err_model=err_rho(prediction, label, dv_fine, n_electrons),
        err_sad=err_rho(sad_coarse, label_coarse, dv_fine * up**3, n_electrons),
        seconds=seconds,
        elements_model=element_errors(prediction, label, masks_fine),
        elements_sad=element_errors(sad_coarse, label_coarse, masks_coarse),
        err_base=None if base is None else err_rho(base, label, dv_fine, n_electrons),
    )


def base_density(net, inputs: np.ndarray, fine: np.ndarray | None, n_electrons: float,
                  voxel_volume: float) -> np.ndarray | None:
    """The model's base alone on the fine mesh (e/Bohr^3, through the ReLU and rescaled to
    ``n_electrons``, as the model treats its output), or None for base ``none``. ``inputs``
    ``(C, X, Y, Z)`` coarse, ``fine`` ``(uX, uY, uZ)`` or None."""
    import torch

    from rhosr.prior import rescaled

    with torch.no_grad():
        x = torch.as_tensor(np.asarray(inputs, np.float32))[None]
        f = None if fine is None else torch.as_tensor(np.asarray(fine, np.float32))[None, None]
        base = net.base(x, f, net.config.num_up)
    if base is None:
        return None
    return rescaled(base[0, 0].numpy(), n_electrons, voxel_volume).astype(np.float32)


def summarize(results: list[MoleculeResult]) -> dict:
    """Mean, median and 90th percentile of both errors, and per-element means."""
    out = {"n_molecules": len(results)}
    keys = ["err_model", "err_sad", "seconds"]
    if all(r.err_base is not None for r in results):
        keys.append("err_base")
    for key in keys:
        values = np.array([getattr(r, key) for r in results])
        out[key] = {
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90)),
            "max": float(values.max()),
        }
    elements = sorted({el for r in results for el in r.elements_model})
    out["elements"] = {
        el: {
            "molecules": sum(el in r.elements_model for r in results),
            "err_model": float(np.mean([r.elements_model[el] for r in results if el in r.elements_model])),
            "err_sad": float(np.mean([r.elements_sad[el] for r in results if el in r.elements_sad])),
        }
        for el in elements
    }
    return out


def write_report(folder: str | os.PathLike, results: list[MoleculeResult], context: dict) -> dict:
    """``report.md``, ``report.json``, ``molecules.csv`` and ``errors.png`` in ``folder``."""
    from rhosr.io import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    with atomic_write(folder / "report.json") as fh:
        json.dump(
            {"context": context, "summary": summary, "molecules": [asdict(r) for r in results]}, fh, indent=1
        )
    with atomic_write(folder / "molecules.csv") as fh:
        fh.write("id,n_atoms,n_electrons,err_model,err_sad,err_base,seconds\n")
        for r in results:
            base = "" if r.err_base is None else f"{r.err_base:.5f}"
            fh.write(f"{r.id},{r.n_atoms},{r.n_electrons:g},{r.err_model:.5f},{r.err_sad:.5f},{base},"
                     f"{r.seconds:.3f}\n")
    lines = [f"# Evaluation: {context.get('title', '')}", ""]
    lines += [f"- {k}: {v}" for k, v in context.items() if k != "title"]
    lines += [
        "",
        f"{summary['n_molecules']} molecules. Err_rho in percent.",
        "",
        "| | mean | median | 90th percentile | max |",
        "|---|---|---|---|---|",
    ]
    base_name = context.get("base", "base")
    for key, name in (("err_model", "model"), ("err_base", f"the model's base ({base_name}) alone"),
                      ("err_sad", "SAD input")):
        if key not in summary:
            continue
        s = summary[key]
        lines.append(f"| {name} | {s['mean']:.3f} | {s['median']:.3f} | {s['p90']:.3f} | {s['max']:.3f} |")
    s = summary["seconds"]
    if s["max"] > 0:  # comparing files: no prediction was timed
        lines += ["", f"Prediction time per molecule: mean {s['mean']:.2f} s, max {s['max']:.2f} s."]
    lines += [
        "",
        "Error inside the covalent radii (Pyykko & Atsumi), percent of the reference electrons there:",
        "",
        "| element | molecules | model | SAD input |",
        "|---|---|---|---|",
    ]
    for el, v in summary["elements"].items():
        lines.append(f"| {el} | {v['molecules']} | {v['err_model']:.3f} | {v['err_sad']:.3f} |")
    with atomic_write(folder / "report.md") as fh:
        fh.write("\n".join(lines) + "\n")
    _plot(folder / "errors.png", results)
    return summary


def _plot(path: Path, results: list[MoleculeResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rhosr.io import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    model = [r.err_model for r in results]
    sad = [r.err_sad for r in results]
    bins = np.logspace(np.log10(max(1e-3, min(model + sad) * 0.8)), np.log10(max(model + sad) * 1.2), 40)
    ax.hist(sad, bins=bins, alpha=0.6, label=f"SAD input (mean {np.mean(sad):.2f}%)")
    ax.hist(model, bins=bins, alpha=0.6, label=f"model (mean {np.mean(model):.2f}%)")
    ax.set_xscale("log")
    ax.set_xlabel("Err_rho per molecule (%)")
    ax.set_ylabel("molecules")
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def in_split_order(ids: list[str], split: str) -> list[str]:
    """QM9 entries in the committed split's seeded random order (so ``--limit N`` evaluates a
    random sample even if a store also holds molecules labelled in another order); other
    entries after them, by name."""
    from rhosr.qm9 import load_split

    position = {f"qm9_{int(i):06d}": k for k, i in enumerate(load_split().get(split, []))}
    return sorted(ids, key=lambda i: (position.get(i, len(position)), i))


def evaluate_store(
    store_path: str,
    split: str,
    model=None,
    limit: int | None = None,
    rotations: int = 1,
    tile: int | None = None,
    device: str = "cpu",
    progress: bool = True,
):
    """Evaluate a model on the entries of one split of a store; returns (results, context).

    Damaged entries (``rhosr.integrity``) are skipped with a warning naming each and why, and
    listed in ``context["skipped_damaged"]``; they are never evaluated."""
    import warnings

    from rhosr.errors import InputError, RhosrWarning
    from rhosr.inference import predict_array
    from rhosr.integrity import DamagedEntryError
    from rhosr.predict import load_predictor, model_folder
    from rhosr.store import DatasetStore

    store = DatasetStore.open(store_path)
    folder = model_folder(model)
    net, meta = load_predictor(folder, device)
    if int(meta["grid"]["upscale"]) != int(store.meta.get("upscale", 2)):
        raise InputError(
            f"model upscale x{meta['grid']['upscale']} does not match the store's "
            f"x{store.meta.get('upscale')}"
        )
    stored = tuple(b.store_array for b in net.builders if b.store_array)
    listed, skipped = store.scan(split)
    ids = in_split_order(listed, split)[:limit]
    for entry_id, reason in skipped.items():
        warnings.warn(f"skipping damaged entry {entry_id} (split unknown): {reason}", RhosrWarning,
                      stacklevel=2)
    if not ids:
        raise InputError(f"{store_path}: no {split} entries to evaluate")
    results = []
    from tqdm import tqdm

    from rhosr.grid import Grid
    from rhosr.inputs import entry_inputs, entry_molecule

    for entry_id in tqdm(ids, desc=f"evaluating {split}", disable=None if progress else True, unit="mol"):
        try:
            m = store.entry_meta(entry_id)
            entry = store.read_entry(entry_id, tuple(dict.fromkeys((*stored, "sad", "label"))))
        except DamagedEntryError as exc:
            warnings.warn(f"skipping damaged entry {entry_id}: {exc.reason}", RhosrWarning, stacklevel=2)
            skipped[entry_id] = exc.reason
            continue
        grid = Grid.from_dict(m["grid"])
        lengths = m["grid"]["lengths_bohr"]
        label = np.asarray(entry.label, np.float32)
        dv = float(np.prod(lengths)) / label.size
        t0 = time.perf_counter()
        inputs = entry_inputs(net.builders, entry, grid)
        fine = net.build_fine(entry_molecule(m), grid) if net.needs_fine else None
        pred = predict_array(net, inputs, m["n_electrons"], dv, tile=tile, rotations=rotations,
                             device=device, fine=fine)
        seconds = time.perf_counter() - t0
        base = base_density(net, inputs, fine, m["n_electrons"], dv)
        results.append(
            evaluate_pair(
                entry_id,
                m["symbols"],
                np.asarray(m["positions_bohr"]),
                lengths,
                m["n_electrons"],
                pred,
                label,
                np.asarray(entry.sad, np.float32),
                seconds,
                base,
            )
        )
    context = {
        "title": f"{folder.name} on {split} of {shown_path(store_path)}",
        "model": shown_model(folder),
        "store": shown_path(store_path),
        "split": split,
        "preset": store.meta.get("preset", {}).get("name"),
        "rotations": rotations,
        "device": device,
        "base": net.config.base.name,
    }
    if skipped:
        context["skipped_damaged"] = skipped
    if not results:
        raise InputError(f"{store_path}: every {split} entry read was damaged ({len(skipped)} skipped)")
    return results, context
