"""Checks that a density handed to the physics (one-step DFT, SCF guess) is the one meant.

A density is on the fine mesh of the molecule's box (e/Bohr^3). Decisions, so that no wrong
density silently gives an energy:

- the mesh and the box must be the molecule's (``rhosr dft``/``predict`` boxes): else an error;
- negative values: those above ``-NEGATIVE_TOLERANCE * max`` (FFT or interpolation ringing)
  are set to zero and reported; deeper ones are an error;
- the electron count: within ``COUNT_TOLERANCE`` (relative) the density is rescaled to N_e and
  the change reported; beyond it, an error unless ``renormalize=True`` is asked for.
"""

from __future__ import annotations

import numpy as np

from rhosr.errors import InputError

NEGATIVE_TOLERANCE = 1e-3
COUNT_TOLERANCE = 1e-3


def checked_density(
    rho: np.ndarray,
    fine_mesh,
    voxel_volume: float,
    n_electrons: float,
    renormalize: bool = False,
    source: str = "density",
) -> tuple[np.ndarray, list[str]]:
    """Return the density to use and the notes of what was corrected."""
    notes = []
    rho = np.asarray(rho, dtype=np.float64)
    if tuple(rho.shape) != tuple(fine_mesh):
        raise InputError(
            f"{source}: mesh {rho.shape} is not this molecule's fine mesh {tuple(fine_mesh)} "
            "(make it with `rhosr predict` or `rhosr dft` for the same molecule and margin)"
        )
    if not np.all(np.isfinite(rho)):
        raise InputError(f"{source}: contains NaN or infinite values")
    low = float(rho.min())
    if low < 0:
        if low < -NEGATIVE_TOLERANCE * float(rho.max()):
            raise InputError(
                f"{source}: negative values down to {low:.3g} e/Bohr^3 "
                f"({-low / rho.max():.2%} of the maximum): not a density"
            )
        n_negative = int((rho < 0).sum())
        rho = np.clip(rho, 0.0, None)
        notes.append(f"set {n_negative} slightly negative values (>= {low:.2g}) to zero")
    count = float(rho.sum() * voxel_volume)
    if count <= 0:
        raise InputError(f"{source}: integrates to {count:.4g} electrons")
    relative = abs(count - n_electrons) / n_electrons
    if relative > COUNT_TOLERANCE and not renormalize:
        raise InputError(
            f"{source}: integrates to {count:.4f} electrons but the molecule has "
            f"{n_electrons:g} valence electrons; pass --renormalize to rescale it"
        )
    if relative > 1e-12:
        rho = rho * (n_electrons / count)
        if relative > 1e-6:  # below: float32 rounding of a density that was already normalised
            notes.append(f"rescaled from {count:.6f} to {n_electrons:g} electrons")
    return rho, notes
