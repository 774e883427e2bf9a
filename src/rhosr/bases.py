"""The registry of bases: what the trunk's output is added to before the ReLU and the
rescaling to N_e. A new base is one class plus :func:`register_base`.

A base class is an ``nn.Module`` with ``Options`` (a frozen dataclass), ``halo`` (coarse voxels
it adds to the trunk's receptive radius), ``needs_fine`` (True when it reads a fine-mesh array
that the data path computes, see :meth:`rhosr.model.DensityModel.build_fine`), ``needs_sad``
(True when the model's first input must be a single SAD channel) and
``forward(x, fine, num_up)``: the coarse inputs ``(B, C, X, Y, Z)`` and the fine array
``(B, 1, uX, uY, uZ)`` or None -> the base on the fine mesh, or None for no base.

- ``none``: the trunk's output alone (the paper).
- ``sad_linear``: the first input channel (the SAD) interpolated linearly to the fine mesh,
  periodic (:func:`rhosr.layers.upsample_linear`); the trunk learns the correction.
- ``sad_fine``: the first input's SAD evaluated exactly on the fine mesh (interpolation costs
  ~0.9 points of Err_rho that the trunk must otherwise learn back).

A fitted prior (per-element radial valence profiles) is not written yet.
"""

from __future__ import annotations

import torch
from torch import nn

from rhosr.inputs import NoOptions
from rhosr.layers import upsample_linear
from rhosr.registry import Registry

BASES = Registry("base")
register_base = BASES.register  # class decorator: available as ``base: NAME``
get_base = BASES.get_class


@register_base("none")
class NoBase(nn.Module):
    Options = NoOptions
    halo = 0
    needs_fine = False
    needs_sad = False

    def __init__(self, options: NoOptions | None = None):
        super().__init__()
        self.options = options or NoOptions()

    def forward(self, x: torch.Tensor, fine: torch.Tensor | None, num_up: int) -> torch.Tensor | None:
        return None


@register_base("sad_linear")
class LinearSADBase(NoBase):
    halo = 1  # fine point 2i+1 reads coarse point i+1
    needs_sad = True

    def forward(self, x, fine, num_up):
        return upsample_linear(x[:, :1], num_up)


@register_base("sad_fine")
class FineSADBase(NoBase):
    needs_fine = True
    needs_sad = True

    def forward(self, x, fine, num_up):
        if fine is None:
            raise ValueError("base sad_fine needs the fine-mesh SAD (fine=...)")
        return fine
