"""Benchmark rows that do not depend on the model (reference SCFs, PySCF guesses), kept on disk.

One JSON object per line under ``benchmarks/results/cache/``, appended as soon as a row is
computed: an interrupted benchmark resumes where it stopped, and re-running a benchmark with a
new model only recomputes the model's part. The key names the molecule and the settings the row
depends on (preset, box); delete the file when the recipe itself changes.
"""

from __future__ import annotations

import json
from pathlib import Path

CACHE_DIR = Path(__file__).parent / "results" / "cache"


class ResultCache:
    """A key -> dict store backed by a JSON-lines file (the last row for a key wins)."""

    def __init__(self, name: str) -> None:
        self.path = CACHE_DIR / f"{name}.jsonl"
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["key"]] = row["value"]

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def put(self, key: str, value: dict) -> None:
        self.rows[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"key": key, "value": value}) + "\n")
