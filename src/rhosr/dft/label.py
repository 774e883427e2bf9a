"""DFT labels: PySCF periodic Gamma-point Kohn-Sham (GPW, multigrid) and the fine-mesh density.

Closed shells use RKS, open shells (``spin > 0``) UKS. A calculation that does not converge is
retried with a level shift and damping, then with a box 1 Angstrom larger per axis (the
authors used 5 instead of 4 Angstrom for some long chains); if all fail,
:class:`SCFNotConvergedError` is raised and nothing is returned as a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rhosr.config import DFTPreset
from rhosr.dft.cell import build_cell
from rhosr.dft.density import density_on_mesh
from rhosr.errors import SCFNotConvergedError
from rhosr.grid import Grid, place_in_box
from rhosr.molecule import Molecule


@dataclass
class Label:
    """A converged calculation: the label density and what a dataset keeps beside it.

    ``rho`` is on the fine mesh (e/Bohr^3, axes x, y, z); ``dm`` is the spin-summed AO density
    matrix in the preset's basis; energies in Hartree.
    """

    mol: Molecule
    grid: Grid
    rho: np.ndarray
    dm: np.ndarray
    energy: float
    homo: float
    lumo: float
    cycles: int
    scf_seconds: float
    density_seconds: float
    preset: DFTPreset
    attempts: list[str] = field(default_factory=list)


# (name, level shift in Hartree, damping, extra margin in Angstrom)
RETRIES = (
    ("plain", 0.0, 0.0, 0.0),
    ("level shift 0.25 + damping 0.5", 0.25, 0.5, 0.0),
    ("level shift 0.25 + damping 0.5, box +1 Angstrom", 0.25, 0.5, 1.0),
)


def scf_cell(mol: Molecule, grid: Grid, preset: DFTPreset):
    """The cell a preset's SCF runs in: ``mol`` (placed in its box) on the SCF mesh."""
    return build_cell(mol, grid, preset.scf_ke_cutoff, preset.basis, preset.pseudo,
                      precision=preset.scf_precision)


def make_scf(cell, preset: DFTPreset):
    """The PySCF mean-field object of a preset (multigrid numerical integration)."""
    from pyscf.pbc import dft

    mf = (dft.UKS if cell.spin else dft.RKS)(cell, xc=preset.xc)
    mf = mf.multigrid_numint()
    mf.conv_tol = preset.conv_tol
    mf.max_cycle = preset.max_cycle
    mf.conv_check = preset.scf_conv_check
    if preset.smearing:
        from pyscf.pbc.scf.addons import smearing_

        mf = smearing_(mf, sigma=preset.smearing, method="fermi")
    if cell.charge:
        _skip_makov_payne(mf)
    return mf


def _skip_makov_payne(mf) -> None:
    """PySCF 2.14's periodic finalisation applies a Makov-Payne correction to charged cells,
    which fails with multigrid after convergence; the density does not need it."""
    finalize = mf._finalize

    def _finalize():
        charge = mf.cell.charge
        mf.cell.charge = 0
        try:
            return finalize()
        finally:
            mf.cell.charge = charge

    mf._finalize = _finalize


def _frontier(mo_energy, mo_occ) -> tuple[float, float]:
    e = np.ravel(mo_energy)
    occ = np.ravel(mo_occ)
    homo = float(e[occ > 1e-6].max()) if np.any(occ > 1e-6) else float("nan")
    empty = e[occ <= 1e-6]
    return homo, float(empty.min()) if empty.size else float("nan")


def run_label(
    mol: Molecule,
    preset: DFTPreset,
    upscale: int = 2,
    margin_angstrom: float = 4.0,
    log: Callable[[str], None] | None = None,
) -> Label:
    """Place ``mol`` in its box, run the SCF (with retries) and evaluate the label density."""
    attempts: list[str] = []
    for name, shift, damp, extra_margin in RETRIES:
        placed, grid = place_in_box(mol, upscale, margin_angstrom + extra_margin)
        mf = make_scf(scf_cell(placed, grid, preset), preset)
        mf.level_shift = shift
        mf.damp = damp
        # the check cycle removes a level shift from the final orbital energies: keep it there
        mf.conv_check = mf.conv_check or bool(shift)
        cycles = [0]

        def count(envs, cycles=cycles):
            cycles[0] = envs.get("cycle", cycles[0]) + 1
            if log is not None:
                log(f"SCF cycle {cycles[0]:3d}  E = {envs.get('e_tot', float('nan')):.10f} Ha")

        mf.callback = count
        t0 = time.perf_counter()
        mf.kernel()
        scf_seconds = time.perf_counter() - t0
        attempts.append(f"{name}: {'converged' if mf.converged else 'not converged'} "
                        f"in {cycles[0]} cycles, {scf_seconds:.1f} s")
        if mf.converged:
            break
        if log is not None:
            log(f"SCF did not converge ({name}); retrying")
    else:
        raise SCFNotConvergedError(f"{mol.name}: SCF did not converge ({'; '.join(attempts)})")
    dm = np.asarray(mf.make_rdm1())
    if dm.ndim == 3:
        dm = dm.sum(axis=0)
    t0 = time.perf_counter()
    rho = density_on_mesh(placed, grid, dm, preset.density_eval, preset.basis)
    density_seconds = time.perf_counter() - t0
    homo, lumo = _frontier(mf.mo_energy, mf.mo_occ)
    return Label(placed, grid, rho, dm, float(mf.e_tot), homo, lumo, cycles[0], scf_seconds,
                 density_seconds, preset, attempts)
