"""The registry of trunks: the network between the model's input channels (coarse mesh) and
its output channel (fine mesh). A trunk is one module here plus one :func:`register_trunk` line.

A trunk class is an ``nn.Module`` with:

- ``Options``: a frozen dataclass of its hyper-parameters, read strictly from the model config
  (:mod:`rhosr.schema`), that checks its own ranges and answers, without building anything:
  ``upscale`` (fine points per coarse point per axis), ``receptive_radius`` (coarse voxels on
  each side that one output point depends on, a bound), ``local`` (True when the output at a
  point depends only on the inputs within ``receptive_radius`` through the same function
  everywhere, so tiles and crops are exact), ``bytes_per_voxel(in_channels)`` (peak memory of one
  float32 forward pass per coarse voxel, for tiling);
- ``__init__(options, in_channels)`` and ``forward(x)``: ``(B, in_channels, X, Y, Z)`` ->
  ``(B, 1, uX, uY, uZ)``;
- ``zero_output()``: zero the last layer, so that a model starts as its base.
"""

from __future__ import annotations

from rhosr.errors import InputError

TRUNKS: dict[str, type] = {}


def register_trunk(name: str):
    """Class decorator: make a trunk available as ``trunk: {name: NAME, ...}``."""
    def add(cls):
        cls.name = name
        TRUNKS[name] = cls
        return cls
    return add


def get_trunk(name: str) -> type:
    try:
        return TRUNKS[name]
    except (KeyError, TypeError):
        raise InputError(f"model config: unknown trunk {name!r}; choose from {', '.join(TRUNKS)}") from None


from rhosr.trunks import srresnet, unet  # noqa: E402, F401  (register the shipped trunks)
