"""The paper's 3D super-resolution ResNet (SI section 2), unchanged.

Architecture (SRResNet in 3D): ``conv_first`` Conv3d(C_in->C, K1) + PReLU; ``body``: num_block
residual blocks [Conv3d(K2) - InstanceNorm3d - PReLU - Conv3d(K2) - InstanceNorm3d] +
identity; ``conv_body`` Conv3d(K2) + InstanceNorm3d; long skip from ``conv_first``;
``upsample``: num_up blocks [Conv3d(C->8C, K2) - InstanceNorm3d - 3D pixel shuffle (x2 per
axis) - PReLU]; ``conv_last`` Conv3d(C->1, K1). Convolutions have stride 1, 'same' size and
circular padding (the box is periodic); instance norms have no affine parameters. The paper's
QM9 model is ``num_feat 32, kernel_first 5, kernel 5, num_block 32, num_up 1`` (9,354,403
parameters with one input channel), its x4 model ``64, 3, 3, 64, 2``.

With ``norm: none`` the network is local (every layer is a convolution or pointwise): the
output at a point depends only on the inputs within :attr:`Options.receptive_radius`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rhosr.errors import InputError
from rhosr.layers import NORMS, PeriodicConv3d, ResidualBlock, Upsample, make_norm
from rhosr.trunks import register_trunk

MAX_FEAT = 1024
MAX_BLOCKS = 1024
MAX_KERNEL = 15

BYTES_PER_COARSE_VOXEL = (1300, 90)
"""Peak inference memory per coarse voxel: ``a + b * num_feat`` bytes (float32). Measured as
the growth of ``ru_maxrss`` over one forward pass of a 6-block K=3 model on 64^3 and 96^3
boxes: 1,760 B per voxel with 8 channels, 2,400 B with 16 (about 1,150 + 80 C), plus ~10%;
the fine-mesh buffers of the last convolution dominate for small C."""


def check_kernel(value: int, what: str) -> None:
    if not (1 <= value <= MAX_KERNEL and value % 2 == 1):
        raise InputError(f"model config: {what} must be an odd number from 1 to {MAX_KERNEL}, got {value}")


def check_range(value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise InputError(f"model config: {what} must be from {low} to {high}, got {value}")


@dataclass(frozen=True)
class SRResNetOptions:
    """Hyper-parameters (BasicSR's names; the paper's in comments)."""

    num_feat: int = 32  # C
    kernel_first: int = 5  # K1 (conv_first and conv_last)
    kernel: int = 5  # K2 (body and upsampling)
    num_block: int = 32  # N_res
    num_up: int = 1  # N_up: upscale = 2**num_up
    norm: str = "instance"  # "instance" (the paper) or "none" (local: crops and tiles are exact)

    def __post_init__(self):
        check_range(self.num_feat, 1, MAX_FEAT, "srresnet num_feat")
        check_range(self.num_block, 0, MAX_BLOCKS, "srresnet num_block")
        check_range(self.num_up, 1, 2, "num_up")
        check_kernel(self.kernel_first, "srresnet kernel_first")
        check_kernel(self.kernel, "srresnet kernel")
        if self.norm not in NORMS:
            raise InputError(f"model config: norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def upscale(self) -> int:
        return 2**self.num_up

    @property
    def receptive_radius(self) -> int:
        """Coarse voxels the output at a point depends on, on each side (norms aside)."""
        k1, k2 = self.kernel_first // 2, self.kernel // 2
        return k1 + 2 * k2 * self.num_block + k2 + self.num_up * k2 + -(-k1 // self.upscale)

    @property
    def local(self) -> bool:
        return self.norm == "none"

    def bytes_per_voxel(self, in_channels: int = 1) -> float:
        a, b = BYTES_PER_COARSE_VOXEL
        return a + b * self.num_feat + 4 * (in_channels - 1)


@register_trunk("srresnet")
class SRResNet3D(nn.Module):
    """Coarse channels ``(B, C_in, X, Y, Z)`` -> fine ``(B, 1, uX, uY, uZ)``, u = 2**num_up."""

    Options = SRResNetOptions

    def __init__(self, options: SRResNetOptions, in_channels: int = 1):
        super().__init__()
        self.options = options
        c = options.num_feat
        norm = options.norm
        self.conv_first = PeriodicConv3d(in_channels, c, options.kernel_first)
        self.act_first = nn.PReLU()
        self.body = nn.Sequential(*[ResidualBlock(c, options.kernel, norm) for _ in range(options.num_block)])
        self.conv_body = PeriodicConv3d(c, c, options.kernel)
        self.norm_body = make_norm(norm, c)
        self.upsample = nn.Sequential(*[Upsample(c, options.kernel, norm) for _ in range(options.num_up)])
        self.conv_last = PeriodicConv3d(c, 1, options.kernel_first)

    def zero_output(self) -> None:
        nn.init.zeros_(self.conv_last.weight)
        nn.init.zeros_(self.conv_last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.act_first(self.conv_first(x))
        x = self.norm_body(self.conv_body(self.body(feat))) + feat
        return self.conv_last(self.upsample(x))
