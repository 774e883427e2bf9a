"""The threads of ``rhosr predict``: its defaults (NumPy's BLAS on one thread, the network on
every CPU) against the network on one thread (``--threads 1``) and BLAS on every CPU
(``OPENBLAS_NUM_THREADS``), measured in the same run.

A batch computes the next molecule's inputs and writes the last molecule's cube on other
threads while the network runs; they compete for the same cores, and idle OpenBLAS threads
spin on them. Runs whole ``rhosr predict`` commands over the
first ``--n`` QM9 test molecules (cube output, start-up included) and on the first molecule
alone, the settings alternated ``--repeat`` times, and prints each median wall time and its
ratio to the defaults'. Run it on a quiet machine.

    python benchmarks/batch_threads.py --n 10 [--repeat 3] [--model qm9-unet] [--md out.md]

Unset ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` first: the defaults are what it measures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=os.environ | env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="QM9 test molecules (the seeded split's first N)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each setting, alternated")
    ap.add_argument("--model", default=None, help="model folder or shipped name (default: the default model)")
    ap.add_argument("--md", type=Path, default=RESULTS / "batch_threads.md")
    args = ap.parse_args()

    from ase.io import write

    from rhosr.molecule import read_molecule
    from rhosr.onnx_runtime import default_threads
    from rhosr.predict import DEFAULT_MODEL
    from rhosr.qm9 import load_split

    every = default_threads()
    settings = {
        "defaults": ([], {}),
        "--threads 1": (["--threads", "1"], {}),
        f"OPENBLAS_NUM_THREADS={every}": ([], {"OPENBLAS_NUM_THREADS": str(every)}),
    }
    rhosr = [sys.executable, "-m", "rhosr"]
    model = ["--model", args.model] if args.model else []
    batch: dict[str, list[float]] = {name: [] for name in settings}
    one: dict[str, list[float]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = []
        for index in load_split()["test"][: args.n]:
            path = tmp / f"qm9_{int(index):06d}.xyz"
            write(path, read_molecule(f"qm9:{int(index)}").atoms)
            files.append(str(path))
        for run in range(args.repeat):
            for name, (flags, env) in settings.items():
                common = ["--quiet", *model, *flags]
                batch[name].append(timed([*rhosr, "predict", *files, "-o", str(tmp / "out"), *common], env))
                one[name].append(timed([*rhosr, "predict", files[0], "-o", str(tmp / "1.cube"), *common],
                                       env))
                print(f"run {run + 1}, {name}: batch {batch[name][-1]:.2f} s, "
                      f"one molecule {one[name][-1]:.2f} s", flush=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "# Threads of `rhosr predict`",
        "",
        f"Command: `python benchmarks/batch_threads.py --n {args.n} --repeat {args.repeat}"
        + (f" --model {args.model}" if args.model else "") + f"`; model `{args.model or DEFAULT_MODEL}`; "
        f"{cpus} CPUs; `rhosr predict` over the first {args.n} QM9 test molecules in one command (batch) and "
        "on the first alone, cube output, wall time of the whole command (start-up included), the "
        f"settings alternated. Defaults: NumPy's BLAS on one thread, the network on {every} thread(s).",
        "",
        "| setting | batch runs (s) | batch median (s) | ratio | one molecule median (s) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    b0, o0 = statistics.median(batch["defaults"]), statistics.median(one["defaults"])
    for name in settings:
        b, o = statistics.median(batch[name]), statistics.median(one[name])
        lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in batch[name])} | {b:.2f} | {b / b0:.2f} | "
                     f"{o:.2f} | {o / o0:.2f} |")
    lines += ["", "Ratio: the setting's median over the defaults' (above 1: slower than the defaults)."]
    args.md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
