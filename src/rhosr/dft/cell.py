"""The periodic PySCF cell of a molecule placed in its box."""

from __future__ import annotations

import math

import numpy as np

from rhosr.grid import BOHR_ANGSTROM, Grid, plane_wave_spacing
from rhosr.molecule import LABEL_BASIS, PSEUDO, Molecule


def mesh_for_cutoff(grid: Grid, ke_cutoff: float) -> list[int]:
    """Mesh of a plane-wave cutoff (Hartree): ``ceil(L / spacing)`` per axis.

    The same rule gives back the fine mesh at 200 Hartree, because the box is a whole number
    of fine steps minus 1e-4 Angstrom.
    """
    h = plane_wave_spacing(ke_cutoff)
    return [int(math.ceil(length / h - 1e-6)) for length in grid.lengths]


def build_cell(
    mol: Molecule,
    grid: Grid,
    ke_cutoff: float = 200.0,
    basis: str = LABEL_BASIS,
    pseudo: str = PSEUDO,
    verbose: int = 0,
    precision: float | None = None,
):
    """A Gamma-point ``pyscf.pbc.gto.Cell`` for ``mol`` (already placed in the box).

    Built in Bohr; the mesh follows ``ke_cutoff`` (Hartree) by :func:`mesh_for_cutoff`.
    ``precision`` is PySCF's ``cell.precision`` (default 1e-8): how small a Gaussian tail or
    lattice-sum term may be before it is dropped.
    """
    from pyscf.pbc import gto as pbcgto

    cell = pbcgto.Cell()
    cell.unit = "B"
    cell.atom = [
        (s, tuple(p)) for s, p in zip(mol.symbols, mol.positions_angstrom / BOHR_ANGSTROM)
    ]
    cell.a = np.diag(grid.lengths)
    cell.basis = basis
    cell.pseudo = pseudo
    cell.charge = mol.charge
    cell.spin = mol.spin
    cell.ke_cutoff = ke_cutoff
    cell.mesh = mesh_for_cutoff(grid, ke_cutoff)
    cell.verbose = verbose
    if precision is not None:
        cell.precision = precision
    return cell.build()
