"""The 3D super-resolution ResNet (paper SI section 2): an ``nn.Module`` and nothing else.

Tensors are ``(B, C, X, Y, Z)``; the input is the SAD density on the coarse mesh
(e/Bohr^3, one channel), the output the density on the fine mesh, ``2**num_up`` times larger
per axis, rescaled to integrate to the electron count.

Architecture (SRResNet in 3D): ``conv_first`` Conv3d(1->C, K1) + PReLU; ``body``: num_block
residual blocks [Conv3d(K2) - InstanceNorm3d - PReLU - Conv3d(K2) - InstanceNorm3d] +
identity; ``conv_body`` Conv3d(K2) + InstanceNorm3d; long skip from ``conv_first``;
``upsample``: num_up blocks [Conv3d(C->8C, K2) - InstanceNorm3d - 3D pixel shuffle (x2 per
axis) - PReLU]; ``conv_last`` Conv3d(C->1, K1); ReLU; rescale to ``N_e``. Convolutions have
stride 1, 'same' size and circular padding (the box is periodic); instance norms have no
affine parameters. The paper's QM9 model is ``ModelConfig(32, 5, 5, 32, 1)`` (9.35 M
parameters), its x4 model ``ModelConfig(64, 3, 3, 64, 2)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from rhosr.config import from_dict_strict
from rhosr.errors import InputError

NORMS = ("instance", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`SRResNet3D` (BasicSR's names; the paper's in comments)."""

    num_feat: int = 32  # C
    kernel_first: int = 5  # K1 (conv_first and conv_last)
    kernel: int = 5  # K2 (body and upsampling)
    num_block: int = 32  # N_res
    num_up: int = 1  # N_up: upscale = 2**num_up
    residual_sad: bool = False  # learn the correction on top of the upsampled SAD (option)
    norm: str = "instance"  # "instance" (the paper) or "none" (local: crops and tiles are exact)

    def __post_init__(self):
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return from_dict_strict(cls, d, "model config")


class _CircularPad3d(torch.autograd.Function):
    """``F.pad(mode='circular')`` with a cheap backward: the gradient of the halo is folded
    back onto the faces it was copied from (PyTorch's own backward is ~40% of a CPU step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int) -> torch.Tensor:
        ctx.pad = pad
        return F.pad(x, (pad,) * 6, mode="circular")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p = ctx.pad
        for axis in (2, 3, 4):
            n = grad.shape[axis] - 2 * p
            core = grad.narrow(axis, p, n).clone()
            core.narrow(axis, 0, p).add_(grad.narrow(axis, n + p, p))
            core.narrow(axis, n - p, p).add_(grad.narrow(axis, 0, p))
            grad = core
        return grad, None


def circular_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Periodic padding of the three spatial axes of ``(B, C, X, Y, Z)`` by ``pad`` voxels."""
    if pad == 0:
        return x
    if min(x.shape[2:]) < pad:
        raise InputError(f"grid {tuple(x.shape[2:])} is smaller than the convolution halo {pad}")
    return _CircularPad3d.apply(x, pad)


CPU_SLABS = 2
"""On the CPU PyTorch runs a batch of one through a slow reference conv3d (``slow_conv3d``)
and batches of two or more through oneDNN, 3-5x faster. A single sample is therefore cut
along x into this many overlapping slabs that travel as a batch (exact; 1 disables it)."""


