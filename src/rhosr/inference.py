"""Running a trained network on one box: whole, tiled, or averaged over the 24 rotations.

Arrays are numpy ``(X, Y, Z)``: the coarse input (e/Bohr^3) in, the fine density (e/Bohr^3,
``upscale`` times more points per axis) out, rescaled to integrate to ``n_electrons``.

Tiling. A model without normalisation layers (``norm: none``) is local: the fine output at a
point depends only on coarse inputs within ``receptive_radius`` coarse voxels. The box is then
cut into tiles of ``tile`` coarse points per axis; each tile is read with a periodic halo of
``receptive_radius + 1`` voxels (the +1 covers the interpolated SAD of ``residual_sad``), run,
and its core copied into the output; the electron-count rescaling is applied once to the
stitched box. The result equals whole-box inference up to float rounding. Instance-norm models
(the paper's) normalise over the whole box and cannot be tiled exactly: they refuse.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rhosr.data import ROTATIONS, rotate_grid
from rhosr.errors import InputError
from rhosr.model import SRResNet3D

BYTES_PER_COARSE_VOXEL = (1300, 90)
"""Peak inference memory per coarse voxel: ``a + b * channels`` bytes (float32). Measured as
the growth of ``ru_maxrss`` over one forward pass of a 6-block K=3 model on 64^3 and 96^3
boxes: 1,760 B per voxel with 8 channels, 2,400 B with 16 (about 1,150 + 80 C), plus ~10%;
the fine-mesh buffers of the last convolution dominate for small C."""


def inverse_rotation(perm, signs):
    """The ``(perm, signs)`` that undoes :func:`rhosr.data.rotate_grid` with ``(perm, signs)``."""
    inv = [0, 0, 0]
    for d, p in enumerate(perm):
        inv[p] = d
    return tuple(inv), tuple(signs[inv[a]] for a in range(3))


def estimate_memory_bytes(model: SRResNet3D, coarse_shape) -> int:
    """Rough peak memory of one forward pass on a coarse box of this shape."""
    a, b = BYTES_PER_COARSE_VOXEL
    return int((a + b * model.config.num_feat) * math.prod(coarse_shape))


def tile_for_memory(model: SRResNet3D, max_bytes: float) -> int:
    """The largest tile core (coarse points per axis) whose padded tile fits ``max_bytes``."""
    halo = tile_halo(model)
    a, b = BYTES_PER_COARSE_VOXEL
    side = int((max_bytes / (a + b * model.config.num_feat)) ** (1 / 3))
    if side - 2 * halo < 4:
        raise InputError(
            f"{max_bytes / 1e9:.2f} GB is too little memory for one tile of this model "
            f"(halo {halo} coarse voxels)"
        )
    return side - 2 * halo


MAX_TILING_OVERHEAD = 8.0
"""Tiling that costs more than this many whole-box passes gets a warning (halos recompute)."""


def tiling_overhead(model: SRResNet3D, coarse_shape, tile: int) -> float:
    """Coarse voxels the tiles run through (cores plus halos), over the box's own."""
    halo = tile_halo(model)
    padded = math.prod(math.ceil(n / tile) * (min(tile, n) + 2 * halo) for n in coarse_shape)
    return padded / math.prod(coarse_shape)


def tile_halo(model: SRResNet3D) -> int:
    return model.config.receptive_radius + 1


def _run(model: SRResNet3D, coarse: np.ndarray, device: str) -> np.ndarray:
    x = torch.as_tensor(np.ascontiguousarray(coarse, dtype=np.float32), device=device)[None, None]
    with torch.inference_mode():
        return model(x)[0, 0].float().cpu().numpy()


def _run_tiled(model: SRResNet3D, coarse: np.ndarray, tile: int, device: str, progress=None) -> np.ndarray:
    up = model.config.upscale
    halo = tile_halo(model)
    shape = coarse.shape
    out = np.empty([up * n for n in shape], dtype=np.float32)
    starts = [list(range(0, n, tile)) for n in shape]
    total = math.prod(len(s) for s in starts)
    done = 0
    for sx in starts[0]:
        for sy in starts[1]:
            for sz in starts[2]:
                core = [min(tile, n - s) for s, n in zip((sx, sy, sz), shape)]
                index = [
                    (s - halo + np.arange(c + 2 * halo)) % n for s, c, n in zip((sx, sy, sz), core, shape)
                ]
                piece = _run(model, coarse[np.ix_(*index)], device)
                h = up * halo
                out[
                    up * sx : up * (sx + core[0]),
                    up * sy : up * (sy + core[1]),
                    up * sz : up * (sz + core[2]),
                ] = piece[h : h + up * core[0], h : h + up * core[1], h : h + up * core[2]]
                done += 1
                if progress:
                    progress(done, total)
    return out


def predict_array(
    model: SRResNet3D,
    coarse: np.ndarray,
    n_electrons: float,
    fine_voxel_volume: float,
    tile: int | None = None,
    rotations: int = 1,
    device: str = "cpu",
    progress=None,
) -> np.ndarray:
    """The fine density (float32, e/Bohr^3) of a coarse input (e/Bohr^3), integrating to ``n_electrons``.

    ``tile``: coarse points per axis of a tile core (None: whole box). ``rotations``: average
    the predictions of the first ``rotations`` of the 24 proper grid rotations (1: none).
    """
    if not 1 <= rotations <= len(ROTATIONS):
        raise InputError(f"rotations must be between 1 and {len(ROTATIONS)}, got {rotations}")
    tiled = tile is not None and any(tile < n for n in coarse.shape)
    if tiled and model.config.norm != "none":
        raise InputError(
            "this model uses instance norm, which sees the whole box: it cannot be tiled "
            "(use a model with norm: none, or give it more memory)"
        )
    if tile is not None and tile < 1:
        raise InputError(f"tile must be >= 1 coarse point, got {tile}")
    if tiled:
        overhead = tiling_overhead(model, coarse.shape, tile)
        if overhead > MAX_TILING_OVERHEAD:
            import warnings

            from rhosr.errors import RhosrWarning

            warnings.warn(f"tiles of {tile} coarse points with a halo of {tile_halo(model)} make "
                          f"{overhead:.0f}x the work of one whole-box pass; a larger --tile (or "
                          f"--max-memory) is faster", RhosrWarning, stacklevel=2)
    total = None
    for perm, signs in ROTATIONS[:rotations]:
        rotated = np.ascontiguousarray(rotate_grid(coarse, perm, signs))
        pred = _run_tiled(model, rotated, tile, device, progress) if tiled else _run(model, rotated, device)
        pred = rotate_grid(pred, *inverse_rotation(perm, signs))
        total = pred.astype(np.float64) if total is None else total + pred
    rho = total / rotations
    integral = rho.sum() * fine_voxel_volume
    if integral <= 0:
        rho = np.full_like(rho, n_electrons / (rho.size * fine_voxel_volume))
    else:
        rho *= n_electrons / integral
    return rho.astype(np.float32)
