"""Running a trained network on one box: whole, tiled, or averaged over the 24 rotations.

Arrays are numpy: the coarse inputs ``(C, X, Y, Z)`` (or ``(X, Y, Z)`` for one channel,
e/Bohr^3) in, the fine density ``(uX, uY, uZ)`` (e/Bohr^3) out, rescaled to integrate to
``n_electrons``; a base that reads a fine-mesh array gets it as ``fine`` ``(uX, uY, uZ)``.
Everything about the network is asked of the model: ``upscale``, ``halo``, ``local``,
``bytes_per_voxel`` (:class:`rhosr.model.DensityModel`).

Tiling. A local model (its trunk says so: e.g. an SRResNet without normalisation layers) has
a fine output at a point that depends only on coarse inputs within ``halo`` coarse voxels. The
box is then cut into tiles of ``tile`` coarse points per axis; each tile is read with a periodic
halo of ``halo`` voxels, run, and its core copied into the output; the electron-count
rescaling is applied once to the stitched box. The result equals whole-box inference up to
float rounding. A trunk that is not local but has a local head (the U-Net: its stride-2 layers
are not shift-equivariant) runs its body on the whole box and only its head in tiles, also
exact. Other models (instance norms see the whole box) cannot be tiled: they refuse.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from rhosr.errors import InputError
from rhosr.grid import ROTATIONS, inverse_rotation, rotate_grid  # noqa: F401  (inverse_rotation: old home)
from rhosr.model import DensityModel
from rhosr.onnx_runtime import rescale_to_electrons


def estimate_memory_bytes(model: DensityModel, coarse_shape) -> int:
    """Rough peak memory of one forward pass on a coarse box of this shape (X, Y, Z)."""
    return int(model.bytes_per_voxel * math.prod(coarse_shape[-3:]))


def tile_for_memory(model: DensityModel, max_bytes: float) -> int:
    """The largest tile core (coarse points per axis) whose padded tile fits ``max_bytes``."""
    halo = tile_halo(model)
    side = int((max_bytes / model.config.tile_bytes_per_voxel) ** (1 / 3))
    if side - 2 * halo < 4:
        raise InputError(
            f"{max_bytes / 1e9:.2f} GB is too little memory for one tile of this model "
            f"(halo {halo} coarse voxels)"
        )
    return side - 2 * halo


MAX_TILING_OVERHEAD = 8.0
"""Tiling that costs more than this many whole-box passes gets a warning (halos recompute)."""


def tiling_overhead(model: DensityModel, coarse_shape, tile: int) -> float:
    """Coarse voxels the tiles run through (cores plus halos), over the box's own."""
    halo = tile_halo(model)
    shape = coarse_shape[-3:]
    padded = math.prod(math.ceil(n / tile) * (min(tile, n) + 2 * halo) for n in shape)
    return padded / math.prod(shape)


def tile_halo(model: DensityModel) -> int:
    """Coarse voxels read around each tile: the model's halo (its trunk's receptive radius plus
    what its base reads, e.g. one voxel for the interpolated SAD), or for a head-tiled model
    the head's radius."""
    return model.config.tile_halo


def _as_input(coarse: np.ndarray, device: str) -> torch.Tensor:
    """``(1, C, X, Y, Z)`` float32 on ``device``, channels-last on the CPU (oneDNN's layout;
    a model loaded for prediction is converted to it, :func:`rhosr.predict.load_predictor`)."""
    x = torch.as_tensor(np.ascontiguousarray(coarse, dtype=np.float32), device=device)[None]
    return x.to(memory_format=torch.channels_last_3d) if x.device.type == "cpu" else x


def _run(model: DensityModel, coarse: np.ndarray, device: str, fine: np.ndarray | None = None) -> np.ndarray:
    x = _as_input(coarse, device)
    f = None if fine is None else torch.as_tensor(np.ascontiguousarray(fine, dtype=np.float32),
                                                  device=device)[None, None]
    with torch.inference_mode():
        return model(x, fine=f)[0, 0].float().cpu().numpy()


def _tiles(shape, tile: int, halo: int, up: int, progress=None):
    """The tiles of a coarse box ``shape`` with cores of ``tile`` points per axis, in order:
    per tile, the periodic coarse indices of its core and halo on each axis, the slices of its
    core on the fine mesh of the box, and the same core inside the tile's fine output."""
    starts = [range(0, n, tile) for n in shape]
    total = math.prod(len(s) for s in starts)
    for done, start in enumerate(itertools.product(*starts), 1):
        core = [min(tile, n - s) for s, n in zip(start, shape)]
        index = [(s - halo + np.arange(c + 2 * halo)) % n for s, c, n in zip(start, core, shape)]
        in_box = tuple(slice(up * s, up * (s + c)) for s, c in zip(start, core))
        in_tile = tuple(slice(up * halo, up * (halo + c)) for c in core)
        yield index, in_box, in_tile
        if progress:
            progress(done, total)


