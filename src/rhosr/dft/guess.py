"""An SCF started from a predicted density: the one-step density matrix as the initial guess.

The SCF runs on the preset's own mesh (100 Hartree for ``fast``), so the fine-mesh density is
first carried to that mesh by Fourier truncation (the band-limited density the SCF mesh can
hold), then one Kohn-Sham diagonalisation there gives the guess density matrix.
"""

from __future__ import annotations

import numpy as np


def fourier_resample(rho: np.ndarray, mesh) -> np.ndarray:
    """``rho`` (periodic, axes x, y, z) on another mesh of the same box, keeping the plane
    waves both meshes hold (Nyquist components dropped); the integral is preserved."""
    mesh = tuple(int(n) for n in mesh)
    coeffs = np.fft.fftn(rho)
    out = np.zeros(mesh, dtype=complex)
    old_index, new_index = [], []
    for n_old, n_new in zip(rho.shape, mesh):
        limit = (min(n_old, n_new) - 1) // 2  # |k| <= limit exists in both, below both Nyquists
        k = np.arange(-limit, limit + 1)
        old_index.append(k % n_old)
        new_index.append(k % n_new)
    out[np.ix_(*new_index)] = coeffs[np.ix_(*old_index)]
    return np.fft.ifftn(out).real * (np.prod(mesh) / np.prod(rho.shape))


def guess_from_density(mf, rho_fine: np.ndarray) -> np.ndarray:
    """Initial density matrix for ``mf`` from a fine-mesh density: one diagonalisation of the
    Kohn-Sham matrix of that density on ``mf``'s mesh (no energies: the SCF's first cycle
    computes the energy of this density matrix anyway).

    ``mf`` keeps the core Hamiltonian and overlap matrices this computes, for the SCF that
    follows (PySCF's kernel would build both again: ~0.1 s of a QM9 molecule's ~7 s SCF)."""
    from rhosr.dft.onestep import diagonalise

    hcore, overlap = mf.get_hcore(), mf.get_ovlp()
    mf.get_hcore = lambda *args, **kwargs: hcore
    mf.get_ovlp = lambda *args, **kwargs: overlap
    rho = fourier_resample(rho_fine, mf._numint.mesh)
    return diagonalise(mf, np.clip(rho, 0.0, None))[-1]
