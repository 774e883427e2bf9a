"""Copy what must outlast a machine from a training run into the repository.

    python scripts/export_run.py ~/runs/qm9_small benchmarks/results/training/qm9_small [--no-weights]

Copies ``config.yaml``, ``train_ids.json``, ``validation_ids.json``, ``logs/metrics.csv`` (merged over resumed
segments), ``best/`` (model.json + model.safetensors) and ``checkpoints/last.ckpt`` (so
``rhosr train --resume`` can continue on a fresh machine: copy the folder back to a run
folder), and draws
``learning_curve.png`` from the CSV. ``--no-weights`` leaves out ``best/`` and the checkpoint: for a
run whose best model ships in the package anyway, or whose checkpoint is too large for git
(the run is then not resumable from the export).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rhosr.render import plot_learning_curve
from rhosr.run_metrics import read_metrics, write_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("dest")
    ap.add_argument("--no-weights", action="store_true", help="leave out best/ and checkpoints/last.ckpt")
    args = ap.parse_args()
    run, dest = Path(args.run_dir), Path(args.dest)
    (dest / "logs").mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "config.yaml", dest / "config.yaml")
    for ids in ("train_ids.json", "validation_ids.json"):  # the run's fixed sets, for --resume
        if (run / ids).exists():
            shutil.copy(run / ids, dest / ids)
    write_metrics(read_metrics(run / "logs"), dest / "logs" / "metrics.csv")  # every resumed segment
    if not args.no_weights and (run / "best").exists():
        shutil.copytree(run / "best", dest / "best", dirs_exist_ok=True)
    if not args.no_weights and (run / "checkpoints" / "last.ckpt").exists():
        (dest / "checkpoints").mkdir(exist_ok=True)
        shutil.copy(run / "checkpoints" / "last.ckpt", dest / "checkpoints" / "last.ckpt")
    plot_learning_curve(dest / "logs" / "metrics.csv", dest / "learning_curve.png")
    print(f"exported {run} -> {dest}")


if __name__ == "__main__":
    main()
