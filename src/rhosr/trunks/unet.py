"""A periodic 3D residual U-Net trunk, for any box size.

``conv_first`` Conv3d(C_in->c0, K) + PReLU; encoder level 0: ``blocks`` residual blocks at c0;
each further level ``l``: a stride-2 periodic Conv3d(c_{l-1}->c_l, K) + PReLU (``n`` points ->
``ceil(n/2)``), then ``blocks`` residual blocks; decoder, deepest level first: a 1x1x1
Conv3d(c_l->c_{l-1}), periodic linear upsampling x2 cut to the skip's size (so odd sizes work),
added to the skip, then ``blocks`` residual blocks; then the SRResNet's pixel-shuffle upsampling
(``num_up`` times x2) and ``conv_last`` Conv3d(c0->1, K). The calibrated CPU trunk is
``channels: [16, 32, 64], blocks: 1, kernel: 3`` (shared MEASUREMENTS.md: "Which trunk learns
fastest on this CPU").

Not local: a stride-2 layer samples every second point, so the network commutes with a shift
of the box only by multiples of ``2**(levels-1)`` coarse voxels (and then only when the box size
is a multiple of it too); tiles and crops at arbitrary offsets are not exact. Its two parts are
run apart instead when a box is too large for memory: the ``body`` (everything on the coarse
mesh and below, ~0.7 kB per coarse voxel) runs on the whole box, and the ``head`` (the
pixel-shuffle upsampling and ``conv_last``, ~2.1 kB per coarse voxel, local within
``head_radius`` coarse voxels) runs in tiles (:mod:`rhosr.inference`), which is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rhosr.errors import InputError
from rhosr.layers import NORMS, PeriodicConv3d, PeriodicDownConv3d, ResidualBlock, Upsample, upsample_linear
from rhosr.trunks import register_trunk
from rhosr.trunks.srresnet import BYTES_PER_COARSE_VOXEL, check_kernel, check_range

MAX_LEVELS = 5
MAX_CHANNELS = 1024
MAX_BLOCKS = 64


@dataclass(frozen=True)
class UNetOptions:
    channels: tuple[int, ...] = (16, 32, 64)  # per level, finest first; the number of levels
    blocks: int = 1  # residual blocks per level, in the encoder and in the decoder
    kernel: int = 3
    num_up: int = 1  # upscale = 2**num_up
    norm: str = "none"  # "none" or "instance" (inside the residual blocks and the upsampling)
    head_kernel: int = 3  # kernel of the pixel-shuffle convolution (1: a per-voxel projection)

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(self.channels))
        check_range(len(self.channels), 1, MAX_LEVELS, "unet levels (len(channels))")
        for c in self.channels:
            check_range(c, 1, MAX_CHANNELS, "unet channels")
        check_range(self.blocks, 0, MAX_BLOCKS, "unet blocks")
        check_range(self.num_up, 1, 2, "num_up")
        check_kernel(self.kernel, "unet kernel")
        check_kernel(self.head_kernel, "unet head_kernel")
        if self.norm not in NORMS:
            raise InputError(f"model config: norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def upscale(self) -> int:
        return 2**self.num_up

    @property
    def receptive_radius(self) -> int:
        """A bound on the coarse voxels one output point depends on, on each side."""
        h = self.kernel // 2
        r = h + 2 * h * self.blocks  # conv_first and level 0 (encoder)
        for level in range(1, len(self.channels)):
            step = 2**level
            r += h * step // 2 + 2 * h * self.blocks * step  # stride-2 conv, encoder blocks
            r += step // 2 + 2 * h * self.blocks * (step // 2)  # upsampling, decoder blocks
        r += 2 * h * self.blocks  # level-0 decoder blocks
        return r + self.head_radius

    @property
    def local(self) -> bool:
        return False

    @property
    def head_radius(self) -> int:
        """Coarse voxels on each side that one output point of the head depends on."""
        h = self.kernel // 2
        return self.num_up * (self.head_kernel // 2) + -(-h // self.upscale)

    def body_bytes_per_voxel(self, in_channels: int = 1) -> float:
        """Peak memory of the body on the whole box per coarse voxel: 964 B for 16/32/64
        channels and 6 inputs, against 738 B measured (growth of ``ru_maxrss``, 64^3 box)."""
        return 100 + 4 * (in_channels + 10 * sum(c / 8**level for level, c in enumerate(self.channels)))

    def head_bytes_per_voxel(self) -> float:
        """Peak memory of the head per coarse voxel of a tile: 2,740 B for 16 channels, against
        2,102 B measured (as above)."""
        a, b = BYTES_PER_COARSE_VOXEL
        return a + b * self.channels[0]

    def bytes_per_voxel(self, in_channels: int = 1) -> float:
        """Like the SRResNet's (its upsampling dominates), with each level's features: 3,278 B
        for 16/32/64 channels and 6 inputs, against 2,530 B measured (growth of ``ru_maxrss``
        over one forward pass on a 64^3 box, sad_fine base)."""
        a, b = BYTES_PER_COARSE_VOXEL
        return a + b * sum(c / 8**level for level, c in enumerate(self.channels)) + 4 * in_channels


def _blocks(channels: int, options: UNetOptions) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(channels, options.kernel, options.norm)
                           for _ in range(options.blocks)])


@register_trunk("unet")
class UNet3D(nn.Module):
    """Coarse channels ``(B, C_in, X, Y, Z)`` -> fine ``(B, 1, uX, uY, uZ)``, any X, Y, Z."""

    Options = UNetOptions

    def __init__(self, options: UNetOptions, in_channels: int = 1):
        super().__init__()
        self.options = options
        ch = options.channels
        k = options.kernel
        self.conv_first = PeriodicConv3d(in_channels, ch[0], k)
        self.act_first = nn.PReLU()
        self.encoder = nn.ModuleList([_blocks(ch[0], options)])
        self.down = nn.ModuleList()
        for level in range(1, len(ch)):
            self.down.append(nn.Sequential(PeriodicDownConv3d(ch[level - 1], ch[level], k), nn.PReLU()))
            self.encoder.append(_blocks(ch[level], options))
        self.lateral = nn.ModuleList(PeriodicConv3d(ch[level], ch[level - 1], 1)
                                     for level in range(1, len(ch)))
        self.decoder = nn.ModuleList(_blocks(ch[level - 1], options) for level in range(1, len(ch)))
        self.upsample = nn.Sequential(*[Upsample(ch[0], options.head_kernel, options.norm)
                                        for _ in range(options.num_up)])
        self.conv_last = PeriodicConv3d(ch[0], 1, k)

    def zero_output(self) -> None:
        nn.init.zeros_(self.conv_last.weight)
        nn.init.zeros_(self.conv_last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Coarse inputs ``(B, C_in, X, Y, Z)`` -> features ``(B, channels[0], X, Y, Z)``."""
        x = self.encoder[0](self.act_first(self.conv_first(x)))
        skips = [x]
        for down, blocks in zip(self.down, self.encoder[1:]):
            x = blocks(down(x))
            skips.append(x)
        for level in range(len(skips) - 1, 0, -1):
            skip = skips[level - 1]
            up = upsample_linear(self.lateral[level - 1](x), 1)
            up = up[..., : skip.shape[2], : skip.shape[3], : skip.shape[4]]
            x = self.decoder[level - 1](up + skip)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``(B, channels[0], X, Y, Z)`` -> fine ``(B, 1, uX, uY, uZ)``; local within
        ``options.head_radius`` coarse voxels."""
        return self.conv_last(self.upsample(features))


def shift_period(options: UNetOptions) -> int:
    """Coarse voxels by which a shift of the box commutes with the network (box sizes too)."""
    return 2 ** (len(options.channels) - 1)


