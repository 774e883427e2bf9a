"""How fast the store feeds training: whole-entry reads and random periodic crops.

Times, over the entries of a store: reading the SAD and label of a whole entry, and reading a
random 32^3 coarse / 64^3 fine crop, each as milliseconds per read (median of all reads).
Compare with a CPU training step (seconds): reading must be a small fraction of it.

Run: ``python benchmarks/store_read.py STORE [--n 50]``; writes results/store_read.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rhosr.store import DatasetStore

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--crop", type=int, default=32)
    args = parser.parse_args()
    store = DatasetStore.open(args.store)
    ids = store.entry_ids()[: args.n]
    rng = np.random.default_rng(0)
    whole, crops, sizes = [], [], []
    for entry_id in ids:
        t0 = time.perf_counter()
        entry = store.read_entry(entry_id)
        whole.append(time.perf_counter() - t0)
        sizes.append(entry.label.nbytes / 2)  # float32 on disk before compression
        start = tuple(int(rng.integers(n)) for n in entry.sad.shape)
        t0 = time.perf_counter()
        store.read_crop(entry_id, start, (args.crop,) * 3)
        crops.append(time.perf_counter() - t0)
    disk = store.info()["disk_bytes"]
    lines = [
        "# Store read speed",
        "",
        f"Command: `python benchmarks/store_read.py {args.store} --n {args.n} --crop {args.crop}` "
        f"({len(ids)} entries).",
        "",
        "| read | median ms | 90th percentile ms |",
        "|---|---|---|",
        f"| whole entry (SAD + label) | {1e3 * np.median(whole):.1f} | "
        f"{1e3 * np.percentile(whole, 90):.1f} |",
        f"| random crop {args.crop}^3 coarse + {2 * args.crop}^3 fine | {1e3 * np.median(crops):.1f} | "
        f"{1e3 * np.percentile(crops, 90):.1f} |",
        "",
        f"Mean label size {np.mean(sizes) / 1e6:.1f} MB as float32; store on disk "
        f"{disk / 1e6 / max(1, len(store.entry_ids())):.1f} MB per entry "
        "(zstd, with SAD and density matrix).",
        "",
    ]
    (RESULTS / "store_read.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
