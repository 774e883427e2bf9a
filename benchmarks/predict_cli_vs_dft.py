"""Prediction as a user runs it against DFT as a user runs it, on the same QM9 test molecules.

Both through the ``rhosr`` command line with default threads, wall time of whole commands
(start-up included), cube output:

- DFT: ``rhosr dft MOL.xyz -o MOL.cube --preset fast``, one command per molecule;
- prediction: one ``rhosr predict *.xyz -o FOLDER/`` over all of them (the default model
  unless ``--model``; the median of ``--batch-repeat`` such calls: one call takes ~4 s and
  varies by ~0.2 s from call to call), with ``--runtime onnx`` (ONNX Runtime), ``--runtime
  torch`` (PyTorch, the baseline measured in the same run) and ``--base-only`` (no network:
  the model's base);
- one molecule: ``rhosr predict MOL.xyz -o MOL.cube`` for the first molecule, the median of
  ``--repeat`` calls, each way.

Prints the ratio of total DFT time to total prediction time and the one-molecule time, and
writes a markdown table. Run it on a quiet machine: both sides use every core.

    python benchmarks/predict_cli_vs_dft.py --n 10 [--model runs/x/best] [--md out.md]
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
VARIANTS = {"--runtime onnx": ["--runtime", "onnx"], "--runtime torch": ["--runtime", "torch"],
            "--base-only": ["--base-only"]}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="QM9 test molecules (the seeded split's first N)")
    ap.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    ap.add_argument("--repeat", type=int, default=5, help="one-molecule predict calls (median)")
    ap.add_argument("--batch-repeat", type=int, default=3, help="whole-batch predict calls (median)")
    ap.add_argument("--md", type=Path, default=RESULTS / "predict_cli_vs_dft.md")
    args = ap.parse_args()

    from ase.io import write

    from rhosr.molecule import read_molecule
    from rhosr.predict import DEFAULT_MODEL
    from rhosr.qm9 import load_split

    rhosr = [sys.executable, "-m", "rhosr"]
    model = ["--model", args.model] if args.model else []
    indices = [int(i) for i in load_split()["test"][: args.n]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "mols").mkdir()
        files = []
        for index in indices:
            path = tmp / "mols" / f"qm9_{index:06d}.xyz"
            write(path, read_molecule(f"qm9:{index}").atoms)
            files.append(path)
        dft = {}
        for path in files:
            dft[path.stem] = timed([*rhosr, "dft", str(path), "-o", str(tmp / f"{path.stem}_dft.cube"),
                                    "--preset", "fast", "--quiet"])
            print(f"dft {path.stem}: {dft[path.stem]:.1f} s", flush=True)
        batch, batch_runs, one = {}, {}, {}
        for variant, variant_flags in VARIANTS.items():
            flags = ["--quiet", *variant_flags, *model]
            runs = [timed([*rhosr, "predict", *map(str, files), "-o", str(tmp / "pred"), *flags])
                    for _ in range(args.batch_repeat)]
            batch[variant] = statistics.median(runs)
            batch_runs[variant] = runs
            print(f"predict {len(files)} molecules, {variant}: {', '.join(f'{t:.2f}' for t in runs)} s",
                  flush=True)
            one[variant] = [timed([*rhosr, "predict", str(files[0]), "-o", str(tmp / "one.cube"), *flags])
                            for _ in range(args.repeat)]
    total = sum(dft.values())
    lines = [
        "# Prediction vs DFT as a user runs them",
        "",
        f"Command: `python benchmarks/predict_cli_vs_dft.py --n {args.n}"
        f"{' --model ' + args.model if args.model else ''}"
        f"{f' --batch-repeat {args.batch_repeat}' if args.batch_repeat != 3 else ''}`; "
        f"{os.cpu_count()} cores, default threads, "
        "wall time of whole `rhosr` commands (start-up included), cube output; model "
        f"`{args.model or DEFAULT_MODEL}`.",
        "",
        f"- `rhosr dft MOL -o MOL.cube --preset fast`, one command per molecule: {total:.1f} s for "
        f"{len(files)} QM9 test molecules ({total / len(files):.1f} s each).",
        "",
        f"| `rhosr predict` | {len(files)} molecules, one command, median of {args.batch_repeat} calls "
        f"(each call) | s per molecule | ratio to DFT | one molecule (`{files[0].name}`), median of "
        f"{args.repeat} calls |",
        "|---|---|---|---|---|",
        *[f"| `{r}` | {batch[r]:.2f} s ({', '.join(f'{t:.2f}' for t in batch_runs[r])}) | "
          f"{batch[r] / len(files):.2f} | **{total / batch[r]:.1f}x** "
          f"| {statistics.median(one[r]):.2f} s (min {min(one[r]):.2f} s) |" for r in VARIANTS],
        "",
        "`--runtime onnx` runs the model folder's `model.onnx` with ONNX Runtime (no PyTorch import); "
        "`torch` runs it with PyTorch; the default `auto` is `onnx` here. `--base-only` runs no "
        "network: the model's base alone (its fitted prior), whose Err_rho the model card gives.",
        "",
        "| molecule | DFT s |",
        "|---|---|",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in dft.items()],
    ]
    args.md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:12]))


if __name__ == "__main__":
    main()
