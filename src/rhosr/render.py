"""Pictures (headless, matplotlib Agg): learning curves."""

from __future__ import annotations

import os
from pathlib import Path

from rhosr.run_metrics import read_metrics


def plot_learning_curve(logs: str | os.PathLike, png: str | os.PathLike) -> bool:
    """Training and validation Err_rho (%) against step, from a run's ``logs/`` folder (every
    segment of a resumed run) or one ``metrics.csv``. Returns False when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not Path(logs).exists():
        return False
    train, val = [], []
    for row in read_metrics(logs):
        step = int(float(row["step"]))
        if row.get("train_err"):
            train.append((step, float(row["train_err"])))
        if row.get("val_err"):
            val.append((step, float(row["val_err"])))
    if not train and not val:
        return False
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
