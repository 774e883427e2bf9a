"""Copy what must outlast a machine from a training run into the repository.

    python scripts/export_run.py ~/runs/qm9_small benchmarks/results/training/qm9_small

Copies ``config.yaml``, ``train_ids.json``, ``validation_ids.json``, ``logs/metrics.csv`` (merged over resumed
segments), ``best/`` (model.json + model.safetensors) and ``checkpoints/last.ckpt`` (so
``rhosr train --resume`` can continue on a fresh machine: copy the folder back to a run
folder), and draws
``learning_curve.png`` from the CSV.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from rhosr.render import plot_learning_curve
from rhosr.run_metrics import read_metrics, write_metrics


def main() -> None:
    run, dest = Path(sys.argv[1]), Path(sys.argv[2])
    (dest / "logs").mkdir(parents=True, exist_ok=True)
    (dest / "checkpoints").mkdir(exist_ok=True)
    shutil.copy(run / "config.yaml", dest / "config.yaml")
    for ids in ("train_ids.json", "validation_ids.json"):  # the run's fixed sets, for --resume
        if (run / ids).exists():
            shutil.copy(run / ids, dest / ids)
    write_metrics(read_metrics(run / "logs"), dest / "logs" / "metrics.csv")  # every resumed segment
    if (run / "best").exists():
        shutil.copytree(run / "best", dest / "best", dirs_exist_ok=True)
    if (run / "checkpoints" / "last.ckpt").exists():
        shutil.copy(run / "checkpoints" / "last.ckpt", dest / "checkpoints" / "last.ckpt")
    plot_learning_curve(dest / "logs" / "metrics.csv", dest / "learning_curve.png")
    print(f"exported {run} -> {dest}")


if __name__ == "__main__":
    main()
