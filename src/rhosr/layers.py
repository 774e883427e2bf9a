"""Network building blocks on a periodic box: circular padding, periodic convolutions
(stride 1 and stride 2), 3D pixel shuffle, norms, residual blocks, periodic linear upsampling and
the rescaling to the electron count. Tensors are ``(B, C, X, Y, Z)``.

Every convolution pads circularly (the box is periodic) and keeps 'same' size; a stride-2
convolution of ``n`` points returns ``ceil(n/2)``, its point ``j`` centred on input point ``2j``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from rhosr.errors import InputError

NORMS = ("instance", "none")


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
"""On the CPU PyTorch trains a batch of one through a slow reference conv3d (``slow_conv3d``)
and batches of two or more through oneDNN, 3-5x faster. A single training sample is therefore
cut along x into this many overlapping slabs that travel as a batch (exact; 1 disables it).
Inference (no autograd) does not need it: there a batch of one runs ~15% faster whole."""


PLAIN_CONVOLUTIONS = False
"""When True every periodic convolution is one ``Conv3d`` call: the graph an ONNX export traces
(:func:`plain_convolutions`); the CPU work-arounds below are PyTorch-specific."""


@contextlib.contextmanager
def plain_convolutions():
    """Within the block, periodic convolutions skip the PyTorch CPU work-arounds (same result)."""
    global PLAIN_CONVOLUTIONS
    before, PLAIN_CONVOLUTIONS = PLAIN_CONVOLUTIONS, True
    try:
        yield
    finally:
        PLAIN_CONVOLUTIONS = before


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
        if PLAIN_CONVOLUTIONS:
            return super().forward(x)
        if (x.device.type == "cpu" and 1 in (self.in_channels, self.out_channels) and self.halo > 0
                and not torch.is_grad_enabled()):  # inference only: its slices' backward is slow
            return _conv_one_channel_side(self, x)
        if (x.shape[0] == 1 and x.device.type == "cpu" and CPU_SLABS > 1 and x.shape[2] >= 4 * CPU_SLABS
                and torch.is_grad_enabled()):  # inference runs a batch of one ~15% faster whole
            return _conv_in_slabs(self, x, CPU_SLABS)
        return super().forward(x)


class PeriodicDownConv3d(nn.Conv3d):
    """A stride-2 Conv3d on a periodic box (odd kernel): ``n`` points -> ``ceil(n/2)``, output
    point ``j`` centred on input point ``2j`` (so any box size works)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int):
        if kernel % 2 == 0:
            raise InputError(f"kernel sizes must be odd, got {kernel}")
        super().__init__(in_ch, out_ch, kernel, stride=2, padding=0)
        self.halo = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(circular_pad(x, self.halo))


def pixel_shuffle_3d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(B, C*f^3, X, Y, Z) -> (B, C, f X, f Y, f Z); channel index = c*f^3 + i*f^2 + j*f + k.

    In an ONNX export it is written as a grouped transposed convolution with 0/1 weights (stride
    and kernel ``f``: each output point copies one input value, so the result is the same to the
    bit): ONNX Runtime's CPU transpose of the 8-axis permutation took about twice as long
    (~0.09 s against ~0.04 s for the default model's 128 x 59 x 58 x 50 on one thread)."""
    b, c, nx, ny, nz = x.shape
    c_out = c // factor**3
    if torch.onnx.is_in_onnx_export():
        return F.conv_transpose3d(x, _shuffle_weights(c_out, factor, x), stride=factor, groups=c_out)
    x = x.view(b, c_out, factor, factor, factor, nx, ny, nz)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c_out, nx * factor, ny * factor, nz * factor)


def _shuffle_weights(channels: int, factor: int, like: torch.Tensor) -> torch.Tensor:
    """``(channels f^3, 1, f, f, f)``: input channel ``c f^3 + i f^2 + j f + k`` -> kernel point
    ``(i, j, k)`` of output channel ``c`` (:func:`pixel_shuffle_3d`'s order). Built in NumPy so
    that an ONNX trace records it as a constant."""
    import numpy as np

    eye = np.eye(factor**3, dtype=np.float32).reshape(factor**3, 1, factor, factor, factor)
    return torch.from_numpy(np.tile(eye, (channels, 1, 1, 1, 1))).to(like.dtype)


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
