"""Density errors."""

from __future__ import annotations

import numpy as np


def err_rho(rho_a: np.ndarray, rho_b: np.ndarray, voxel_volume: float, n_electrons: float) -> float:
    """Err_rho in percent: ``100 * integral |rho_a - rho_b| dr / N_e`` (paper eq. 1).

    Densities in e/Bohr^3 on the same mesh, ``voxel_volume`` in Bohr^3.
    """
    if np.shape(rho_a) != np.shape(rho_b):
        raise ValueError(f"densities on different meshes: {np.shape(rho_a)} vs {np.shape(rho_b)}")
    return float(100.0 * np.abs(rho_a - rho_b).sum() * voxel_volume / n_electrons)
