"""Training throughput on one CPU machine: one thread, N threads, or DDP over N processes.

Each setting runs ``rhosr train`` twice on the same store and config, ``--max-steps`` SHORT
and LONG, in fresh run folders; the difference of the two wall times over LONG - SHORT steps
is the time per optimizer step without start-up, and molecules per second is the number of
processes (each takes a batch of one per step) over it. Prints and writes a table with each
setting's speed-up over one thread, all measured in this run. Run it on a quiet machine.

    python benchmarks/train_scaling.py --store STORE --config CONFIG [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def wall(store: str, config: str, out: Path, steps: int, threads: int, processes: int) -> float:
    cmd = [sys.executable, "-m", "rhosr", "train", "--store", store, "--config", config, "--out", str(out),
           "--max-steps", str(steps), "--accelerator", "cpu", "--no-progress"]
    if processes > 1:
        cmd += ["--devices", str(processes), "--strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--config", required=True, help="training config (YAML or shipped name)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--short", type=int, default=4)
    ap.add_argument("--long", type=int, default=24)
    ap.add_argument("--md", type=Path, default=RESULTS / "train_scaling.md")
    args = ap.parse_args()
    settings = [("1 process, 1 thread", 1, 1), (f"1 process, {args.cores} threads", args.cores, 1),
                (f"DDP, {args.cores} processes x 1 thread", 1, args.cores)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, threads, processes in settings:
            times = [wall(args.store, args.config, Path(tmp) / f"{name}_{steps}".replace(" ", "_"), steps,
                          threads, processes) for steps in (args.short, args.long)]
            per_step = (times[1] - times[0]) / (args.long - args.short)
            rows.append((name, per_step, processes / per_step))
            print(f"{name}: {per_step:.2f} s per step, {processes / per_step:.3f} molecules/s", flush=True)
    base = rows[0][2]
    lines = [
        "# Training throughput: threads against DDP processes",
        "",
        f"Command: `python benchmarks/train_scaling.py --store STORE --config {Path(args.config).name} "
        f"--cores {args.cores}`; a quiet {os.cpu_count()}-core machine; seconds per optimizer step from the "
        f"wall times of `rhosr train --max-steps {args.short}` and `--max-steps {args.long}` (start-up "
        "cancels); every process takes a batch of one molecule per step.",
        "",
        "| setting | s per step | molecules per s | speed-up over 1 thread |",
        "|---|---|---|---|",
        *[f"| {n} | {s:.2f} | {m:.3f} | {m / base:.2f}x |" for n, s, m in rows],
    ]
    args.md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
