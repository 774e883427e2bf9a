"""A training run's logged metrics (``RUN/logs``): Lightning's ``metrics.csv`` plus the
segments earlier resumes left in ``logs/history/``, read back as one history."""

from __future__ import annotations

import csv
import os
from pathlib import Path

HISTORY_FOLDER = "history"
"""Inside a run's ``logs/``: the ``metrics.csv`` of each earlier segment of a resumed run
(Lightning's CSV logger deletes ``metrics.csv`` when a run resumes, so training moves it here first)."""


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row.get("step")]


def read_metrics(logs: str | os.PathLike) -> list[dict]:
    """All logged rows of a run, oldest first, as dicts of strings.

    ``logs`` is a run's ``logs/`` folder (its ``history/metrics-*.csv`` segments, then
    ``metrics.csv``) or a single CSV file. Rows of a segment at or beyond the first step of the
    next segment are dropped: the run resumed from an earlier checkpoint and logged them again.
    """
    logs = Path(logs)
    if logs.is_file():
        return _read_csv(logs)
    parts = sorted((logs / HISTORY_FOLDER).glob("metrics-*.csv")) + [logs / "metrics.csv"]
    segments = [_read_csv(p) for p in parts if p.exists()]
    rows: list[dict] = []
    for i, segment in enumerate(segments):
        later = [int(float(r["step"])) for s in segments[i + 1:] for r in s[:1]]
        cut = min(later) if later else None
        rows += [r for r in segment if cut is None or int(float(r["step"])) < cut]
    return rows


def keep_metrics_history(logs: str | os.PathLike) -> Path | None:
    """Move ``logs/metrics.csv`` to ``logs/history/metrics-NNN.csv`` before a resumed run starts."""
    current = Path(logs) / "metrics.csv"
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", os.environ.get("LOCAL_RANK", 0))))
    if rank != 0 or not current.exists():  # only the rank that writes the CSV moves it
        return None
    history = Path(logs) / HISTORY_FOLDER
    history.mkdir(exist_ok=True)
    target = history / f"metrics-{len(list(history.glob('metrics-*.csv'))):03d}.csv"
    try:
        current.rename(target)
    except FileNotFoundError:  # moved meanwhile by another process of the same run
        return None
    return target


def write_metrics(rows: list[dict], path: str | os.PathLike) -> None:
    """One CSV with every column that any row has (e.g. a merged history for export)."""
    keys = sorted({k for r in rows for k in r})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