def _conv_in_slabs(conv: nn.Conv3d, x: torch.Tensor, slabs: int) -> torch.Tensor:
    """``conv(x)`` for a padded ``x`` of batch 1, computed as a batch of ``slabs`` x-slabs."""
    p2 = conv.kernel_size[0] - 1
    n_out = x.shape[2] - p2
    width = -(-n_out // slabs)  # ceil
    starts = [min(i * width, n_out - width) for i in range(slabs)]
    slabs_batch = torch.cat([x[:, :, s : s + width + p2] for s in starts], 0)
    y = conv._conv_forward(slabs_batch, conv.weight, conv.bias)
    parts = [y[i : i + 1, :, max(0, (i * width) - s) :] for i, s in enumerate(starts)]
    return torch.cat(parts, 2)[:, :, :n_out]


def _conv_one_channel_side(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a padded ``x`` when the input or the output has a single channel, as
    one matrix product over the k^3 kernel offsets plus k^3 shifted slices (exact). oneDNN runs
    single-channel 3D convolutions at a small fraction of its usual speed; GEMMs do not care."""
    k = conv.kernel_size[0]
    b, c_in = x.shape[:2]
    out_shape = [n - k + 1 for n in x.shape[2:]]
    offsets = [(i, j, m) for i in range(k) for j in range(k) for m in range(k)]
    w = conv.weight.reshape(conv.out_channels, c_in, k**3)
    if conv.out_channels == 1:  # contract the channels first, then add the shifted offsets
        y = torch.einsum("kc,bcn->bkn", w[0].t(), x.reshape(b, c_in, -1)).reshape(b, k**3, *x.shape[2:])
        out = sum(y[:, o : o + 1, i : i + out_shape[0], j : j + out_shape[1], m : m + out_shape[2]]
                  for o, (i, j, m) in enumerate(offsets))
    else:  # c_in == 1: gather the k^3 shifted inputs, then one product with the weights
        patches = torch.cat([x[:, :, i : i + out_shape[0], j : j + out_shape[1], m : m + out_shape[2]]
                             for i, j, m in offsets], 1)
        out = torch.einsum("ck,bkn->bcn", w[:, 0], patches.reshape(b, k**3, -1)).reshape(b, -1, *out_shape)
    return out + conv.bias.view(1, -1, 1, 1, 1)


class PeriodicConv3d(nn.Conv3d):
    """A stride-1 'same' Conv3d on a periodic box (odd kernel)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int):
        if kernel % 2 == 0:
            raise InputError(f"kernel sizes must be odd, got {kernel}")
        super().__init__(in_ch, out_ch, kernel, padding=0)
        self.halo = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = circular_pad(x, self.halo)
        if (x.device.type == "cpu" and 1 in (self.in_channels, self.out_channels) and self.halo > 0
                and not torch.is_grad_enabled()):  # inference only: its slices' backward is slow
            return _conv_one_channel_side(self, x)
        if x.shape[0] == 1 and x.device.type == "cpu" and CPU_SLABS > 1 and x.shape[2] >= 4 * CPU_SLABS:
            return _conv_in_slabs(self, x, CPU_SLABS)
        return super().forward(x)


def pixel_shuffle_3d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(B, C*f^3, X, Y, Z) -> (B, C, f X, f Y, f Z); channel index = c*f^3 + i*f^2 + j*f + k."""
    b, c, nx, ny, nz = x.shape
    c_out = c // factor**3
    x = x.view(b, c_out, factor, factor, factor, nx, ny, nz)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c_out, nx * factor, ny * factor, nz * factor)


def make_norm(kind: str, channels: int) -> nn.Module:
    """Instance norm without affine parameters (the paper), or nothing (``norm: none``)."""
    return nn.InstanceNorm3d(channels, affine=False) if kind == "instance" else nn.Identity()


class ResidualBlock(nn.Module):
    def __init__(self, num_feat: int, kernel: int, norm: str = "instance"):
        super().__init__()
        self.conv1 = PeriodicConv3d(num_feat, num_feat, kernel)
        self.norm1 = make_norm(norm, num_feat)
        self.act = nn.PReLU()
        self.conv2 = PeriodicConv3d(num_feat, num_feat, kernel)
        self.norm2 = make_norm(norm, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class Upsample(nn.Module):
    def __init__(self, num_feat: int, kernel: int, norm: str = "instance"):
        super().__init__()
        self.conv = PeriodicConv3d(num_feat, 8 * num_feat, kernel)
        self.norm = make_norm(norm, 8 * num_feat)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(pixel_shuffle_3d(self.norm(self.conv(x)), 2))


class SRResNet3D(nn.Module):
    """Coarse SAD ``(B, 1, X, Y, Z)`` -> fine density ``(B, 1, uX, uY, uZ)``, u = 2**num_up."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config.num_feat
        self.conv_first = PeriodicConv3d(1, c, config.kernel_first)
        self.act_first = nn.PReLU()
        norm = config.norm
        self.body = nn.Sequential(*[ResidualBlock(c, config.kernel, norm) for _ in range(config.num_block)])
        self.conv_body = PeriodicConv3d(c, c, config.kernel)
        self.norm_body = make_norm(norm, c)
        self.upsample = nn.Sequential(*[Upsample(c, config.kernel, norm) for _ in range(config.num_up)])
        self.conv_last = PeriodicConv3d(c, 1, config.kernel_first)
        if config.residual_sad:  # start from the interpolated SAD itself
            nn.init.zeros_(self.conv_last.weight)
            nn.init.zeros_(self.conv_last.bias)

    def forward(
        self, sad: torch.Tensor, n_electrons: torch.Tensor | None = None,
        voxel_volume: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n_electrons`` and ``voxel_volume`` (fine voxel, Bohr^3) are ``(B,)``; without them
        the output is not rescaled."""
        feat = self.act_first(self.conv_first(sad))
        x = self.norm_body(self.conv_body(self.body(feat))) + feat
        out = self.conv_last(self.upsample(x))
        if self.config.residual_sad:
            out = out + upsample_linear(sad, self.config.num_up)
        out = F.relu(out)
        if n_electrons is None or voxel_volume is None:
            return out
        return normalize(out, n_electrons, voxel_volume)


def upsample_linear(x: torch.Tensor, num_up: int = 1) -> torch.Tensor:
    """Periodic trilinear interpolation, x2 per axis ``num_up`` times: fine point ``2i`` is
    coarse point ``i``, fine point ``2i+1`` the mean of coarse ``i`` and ``i+1`` (wrapping)."""
    for _ in range(num_up):
        for axis in (2, 3, 4):
            mid = 0.5 * (x + torch.roll(x, -1, dims=axis))
            x = torch.stack((x, mid), dim=axis + 1).flatten(axis, axis + 1)
    return x


def normalize(rho: torch.Tensor, n_electrons: torch.Tensor, voxel_volume: torch.Tensor) -> torch.Tensor:
    """Scale each density so that ``sum(rho) * voxel_volume = n_electrons``; an all-zero
    density becomes uniform instead of NaN."""
    b = rho.shape[0]
    n_e = n_electrons.to(rho.dtype).view(b, 1, 1, 1, 1)
    dv = voxel_volume.to(rho.dtype).view(b, 1, 1, 1, 1)
    total = rho.sum(dim=(1, 2, 3, 4), keepdim=True) * dv
    n_points = rho[0].numel()
    uniform = n_e / (n_points * dv)
    tiny = torch.finfo(rho.dtype).tiny
    scaled = rho * (n_e / total.clamp_min(tiny))
    return torch.where(total <= tiny, uniform.expand_as(rho), scaled)


def build_model(config: ModelConfig | dict) -> SRResNet3D:
    """The one place a model is built from its config (training and inference alike)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return SRResNet3D(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
