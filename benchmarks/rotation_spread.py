"""How much Err_rho depends on the molecule's orientation, and what averaging over the 24 grid
rotations at prediction time gains.

For the first ``--n`` test entries of a store, in the committed split's random order: the stored
orientation, and the molecule turned by a random rotation (seeded; a new box and a new ``fast``
DFT label). Both are predicted once and with ``--rotations`` grid rotations averaged. Reports
per molecule the Err_rho of each, the spread between orientations, and the mean gain of
averaging. The rotated labels do not depend on the model: they are kept (with the rotated
positions) in ``--label-cache`` so a rerun with a new model does no DFT.

    OMP_NUM_THREADS=1 python benchmarks/rotation_spread.py STORE --n 20 [--rotations 24]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from rhosr.config import get_preset
from rhosr.dft import run_label
from rhosr.evaluation import in_split_order
from rhosr.io import atomic_write
from rhosr.metrics import err_rho
from rhosr.molecule import Molecule
from rhosr.predict import model_folder, predict
from rhosr.store import DatasetStore, entry_atoms

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--rotations", type=int, default=24)
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--label-cache", type=Path, default=Path.home() / ".cache/rhosr/bench/rotation_spread")
    args = ap.parse_args()
    store = DatasetStore.open(args.store)
    folder = model_folder(args.model)
    rng = np.random.default_rng(args.seed)
    rows, stats = [], []
    args.label_cache.mkdir(parents=True, exist_ok=True)
    for entry_id in in_split_order(store.entry_ids("test"), "test")[: args.n]:
        meta = store.entry_meta(entry_id)
        mol = Molecule(entry_atoms(meta), name=entry_id)
        label = np.asarray(store.read_entry(entry_id, ("label",)).label, np.float64)
        turned = mol.atoms.copy()
        turned.set_positions(
            Rotation.random(random_state=int(rng.integers(2**31))).apply(
                turned.get_positions() - turned.get_positions().mean(0)
            )
        )
        turned_mol = Molecule(turned, name=f"{entry_id}_rotated")
        cached = args.label_cache / f"{entry_id}_seed{args.seed}.npz"
        if not cached.exists():
            rho = run_label(turned_mol, get_preset("fast")).rho
            with atomic_write(cached, "wb") as fh:
                np.savez(fh, rho=rho.astype(np.float32), positions=turned.get_positions())
        with np.load(cached) as saved:
            if not np.allclose(saved["positions"], turned.get_positions(), atol=1e-8):
                raise SystemExit(f"{cached}: cached rotated positions differ; delete the cache")
            turned_rho = saved["rho"].astype(np.float64)
        errs = []
        for m, ref in ((mol, label), (turned_mol, turned_rho)):
            for rotations in (1, args.rotations):
                result = predict(m, folder, rotations=rotations)
                if result.density.shape != ref.shape:
                    raise SystemExit(
                        f"{m.name}: box {result.density.shape} differs from the label {ref.shape}"
                    )
                errs.append(err_rho(result.density, ref, result.grid.voxel_volume(), m.n_valence))
        stats.append(errs)
        rows.append(
            f"| {entry_id} | {errs[0]:.3f} | {errs[2]:.3f} | {abs(errs[0] - errs[2]):.3f} | "
            f"{errs[1]:.3f} | {errs[3]:.3f} |"
        )
        print(rows[-1], flush=True)
    s = np.array(stats)
    spread = np.abs(s[:, 0] - s[:, 2])
    lines = [
        "# Orientation dependence of Err_rho and rotation averaging",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python {' '.join(sys.argv)}`; "
        f"model `{folder.name}`.",
        "",
        f"- {len(s)} test molecules, each in its stored orientation and randomly rotated "
        "(new box, new `fast` label).",
        f"- Spread |Err(stored) - Err(rotated)|: mean {spread.mean():.3f}, max {spread.max():.3f} percentage "
        f"points; relative to the mean Err {100 * spread.mean() / s[:, [0, 2]].mean():.1f} %.",
        f"- Averaging {args.rotations} grid rotations: mean Err {s[:, [0, 2]].mean():.3f} % -> "
        f"{s[:, [1, 3]].mean():.3f} % (gain {s[:, [0, 2]].mean() - s[:, [1, 3]].mean():.3f} points, "
        f"cost x{args.rotations}).",
        "",
        f"| entry | Err stored (%) | Err rotated (%) | spread | stored, {args.rotations}-avg | rotated, "
        f"{args.rotations}-avg |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    (RESULTS / "rotation_spread.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
