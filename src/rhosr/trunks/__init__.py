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

from rhosr.registry import Registry

TRUNKS = Registry("trunk")
register_trunk = TRUNKS.register  # class decorator: available as ``trunk: {name: NAME, ...}``
get_trunk = TRUNKS.get_class


from rhosr.trunks import srresnet, unet  # noqa: E402, F401  (register the shipped trunks)
