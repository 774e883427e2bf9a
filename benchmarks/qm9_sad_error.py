"""SAD and atrocious-SAD error against DFT labels over a seeded choice of QM9 molecules.

Paper (Table 1 and text): mean Err_rho 13.9% (SAD) and 27.7% (atrocious) on the QM9 test set.
The choice: ``numpy.random.default_rng(SEED).choice`` of ``N`` indices among the molecules that
qm9pack ships, sorted. Labels use the ``fast`` preset (its distance from ``paper`` is in
``results/dft_presets.md``, orders of magnitude below these errors). SAD is evaluated on the
fine mesh, as in the paper, and on the coarse mesh (the model input, compared with the label
at the coarse points).

Resumable: rows already in the CSV are skipped. Run:
    OMP_NUM_THREADS=1 python benchmarks/qm9_sad_error.py [--n 50]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from rhosr.config import get_preset
from rhosr.dft import run_label
from rhosr.metrics import err_rho
from rhosr.molecule import read_molecule
from rhosr.qm9 import iter_qm9
from rhosr.sad import sad_density

SEED = 20261127
RESULTS = Path(__file__).parent / "results"
FIELDS = ["qm9_index", "formula", "n_atoms", "n_electrons", "fine_mesh", "err_sad", "err_atrocious",
          "err_sad_coarse", "dft_seconds", "sad_seconds"]


def chosen_indices(n: int) -> list[int]:
    available = np.array([index for index, _, _ in iter_qm9()])
    return sorted(int(i) for i in np.random.default_rng(SEED).choice(available, n, replace=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args()
    out = RESULTS / f"qm9_sad_error_{args.preset}.csv"
    done = set()
    if out.exists():
        with open(out) as fh:
            done = {int(row["qm9_index"]) for row in csv.DictReader(fh)}
    new = not out.exists()
    with open(out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        for i, index in enumerate(chosen_indices(args.n)):
            if index in done:
                continue
            mol = read_molecule(f"qm9:{index}")
            t0 = time.perf_counter()
            label = run_label(mol, get_preset(args.preset))
            dft_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            sad_fine = sad_density(label.mol, label.grid, "fine")
            sad_seconds = time.perf_counter() - t0
            atrocious = sad_density(label.mol, label.grid, "fine", atrocious=True)
            sad_coarse = sad_density(label.mol, label.grid, "coarse")
            up = label.grid.upscale
            n_e, dv = mol.n_valence, label.grid.voxel_volume("fine")
            row = {
                "qm9_index": index,
                "formula": label.mol.atoms.get_chemical_formula(),
                "n_atoms": len(label.mol.atoms),
                "n_electrons": n_e,
                "fine_mesh": "x".join(map(str, label.grid.fine_mesh)),
                "err_sad": f"{err_rho(sad_fine, label.rho, dv, n_e):.4f}",
                "err_atrocious": f"{err_rho(atrocious, label.rho, dv, n_e):.4f}",
                "err_sad_coarse": "{:.4f}".format(err_rho(
                    sad_coarse, label.rho[::up, ::up, ::up], label.grid.voxel_volume("coarse"), n_e)),
                "dft_seconds": f"{dft_seconds:.1f}",
                "sad_seconds": f"{sad_seconds:.2f}",
            }
            writer.writerow(row)
            fh.flush()
            os.fsync(fh.fileno())
            print(f"[{i + 1}/{args.n}] {row}", flush=True)
    summarize(out)


def _row(name: str, values: np.ndarray, paper: str) -> str:
    stats = " | ".join(f"{v:.2f}" for v in (values.mean(), values.std(), values.min(), values.max()))
    return f"| {name} | {stats} | {paper} |\n"


def summarize(path: Path) -> None:
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    sad = np.array([float(r["err_sad"]) for r in rows])
    atro = np.array([float(r["err_atrocious"]) for r in rows])
    coarse = np.array([float(r["err_sad_coarse"]) for r in rows])
    dft = np.array([float(r["dft_seconds"]) for r in rows])
    text = (
        f"# SAD error against DFT labels, {len(rows)} QM9 molecules (seed {SEED})\n\n"
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/qm9_sad_error.py --n {len(rows)}`; "
        f"per-molecule rows in `{path.name}`.\n\n"
        "| input | mean Err_rho (%) | std | min | max | paper (QM9 test set) |\n"
        "|---|---|---|---|---|---|\n"
        + _row("SAD (fine mesh)", sad, "13.9")
        + _row("SAD (coarse points)", coarse, "")
        + _row("atrocious SAD (fine mesh)", atro, "27.7")
        + "\n"
        f"DFT label time per molecule (this preset, 1 thread): mean {dft.mean():.1f} s, "
        f"min {dft.min():.1f} s, max {dft.max():.1f} s.\n"
    )
    path.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
