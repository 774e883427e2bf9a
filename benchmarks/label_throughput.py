"""Labelling throughput at ``fast``: the old and the new SCF strategy on the same molecules.

Labels the same ``--n`` QM9 molecules (the first of the training split, which is in seeded
random order, so a representative sample of QM9 sizes) once per strategy into fresh temporary
stores through the real pipeline (``run_labelling`` -> ``label_item``: SCF, label density, SAD,
store write; Dask workers unless ``--workers 0``), then compares every label with the ``paper``
label of the same molecule (cached by ``paper_labels.py``; ~90 s each on one thread when
missing). Strategies:

- ``old``: ``fast`` as it was (conv_tol 1e-9 Hartree, PySCF's extra check cycle after
  convergence);
- ``new``: ``fast`` now (conv_tol 1e-7 Hartree, no extra cycle on the plain attempt, SCF cell
  precision 1e-6);
- ``new-1e-7`` (only if asked for): ``new`` with SCF cell precision 1e-7.

Reports per strategy: molecules per hour (wall time of the whole run, incl. Dask start-up),
seconds per molecule (each task's wall time and its worker's CPU time: on a busy machine the
CPU time is the figure to compare), SCF cycles, and Err_rho against ``paper``. Writes
results/label_throughput_fast.md.

Per-molecule cost, one thread (the machine may be busy: compare CPU seconds)::

    OMP_NUM_THREADS=1 python benchmarks/label_throughput.py --n 4 --workers 1

Throughput on a quiet 2-core machine (the ``paper`` labels first, so that their ~90 s each on
one thread are not spent inside the measurement's run; they are cached)::

    python benchmarks/paper_labels.py --n 16
    python benchmarks/label_throughput.py --n 16 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rhosr.config import DFTPreset, get_preset
from rhosr.labelling import LabelSettings, label_item, run_labelling
from rhosr.metrics import err_rho
from rhosr.sources import read_source
from rhosr.store import DatasetStore

sys.path.insert(0, str(Path(__file__).parent))
from paper_labels import paper_label  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def strategies() -> dict[str, DFTPreset]:
    """The ``fast`` preset before (``old``) and after (``new``) the throughput work, and ``new``
    with a tighter SCF cell precision (``new-1e-7``: slower, closer to ``old``)."""
    new = get_preset("fast")
    old = dataclasses.replace(new, conv_tol=1e-9, scf_conv_check=True, scf_precision=None)
    return {"old": old, "new": new, "new-1e-7": dataclasses.replace(new, scf_precision=1e-7)}


def timed_label_item(item, settings: LabelSettings) -> dict:
    """``label_item`` plus the CPU seconds it took in its worker process (all its threads)."""
    c0 = time.process_time()
    result = label_item(item, settings)
    result["cpu_seconds"] = time.process_time() - c0
    return result


def label_all(items, preset: DFTPreset, workers: int, threads: int, folder: Path) -> dict:
    """Label ``items`` into a new store under ``folder``; wall seconds and per-molecule rows."""
    store = DatasetStore.create(folder / preset.name, preset.to_dict())
    results = {}
    t0 = time.perf_counter()
    summary = run_labelling(items, LabelSettings(str(store.path), preset, threads=threads), workers,
                            on_result=lambda r: results.__setitem__(r["id"], r), task=timed_label_item)
    seconds = time.perf_counter() - t0
    rows = {}
    for item in items:
        r = results.get(item.id, {})
        if not r.get("ok"):
            print(f"  {item.id}: failed ({r.get('reason', 'no result')})", flush=True)
            continue
        entry = store.read_entry(item.id, ("label",))
        rows[item.id] = {"seconds": r["seconds"], "cpu": r["cpu_seconds"],
                         "cycles": entry.meta["scf_cycles"], "energy": entry.meta["energy"],
                         "rho": entry.label, "voxel": _voxel(entry.meta), "n_e": entry.meta["n_electrons"]}
    return {"seconds": seconds, "done": summary.done, "rows": rows}


def _voxel(meta: dict) -> float:
    from rhosr.grid import Grid

    return Grid.from_dict(meta["grid"]).voxel_volume()


def main() -> None:
    from ase import Atoms

    from rhosr.molecule import Molecule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="QM9 training molecules (default 4)")
    parser.add_argument("--workers", type=int, default=1,
                        help="Dask workers (default 1; 0 = in this process, no Dask)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per worker (default: cores // workers)")
    parser.add_argument("--strategies", default="old,new", help="comma-separated: old,new,new-1e-7")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    threads = args.threads or max(1, cores // max(1, args.workers))
    chosen = {name: preset for name, preset in strategies().items()
              if name in args.strategies.split(",")}
    items = read_source("qm9", "train", limit=args.n)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset in chosen.items():
            runs[name] = label_all(items, dataclasses.replace(preset, name=f"fast-{name}"),
                                   args.workers, threads, Path(tmp))
            r = runs[name]
            print(f"{name}: {r['done']} molecules in {r['seconds']:.0f} s = "
                  f"{3600 * r['done'] / r['seconds']:.0f} molecules/hour", flush=True)
            for row in r["rows"].values():  # keep only the numbers: the densities are compared now
                row["rho"] = np.asarray(row["rho"])
        per_molecule, errs = [], {name: [] for name in runs}
        for item in items:
            if not all(item.id in r["rows"] for r in runs.values()):
                continue
            mol = Molecule(Atoms(item.symbols, item.positions_angstrom), name=item.id)
            rho_paper, e_paper = paper_label(mol)
            cells = []
            for name, r in runs.items():
                row = r["rows"][item.id]
                err = err_rho(row["rho"], rho_paper, row["voxel"], row["n_e"])
                errs[name].append(err)
                row["err"] = err
                cells.append(f"{row['cycles']} | {row['seconds']:.1f} | {row['cpu']:.1f} | {err:.4f}")
            formula = mol.atoms.get_chemical_formula()
            per_molecule.append(f"| {item.id} | {formula} | " + " | ".join(cells) + " |")
            print(per_molecule[-1], flush=True)
    lines = _report(args, runs, errs, per_molecule, cores, threads)
    (RESULTS / "label_throughput_fast.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _report(args, runs: dict, errs: dict, per_molecule: list[str], cores: int, threads: int) -> list[str]:
    def mean(name: str, key: str) -> float:
        return float(np.mean([row[key] for row in runs[name]["rows"].values()]))

    summary = []
    for name, r in runs.items():
        preset = strategies()[name]
        summary.append(
            f"| {name} | {preset.conv_tol:g} | {'yes' if preset.scf_conv_check else 'no'} "
            f"| {preset.scf_precision or 1e-8:g} | {r['done']} "
            f"| {r['seconds']:.0f} | {3600 * r['done'] / r['seconds']:.0f} | {mean(name, 'seconds'):.1f} "
            f"| {mean(name, 'cpu'):.1f} | {mean(name, 'cycles'):.1f} | {np.mean(errs[name]):.4f} "
            f"| {np.max(errs[name]):.4f} |")
    names = list(runs)
    lines = [
        f"# Labelling throughput, preset `fast`, {cores} cores",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')} python "
        f"benchmarks/label_throughput.py --n {args.n} --workers {args.workers}"
        + (f" --threads {args.threads}" if args.threads else "")
        + (f" --strategies {args.strategies}" if args.strategies != "old,new" else "")
        + f"` ({threads} thread(s) per worker; the first {args.n} QM9 training molecules, a random "
        "sample; each strategy labels them into its own store through `run_labelling`; wall time "
        "incl. Dask start-up; Err_rho against the `paper` label of the same molecule in the same box).",
        "",
        "| strategy | conv_tol (Ha) | extra check cycle | SCF cell precision | molecules | wall s "
        "| molecules/hour | s per molecule (task wall) | CPU s per molecule | SCF cycles "
        "| mean Err_rho vs paper (%) | max (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *summary,
        "",
    ]
    for name in [n for n in runs if n != "old" and "old" in runs]:
        cpu_ratio = mean(name, "cpu") / mean("old", "cpu")
        wall_ratio = mean(name, "seconds") / mean("old", "seconds")
        rate = {n: runs[n]["done"] / runs[n]["seconds"] for n in ("old", name)}
        lines += [f"{name} / old: CPU s per molecule {cpu_ratio:.3f}, task wall s per molecule "
                  f"{wall_ratio:.3f}, molecules/hour {rate[name] / rate['old']:.2f}x.", ""]
    lines += [
        "| molecule | formula | " + " | ".join(
            f"{n} cycles | {n} s | {n} CPU s | {n} Err_rho (%)" for n in names) + " |",
        "|---|---|" + "---|" * (4 * len(names)),
        *per_molecule,
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
