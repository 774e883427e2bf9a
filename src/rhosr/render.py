"""Pictures (headless, matplotlib Agg): learning curves."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def plot_learning_curve(metrics_csv: str | os.PathLike, png: str | os.PathLike) -> bool:
    """Training and validation Err_rho (%) against step from Lightning's ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(metrics_csv)
    if not path.exists():
        return False
    train, val = [], []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            step = int(float(row["step"])) if row.get("step") else None
            if step is None:
                continue
            if row.get("train_err"):
                train.append((step, float(row["train_err"])))
            if row.get("val_err"):
                val.append((step, float(row["val_err"])))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.7, label="train (batch)")
    if val:
        ax.plot(*zip(*val), "o-", label="validation (whole boxes)")
    ax.set_xlabel("step")
    ax.set_ylabel("Err_rho (%)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return True
