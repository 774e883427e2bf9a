"""CPU training-step time of the small model on a 32^3 coarse crop: naive vs our settings.

Naive = eager fp32 with PyTorch's own circular padding (``F.pad(mode='circular')``) and a
plain batch-of-one convolution. Then each setting added in turn, all measured in this run on
the same random input: our circular padding with a cheap backward, the batch of one cut
into x-slabs so PyTorch uses oneDNN instead of ``slow_conv3d`` (``rhosr.model.CPU_SLABS``; these
two are rhosr's defaults), channels-last-3d memory format, and ``torch.compile``.
A step is forward + L1 loss + backward + Adam update, batch 1;
median of ``--steps`` timed steps after two warm-up steps. Prints each setting's time and
speed-up over naive. Writes results/train_step_cpu.md.

Run: ``python benchmarks/train_step_cpu.py [--steps 5] [--crop 32]``
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import rhosr.model as model_module
from rhosr.model import ModelConfig, build_model, model_config

RESULTS = Path(__file__).parent / "results"
SMALL = model_config({"num_feat": 16, "kernel_first": 3, "kernel": 3, "num_block": 8, "num_up": 1})


@contextlib.contextmanager
def patched(pytorch_padding: bool, slabs: int):
    fast, default_slabs = model_module.circular_pad, model_module.CPU_SLABS
    if pytorch_padding:
        model_module.circular_pad = lambda x, p: F.pad(x, (p,) * 6, mode="circular") if p else x
    model_module.CPU_SLABS = slabs
    try:
        yield
    finally:
        model_module.circular_pad, model_module.CPU_SLABS = fast, default_slabs


def time_steps(config: ModelConfig, crop: int, steps: int, channels_last=False, compile=False) -> float:
    torch.manual_seed(0)
    model = build_model(config)
    x = torch.rand(1, 1, crop, crop, crop)
    y = torch.rand(1, 1, 2 * crop, 2 * crop, 2 * crop)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)
    net = torch.compile(model) if compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = (net(x) - y).abs().mean()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    # (name, time_steps kwargs, PyTorch padding, slabs)
    settings = [("naive: eager fp32, PyTorch circular padding, batch of one", {}, True, 1),
                ("+ our circular padding (cheap backward)", {}, False, 1),
                ("+ 2 x-slabs as a batch (oneDNN conv)", {}, False, 2),
                ("+ 4 x-slabs as a batch (oneDNN conv)", {}, False, 4),
                ("+ 2 slabs + channels_last_3d", {"channels_last": True}, False, 2)]
    if not args.no_compile:
        settings.append(("+ 2 slabs + torch.compile", {"compile": True}, False, 2))
    rows = []
    for name, kwargs, pytorch_padding, slabs in settings:
        with patched(pytorch_padding, slabs):
            seconds = time_steps(SMALL, args.crop, args.steps, **kwargs)
        rows.append((name, seconds))
        print(f"{name}: {seconds:.3f} s/step ({rows[0][1] / seconds:.2f}x)", flush=True)
    best = min(rows[1:], key=lambda r: r[1])
    lines = [
        f"# CPU training step, small model {SMALL.describe()}, "
        f"{args.crop}^3 coarse crop, {torch.get_num_threads()} threads",
        "",
        f"Command: `python benchmarks/train_step_cpu.py --steps {args.steps} --crop {args.crop}`",
        "",
        "| setting | s/step (median) | speed-up vs naive |",
        "|---|---|---|",
        *[f"| {n} | {s:.3f} | {rows[0][1] / s:.2f}x |" for n, s in rows],
        "",
        f"Best: {best[0]} - {rows[0][1] / best[1]:.2f}x faster than naive.",
        "",
    ]
    (RESULTS / "train_step_cpu.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
