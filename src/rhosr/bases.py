"""The registry of bases: what the trunk's output is added to before the ReLU and the
rescaling to N_e. A new base is one class plus :func:`register_base`.

A base class is an ``nn.Module`` with ``Options`` (a frozen dataclass), ``halo`` (coarse voxels
it adds to the trunk's receptive radius), ``needs_fine`` (True when it reads a fine-mesh array
that the data path computes with its ``fine_array(options, builders, mol, grid)``, see
:meth:`rhosr.model.ModelConfig.build_fine`), ``needs_sad`` (True when the model's first input
must be a single SAD channel) and
``forward(x, fine, num_up)``: the coarse inputs ``(B, C, X, Y, Z)`` and the fine array
``(B, 1, uX, uY, uZ)`` or None -> the base on the fine mesh, or None for no base.

- ``none``: the trunk's output alone (the paper).
- ``sad_linear``: the first input channel (the SAD) interpolated linearly to the fine mesh,
  periodic (:func:`rhosr.layers.upsample_linear`); the trunk learns the correction.
- ``sad_fine``: the first input's SAD on the fine mesh (:func:`rhosr.sad.sad_fine`: exact
  within 4 Bohr of each nucleus, the interpolated coarse SAD elsewhere; 0.006% Err_rho from the
  exact fine-mesh SAD at a fifth of its cost); linear interpolation alone is 2.2% off, which
  the trunk must otherwise learn back.
- ``fitted_prior``: the SAD on the fine mesh plus corrections around atoms (per element, or
  per element and neighbour count with ``typed``) and, with ``bond_positions``, along bonds,
  fitted to training labels by least squares and then towards the least absolute deviation
  (:mod:`rhosr.prior`; ``rhosr fit-prior`` fills in the kinds and coefficients of a training
  config).
"""

from __future__ import annotations

import torch
from torch import nn

from rhosr.errors import InputError
from rhosr.inputs import NoOptions
from rhosr.layers import upsample_linear
from rhosr.prior import PriorOptions
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

    @staticmethod
    def fine_array(options, builders, mol, grid):
        """The first input's SAD on the fine mesh ``(uX, uY, uZ)``, e/Bohr^3 (by
        :func:`rhosr.sad.sad_fine`: exact near the nuclei, ~0.006% Err_rho from exact overall)."""
        from rhosr.sad import sad_fine

        return sad_fine(mol, grid, atrocious=builders[0].atrocious)

    def forward(self, x, fine, num_up):
        if fine is None:
            raise ValueError(f"base {self.name} needs its fine-mesh array (fine=...)")
        return fine


@register_base("fitted_prior")
class FittedPriorBase(FineSADBase):
    Options = PriorOptions
    needs_sad = False

    def __init__(self, options: PriorOptions | None = None):
        super().__init__(options or PriorOptions())
        if not self.options.coefficients and not self.options.bond_coefficients:
            raise InputError("base fitted_prior has no coefficients: fit them to your training "
                             "labels first (rhosr fit-prior --store STORE --config CONFIG --out NEW)")

    @staticmethod
    def fine_array(options, builders, mol, grid):
        """The SAD plus the fitted corrections on the fine mesh ``(uX, uY, uZ)``, e/Bohr^3."""
        from rhosr.prior import prior_density

        return prior_density(mol, grid, "fine", options)
