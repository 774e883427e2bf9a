"""An SCF started from a predicted density: its Kohn-Sham matrix is the SCF's first Fock matrix.

The SCF runs on the preset's own mesh (100 Hartree for ``fast``), so the fine-mesh density is
first carried to that mesh by Fourier truncation (the band-limited density the SCF mesh can
hold). :func:`start_from_density` then hands the Coulomb + XC matrix of that density to PySCF's
SCF as the potential of its starting point, so the SCF's first cycle diagonalises the Kohn-Sham
matrix of the predicted density (the one-step density matrix) and every later cycle is PySCF's
own. :func:`guess_from_density` instead returns that one-step density matrix, for SCFs that
must start from a density matrix (its first cycle then builds the potential again, one Fock
build more, about one SCF cycle).
"""

from __future__ import annotations

import numpy as np


def fourier_resample(rho: np.ndarray, mesh) -> np.ndarray:
    """``rho`` (periodic, real, axes x, y, z) on another mesh of the same box, keeping the plane
    waves both meshes hold (Nyquist components dropped); the integral is preserved. Real
    transforms (half the spectrum): ~2x faster than complex ones, the same values."""
    mesh = tuple(int(n) for n in mesh)
    coeffs = np.fft.rfftn(rho, axes=(0, 1, 2))
    out = np.zeros((*mesh[:2], mesh[2] // 2 + 1), dtype=complex)
    old_index, new_index = [], []
    for axis, (n_old, n_new) in enumerate(zip(rho.shape, mesh)):
        limit = (min(n_old, n_new) - 1) // 2  # |k| <= limit exists in both, below both Nyquists
        k = np.arange(-limit, limit + 1) if axis < 2 else np.arange(limit + 1)
        old_index.append(k % n_old)
        new_index.append(k % n_new)
    out[np.ix_(*new_index)] = coeffs[np.ix_(*old_index)]
    return np.fft.irfftn(out, s=mesh, axes=(0, 1, 2)) * (np.prod(mesh) / np.prod(rho.shape))


def _keep_core_matrices(mf):
    """Compute ``mf``'s core Hamiltonian and overlap once and make ``mf`` return them from then
    on (PySCF's kernel would build both again: ~0.1 s of a QM9 molecule's SCF)."""
    hcore, overlap = mf.get_hcore(), mf.get_ovlp()
    mf.get_hcore = lambda *args, **kwargs: hcore
    mf.get_ovlp = lambda *args, **kwargs: overlap
    return hcore, overlap


def _on_scf_mesh(mf, rho_fine: np.ndarray) -> np.ndarray:
    """The fine-mesh density on ``mf``'s mesh (Fourier truncation), negative ringing set to 0."""
    return np.clip(fourier_resample(rho_fine, mf._numint.mesh), 0.0, None)


def guess_from_density(mf, rho_fine: np.ndarray) -> np.ndarray:
    """Initial density matrix for ``mf`` from a fine-mesh density: one diagonalisation of the
    Kohn-Sham matrix of that density on ``mf``'s mesh (no energies). ``mf`` keeps the core
    Hamiltonian and overlap matrices this computes, for the SCF that follows."""
    from rhosr.dft.onestep import diagonalise

    _keep_core_matrices(mf)
    return diagonalise(mf, _on_scf_mesh(mf, rho_fine))[-1]


def start_from_density(mf, rho_fine: np.ndarray) -> np.ndarray:
    """Prepare ``mf`` (closed-shell PySCF RKS, multigrid) so that ``mf.kernel(dm0)`` with the
    returned ``dm0`` starts from the Kohn-Sham matrix of ``rho_fine`` (e/Bohr^3 on the fine mesh,
    axes x, y, z).

    PySCF's kernel computes the potential of its starting density matrix, then, in its first
    cycle, diagonalises core Hamiltonian + that potential (no DIIS or damping in cycle 0 with the
    default ``diis_start_cycle = 1``). Here the first ``get_veff`` call returns the potential of
    the density instead (Coulomb + XC, with its energies) and then gives way to PySCF's own, so
    the first cycle yields the one-step density matrix and the potential is built once less than
    from :func:`guess_from_density`. ``dm0`` (zeros) only stands in for the density: the "init
    E" PySCF logs before cycle 1 is not an energy of anything, cycle 1's is.
    """
    from rhosr.dft.onestep import kohn_sham_potential
    from rhosr.errors import InputError

    if getattr(mf.cell, "spin", 0):
        raise InputError("an SCF started from a total density needs a closed shell (spin 0)")
    if mf.diis_start_cycle < 1 or getattr(mf, "level_shift", 0) or getattr(mf, "damp", 0):
        raise InputError("starting from a density needs PySCF's plain first cycle "
                         "(no DIIS, level shift or damping in cycle 0)")
    hcore, _ = _keep_core_matrices(mf)
    veff = kohn_sham_potential(mf, _on_scf_mesh(mf, rho_fine))[0]
    dm0 = np.zeros_like(hcore)

    def first_get_veff(cell=None, dm=None, *args, **kwargs):
        if dm is not dm0:
            raise AssertionError("the density's potential was asked for another density matrix")
        del mf.get_veff  # PySCF's own from now on
        return veff

    mf.get_veff = first_get_veff
    return dm0
