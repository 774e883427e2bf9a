"""Where the model's density error sits: Err_rho split by distance to the nearest nucleus.

For the first ``--n`` entries of a store split (in the committed split's random order), the
shipped (or ``--model``) prediction and the SAD input on the fine mesh are compared with the
DFT label; |rho - rho_ref| dV is summed in shells of distance to the nearest atom (periodic
box, Bohr), as a share of the electrons (percentage points, so the shells add up to Err_rho).
Tells a resolution artefact near the nuclei from missing chemistry in the bonding region.
Writes results/error_by_distance.md.

    OMP_NUM_THREADS=1 python benchmarks/error_by_distance.py STORE [--split validation] [--n 10]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from rhosr.checkpoint import load_model
from rhosr.evaluation import in_split_order
from rhosr.grid import Grid
from rhosr.inference import predict_array
from rhosr.molecule import Molecule
from rhosr.predict import model_folder
from rhosr.sad import sad_density
from rhosr.store import DatasetStore, entry_atoms

RESULTS = Path(__file__).parent / "results"
SHELLS_BOHR = (0.0, 0.3, 0.6, 1.0, 1.5, 2.5, np.inf)


def nearest_atom_distance(grid: Grid, positions_bohr: np.ndarray) -> np.ndarray:
    """Distance (Bohr) from each fine-mesh point to the nearest atom, periodic; axes (x, y, z)."""
    axes = [np.arange(n) * length / n for n, length in zip(grid.fine_mesh, grid.lengths)]
    nearest = np.full(grid.fine_mesh, np.inf)
    for position in positions_bohr:
        squared = 0.0
        for axis, (coords, length) in enumerate(zip(axes, grid.lengths)):
            d = np.abs(coords - position[axis])
            d = np.minimum(d, length - d)
            shape = [1, 1, 1]
            shape[axis] = -1
            squared = squared + (d**2).reshape(shape)
        nearest = np.minimum(nearest, np.sqrt(squared))
    return nearest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--split", default="validation", choices=("train", "validation", "test"))
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    store = DatasetStore.open(args.store)
    folder = model_folder(args.model)
    model, _ = load_model(folder)
    ids = in_split_order(store.entry_ids(args.split), args.split)[: args.n]
    n_shells = len(SHELLS_BOHR) - 1
    err = {"model": np.zeros(n_shells), "SAD": np.zeros(n_shells)}
    volume = np.zeros(n_shells)
    electrons = 0.0
    for entry_id in ids:
        entry = store.read_entry(entry_id)
        grid = Grid.from_dict(entry.meta["grid"])
        dv = grid.voxel_volume("fine")
        n_e = entry.meta["n_electrons"]
        label = np.asarray(entry.label, np.float64)
        positions = np.asarray(entry.meta["positions_bohr"])
        predicted = predict_array(model, np.asarray(entry.sad), n_e, dv)
        sad_fine = sad_density(Molecule(entry_atoms(entry.meta), name=entry_id), grid, "fine")
        shell = np.digitize(nearest_atom_distance(grid, positions), SHELLS_BOHR) - 1
        for name, rho in (("model", predicted), ("SAD", sad_fine)):
            err[name] += np.bincount(shell.ravel(), (np.abs(rho - label) * dv).ravel(), n_shells)
        volume += np.bincount(shell.ravel(), minlength=n_shells) / shell.size / len(ids)
        electrons += n_e
        print(f"{entry_id}: model {100 * np.abs(predicted - label).sum() * dv / n_e:.2f} %", flush=True)
    labels = [f"{a:g}-{b:g}" if np.isfinite(b) else f">{a:g}" for a, b in zip(SHELLS_BOHR, SHELLS_BOHR[1:])]
    rows = [f"| {lab} | {100 * volume[k]:.2f} | {100 * err['model'][k] / electrons:.3f} | "
            f"{100 * err['SAD'][k] / electrons:.3f} |" for k, lab in enumerate(labels)]
    rows.append(f"| all | 100 | {100 * err['model'].sum() / electrons:.3f} | "
                f"{100 * err['SAD'].sum() / electrons:.3f} |")
    lines = [
        "# Where the density error sits: by distance to the nearest nucleus",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python {' '.join(sys.argv)}`; "
        f"model `{folder.name}`; {len(ids)} {args.split} molecules (split order). The SAD here is "
        "evaluated on the fine mesh, not interpolated from the coarse one.",
        "",
        "| distance to nearest atom (Bohr) | box volume (%) | model error (points of Err_rho) | "
        "SAD error (points) |",
        "|---|---|---|---|",
        *rows,
    ]
    (RESULTS / "error_by_distance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
