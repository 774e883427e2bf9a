"""``paper`` reference labels of benchmark molecules, cached outside the repository.

A ``paper`` label (200 Hartree SCF mesh, conv_tol 1e-11, exact density) costs ~90 s per QM9
molecule on one thread, so benchmarks that compare a cheaper label with it keep each one under
``~/.cache/rhosr/paper_labels/`` (override with ``RHOSR_PAPER_LABELS``), one ``.npz`` per
molecule and box: the fine-mesh density (e/Bohr^3, axes x, y, z) and the energy (Hartree).
Delete the folder when the ``paper`` recipe changes.

Run alone to fill the cache: ``OMP_NUM_THREADS=1 python benchmarks/paper_labels.py --n 4``
(the first N QM9 training molecules, as ``label_throughput.py`` uses them), or
``--qm9 30000 44747 89009`` (QM9 indexes, as ``dft_presets.py`` uses them).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from rhosr.config import get_preset
from rhosr.dft import run_label
from rhosr.molecule import Molecule

CACHE = Path(os.environ.get("RHOSR_PAPER_LABELS", Path.home() / ".cache/rhosr/paper_labels"))


def paper_label(mol: Molecule, upscale: int = 2, margin_angstrom: float = 4.0) -> tuple[np.ndarray, float]:
    """(fine-mesh ``rho`` in e/Bohr^3, energy in Hartree) of ``mol``'s ``paper`` label, cached."""
    path = CACHE / f"{mol.name}_up{upscale}_margin{margin_angstrom:g}.npz"
    if path.exists():
        with np.load(path) as f:
            return f["rho"], float(f["energy"])
    label = run_label(mol, get_preset("paper"), upscale, margin_angstrom)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, rho=label.rho, energy=label.energy)
    tmp.replace(path)
    return label.rho, label.energy


def main() -> None:
    from ase import Atoms

    from rhosr.molecule import read_molecule
    from rhosr.sources import read_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--qm9", type=int, nargs="+", default=None, help="QM9 indexes instead")
    args = parser.parse_args()
    if args.qm9:
        mols = [read_molecule(f"qm9:{index}") for index in args.qm9]
    else:
        mols = [Molecule(Atoms(it.symbols, it.positions_angstrom), name=it.id)
                for it in read_source("qm9", "train", limit=args.n)]
    for mol in mols:
        t0 = time.perf_counter()
        paper_label(mol)
        print(f"{mol.name}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