def _run_tiled(model: DensityModel, coarse: np.ndarray, tile: int, device: str, progress=None,
               fine: np.ndarray | None = None) -> np.ndarray:
    up = model.upscale
    out = np.empty([up * n for n in coarse.shape[1:]], dtype=np.float32)
    for index, in_box, in_tile in _tiles(coarse.shape[1:], tile, tile_halo(model), up, progress):
        fine_tile = None
        if fine is not None:  # fine point up*i + k of coarse point i (wrapping with it)
            fine_tile = fine[np.ix_(*[(up * i[:, None] + np.arange(up)).ravel() for i in index])]
        out[in_box] = _run(model, coarse[(slice(None), *np.ix_(*index))], device, fine_tile)[in_tile]
    return out


def _run_head_tiled(model: DensityModel, coarse: np.ndarray, tile: int, device: str, progress=None,
                    fine: np.ndarray | None = None) -> np.ndarray:
    """The trunk's body on the whole box, its local head in tiles (exact), the base on the
    whole fine mesh, then the ReLU: what ``model(x, fine=fine)`` returns."""
    up = model.upscale
    x = _as_input(coarse, device)
    with torch.inference_mode():
        features = model.trunk.body(model.trunk_input(x))
        out = torch.empty((1, 1, *(up * n for n in coarse.shape[1:])), dtype=features.dtype, device=device)
        for index, in_box, in_tile in _tiles(coarse.shape[1:], tile, tile_halo(model), up, progress):
            piece = features
            for axis, i in enumerate(index):
                piece = piece.index_select(2 + axis, torch.as_tensor(i, device=device))
            out[(..., *in_box)] = model.scale_output(model.trunk.head(piece))[(..., *in_tile)]
        del features
        f = None if fine is None else torch.as_tensor(np.ascontiguousarray(fine, dtype=np.float32),
                                                      device=device)[None, None]
        base = model.base(x, f, model.config.num_up)
        if base is not None:
            out += base
        return torch.relu_(out)[0, 0].float().cpu().numpy()


def predict_array(
    model: DensityModel,
    coarse: np.ndarray,
    n_electrons: float,
    fine_voxel_volume: float,
    tile: int | None = None,
    rotations: int = 1,
    device: str = "cpu",
    progress=None,
    fine: np.ndarray | None = None,
) -> np.ndarray:
    """The fine density (float32, e/Bohr^3) of coarse inputs (e/Bohr^3), integrating to ``n_electrons``.

    ``coarse``: ``(C, X, Y, Z)``, or ``(X, Y, Z)`` for a one-channel model. ``fine``: the
    base's fine-mesh array ``(uX, uY, uZ)`` when the model needs one. ``tile``: coarse points
    per axis of a tile core (None: whole box). ``rotations``: average the predictions of the
    first ``rotations`` of the 24 proper grid rotations (1: none).
    """
    coarse = np.asarray(coarse)
    if coarse.ndim == 3:
        coarse = coarse[None]
    n_in = model.config.in_channels
    if coarse.ndim != 4 or coarse.shape[0] != n_in:
        raise InputError(f"the model takes {n_in} input channel(s) (C, X, Y, Z), got an array of "
                         f"shape {coarse.shape}")
    if model.needs_fine and fine is None:
        raise InputError(f"base {model.config.base.name} needs the fine-mesh array (fine=...)")
    if not 1 <= rotations <= len(ROTATIONS):
        raise InputError(f"rotations must be between 1 and {len(ROTATIONS)}, got {rotations}")
    shape = coarse.shape[1:]
    tiled = tile is not None and any(tile < n for n in shape)
    if tiled and not model.tileable:
        reason = ("uses instance norm, which sees the whole box"
                  if getattr(model.config.trunk.options, "norm", None) == "instance"
                  else f"has a {model.config.trunk.name} trunk, which is not local")
        raise InputError(f"this model {reason}: it cannot be tiled "
                         "(use a local model, e.g. srresnet with norm: none, or give it more memory)")
    if tile is not None and tile < 1:
        raise InputError(f"tile must be >= 1 coarse point, got {tile}")
    if tiled:
        overhead = tiling_overhead(model, shape, tile)
        if overhead > MAX_TILING_OVERHEAD:
            import warnings

            from rhosr.errors import RhosrWarning

            warnings.warn(f"tiles of {tile} coarse points with a halo of {tile_halo(model)} make "
                          f"{overhead:.0f}x the work of one whole-box pass; a larger --tile (or "
                          f"--max-memory) is faster", RhosrWarning, stacklevel=2)
    total = None
    for perm, signs in ROTATIONS[:rotations]:
        rotated = np.ascontiguousarray(rotate_grid(coarse, perm, signs))
        fine_rotated = None if fine is None else np.ascontiguousarray(rotate_grid(fine, perm, signs))
        if tiled and model.head_tiled:
            pred = _run_head_tiled(model, rotated, tile, device, progress, fine_rotated)
        elif tiled:
            pred = _run_tiled(model, rotated, tile, device, progress, fine_rotated)
        else:
            pred = _run(model, rotated, device, fine_rotated)
        pred = rotate_grid(pred, *inverse_rotation(perm, signs))
        total = pred.astype(np.float64) if total is None else total + pred
    return rescale_to_electrons(total / rotations, n_electrons, fine_voxel_volume)
