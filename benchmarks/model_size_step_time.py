"""What more capacity costs on this CPU: training-step time of wider models on a QM9-size box.

Models as ``configs/qm9_small.yaml`` (K = 3, 6 blocks, ``norm: none``, ``residual_sad``) with
``--channels`` channels each (8 is the shipped qm9-small, 16 qm9_wide), plus the paper's QM9
model (C=32, K=5, 32 blocks) unless ``--skip-paper``. A step is forward + L1 loss + backward on
one whole coarse box of ``--box``^3 points (QM9 boxes are 40-75 per axis); the minimum of
``--steps`` timed steps after one warm-up. Prints each model's seconds per step and the ratio to
the first (the baseline, measured in the same run), and what one epoch over ``--train``
molecules would take. Writes results/model_size_step_time.md.

Run: ``OMP_NUM_THREADS=1 python benchmarks/model_size_step_time.py [--box 52] [--steps 2]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from rhosr.model import build_model, count_parameters

RESULTS = Path(__file__).parent / "results"
SMALL = {"kernel_first": 3, "kernel": 3, "num_block": 6, "num_up": 1, "norm": "none", "residual_sad": True}
PAPER = {"num_feat": 32, "kernel_first": 5, "kernel": 5, "num_block": 32, "num_up": 1, "norm": "instance"}


def step_seconds(config: dict, box: int, steps: int) -> float:
    model = build_model(config)
    sad = torch.rand(1, 1, box, box, box)
    n_electrons = torch.tensor([50.0], dtype=torch.float64)
    voxel = torch.tensor([0.157**3], dtype=torch.float64)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        rho = model(sad, n_electrons, voxel)
        rho.abs().mean().backward()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--box", type=int, default=52)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--train", type=int, default=131, help="training molecules per epoch")
    ap.add_argument("--skip-paper", action="store_true")
    args = ap.parse_args()
    configs = [(f"C={c}, K=3, 6 blocks", {**SMALL, "num_feat": c}) for c in args.channels]
    if not args.skip_paper:
        configs.append(("paper QM9: C=32, K=5, 32 blocks", PAPER))
    rows, base = [], None
    for name, config in configs:
        seconds = step_seconds(config, args.box, args.steps)
        base = base or seconds
        params = count_parameters(build_model(config))
        rows.append(f"| {name} | {params:,} | {seconds:.1f} | {seconds / base:.1f} | "
                     f"{seconds * args.train / 3600:.1f} |")
        print(rows[-1], flush=True)
    lines = [
        "# Training-step time against model size (this CPU)",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python "
        f"{' '.join(sys.argv)}`; torch threads {torch.get_num_threads()}; whole coarse box "
        f"{args.box}^3, forward + backward, min of {args.steps} steps after a warm-up.",
        "",
        f"| model | parameters | s / step | ratio to first | h / epoch of {args.train} molecules |",
        "|---|---|---|---|---|",
        *rows,
    ]
    (RESULTS / "model_size_step_time.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
