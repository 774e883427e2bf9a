"""Labelling throughput at a preset: molecules per hour with 1 and 2 Dask workers.

Labels the same ``--n`` QM9 molecules (the first of the training split, which is in seeded
random order, so a representative sample of QM9 sizes) twice into fresh temporary stores:
once with 1 worker x all cores' threads, once with 2 workers x 1 thread; prints
molecules/hour of each and their ratio, measured in the same run.
Nothing else should run meanwhile. Writes results/label_throughput.md.

Run: ``python benchmarks/label_throughput.py --n 8``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rhosr.config import get_preset
from rhosr.labelling import LabelSettings, run_labelling
from rhosr.sources import read_source
from rhosr.store import DatasetStore

RESULTS = Path(__file__).parent / "results"


def measure(items, preset, workers: int, threads: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = DatasetStore.create(Path(tmp) / "store", preset.to_dict())
        t0 = time.perf_counter()
        summary = run_labelling(items, LabelSettings(str(store.path), preset, threads=threads), workers)
        return time.perf_counter() - t0, summary.done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    preset = get_preset(args.preset)
    items = read_source("qm9", "train", limit=args.n)
    rows = []
    for workers, threads in ((1, cores), (2, max(1, cores // 2))):
        seconds, done = measure(items, preset, workers, threads)
        rows.append((workers, threads, done, seconds, 3600 * done / seconds))
        print(f"{workers} worker(s) x {threads} thread(s): {done} molecules in {seconds:.0f} s "
              f"= {rows[-1][4]:.0f} molecules/hour", flush=True)
    lines = [
        f"# Labelling throughput, preset `{args.preset}`, {cores} cores",
        "",
        f"Command: `python benchmarks/label_throughput.py --n {args.n} --preset {args.preset}` "
        f"(the first {args.n} QM9 training molecules, a random sample; Dask LocalCluster; wall time "
        "incl. start-up).",
        "",
        "| workers | threads each | molecules | seconds | molecules/hour |",
        "|---|---|---|---|---|",
        *[f"| {w} | {t} | {d} | {s:.0f} | {r:.0f} |" for w, t, d, s, r in rows],
        "",
        f"2 workers / 1 worker: {rows[1][4] / rows[0][4]:.2f}x.",
        "",
    ]
    (RESULTS / f"label_throughput_{args.preset}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
