"""The periodic PySCF cell of a molecule placed in its box."""

from __future__ import annotations

import math

import numpy as np

from rhosr.grid import BOHR_ANGSTROM, Grid, plane_wave_spacing
from rhosr.molecule import LABEL_BASIS, PSEUDO, Molecule, n_basis_functions

BYTES_PER_SCF_MESH_POINT = 200
BYTES_PER_FINE_MESH_POINT = 50
BYTES_PER_AO_PAIR = 80
"""Peak memory of a GPW calculation: about 200 B per point of the SCF mesh (complex FFT
buffers, potentials, multigrid tasks), 50 B per point of the fine label mesh, and ten
nao x nao float64 matrices (density, Fock, overlap, orbitals...). Checked against the growth of
``ru_maxrss`` over the imports (``/usr/bin/time -v rhosr dft``, 2026-12-03): water, fast preset,
margin 4 / 8 Angstrom: 50 / 157 MB measured, 24 / 145 MB estimated; paper preset, margin 4:
86 MB measured, 48 estimated (small boxes are dominated by fixed costs); three 9-heavy-atom QM9
molecules, box extent + 8 Angstrom, 200 Hartree (MEASUREMENTS.md: 1.0-1.1 GB peak with the
imports): 750-884 MB estimated."""


def mesh_for_cutoff(grid: Grid, ke_cutoff: float) -> list[int]:
    """Mesh of a plane-wave cutoff (Hartree): ``ceil(L / spacing)`` per axis.

    The same rule gives back the fine mesh at 200 Hartree, because the box is a whole number
    of fine steps minus 1e-4 Angstrom.
    """
    h = plane_wave_spacing(ke_cutoff)
    return [int(math.ceil(length / h - 1e-6)) for length in grid.lengths]


def estimate_memory_bytes(mol: Molecule, grid: Grid, ke_cutoff: float, basis: str = LABEL_BASIS) -> int:
    """Rough peak memory (bytes) of a GPW calculation of ``mol`` in ``grid``'s box with an SCF
    mesh of ``ke_cutoff`` Hartree (see :data:`BYTES_PER_AO_PAIR`)."""
    nao = sum(n_basis_functions(s, basis) for s in mol.symbols)
    scf_points = math.prod(mesh_for_cutoff(grid, ke_cutoff))
    return int(BYTES_PER_SCF_MESH_POINT * scf_points + BYTES_PER_FINE_MESH_POINT
               * math.prod(grid.fine_mesh) + BYTES_PER_AO_PAIR * nao ** 2)


def check_memory_fits(mol: Molecule, grid: Grid, ke_cutoff: float, basis: str = LABEL_BASIS) -> None:
    """InputError, with the estimate, when a GPW calculation of ``mol`` in ``grid``'s box
    (SCF mesh of ``ke_cutoff`` Hartree) would not fit in the memory available now."""
    from rhosr.memory import check_fits

    mesh = mesh_for_cutoff(grid, ke_cutoff)
    check_fits(estimate_memory_bytes(mol, grid, ke_cutoff, basis),
               f"DFT of {mol.name} ({len(mol.symbols)} atoms, box "
               f"{' x '.join(f'{v:.1f}' for v in grid.lengths_angstrom)} Angstrom, "
               f"{' x '.join(map(str, mesh))} mesh at {ke_cutoff:g} Hartree)",
               "a smaller --margin or a cheaper --preset needs less")


def build_cell(
    mol: Molecule,
    grid: Grid,
    ke_cutoff: float = 200.0,
    basis: str = LABEL_BASIS,
    pseudo: str = PSEUDO,
    verbose: int = 0,
    precision: float | None = None,
    check_memory: bool = True,
):
    """A Gamma-point ``pyscf.pbc.gto.Cell`` for ``mol`` (already placed in the box).

    Built in Bohr; the mesh follows ``ke_cutoff`` (Hartree) by :func:`mesh_for_cutoff`.
    ``precision`` is PySCF's ``cell.precision`` (default 1e-8): how small a Gaussian tail or
    lattice-sum term may be before it is dropped. With ``check_memory``, a calculation whose
    estimated memory (:func:`estimate_memory_bytes`) exceeds what the machine has available is
    refused first (InputError, with the estimate).
    """
    from pyscf.pbc import gto as pbcgto

    if check_memory:
        check_memory_fits(mol, grid, ke_cutoff, basis)
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
