"""What the store's integrity checks cost (``rhosr.integrity``), on real entries.

Copies the first ``--n`` entries of STORE (only read) into a temporary store twice: as they
are on disk (entries written before the integrity record: no checksums) and rewritten by
``DatasetStore.write_entry`` (with the record). Times, as the median milliseconds per entry:

- the quick check (``store info``, ``label``'s pending list, training start) and the deep
  check (``store verify``), for both kinds of entry;
- a whole-entry read (SAD + label) and a random 32^3 coarse crop, through ``read_entry`` /
  ``read_crop`` (checked) and through Zarr directly (unchecked, what reads did before);
- the checks a read adds on their own (chunk files stat'ed, label electron count);
- writing an entry (with the record, zstd checksums and every chunk written).

Run: ``python benchmarks/store_integrity.py STORE [--n 7] [--repeat 5]``; writes
results/store_integrity.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from rhosr.integrity import check_chunks, check_electrons, integrity_record
from rhosr.store import ENTRY_ARRAYS, DatasetStore, _stored_dtype

RESULTS = Path(__file__).parent / "results"


def median_ms(repeat: int, fn, *args) -> float:
    """Median milliseconds of ``fn(*args)`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def paired_ms(repeat: int, first, second) -> tuple[float, float]:
    """Median milliseconds of two calls timed in turn (so that load on a shared machine hits
    both alike)."""
    a, b = [], []
    for _ in range(repeat):
        for fn, acc in ((first, a), (second, b)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(a)), 1e3 * float(np.median(b))


def unchecked_whole(store: DatasetStore, entry_id: str) -> None:
    import zarr

    group = zarr.open_group(str(store.entry_dir(entry_id)), mode="r", zarr_format=3)
    for name in ("sad", "label"):
        np.asarray(group[name][...], dtype=np.float64)


def unchecked_crop(store: DatasetStore, entry_id: str, start, size) -> None:
    import zarr

    group = zarr.open_group(str(store.entry_dir(entry_id)), mode="r", zarr_format=3)
    mesh = group["sad"].shape
    ci = tuple((s + np.arange(n)) % m for s, n, m in zip(start, size, mesh))
    fi = tuple((2 * s + np.arange(2 * n)) % (2 * m) for s, n, m in zip(start, size, mesh))
    group["sad"].oindex[ci], group["label"].oindex[fi]


def read_checks(store: DatasetStore, entry_id: str) -> None:
    """What ``read_entry`` checks besides decoding: metadata, chunk files of SAD and label."""
    folder = store.entry_dir(entry_id)
    attrs = store.entry_meta(entry_id)
    check_chunks(folder, attrs, "sad")
    check_chunks(folder, attrs, "label")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--crop", type=int, default=16)
    args = parser.parse_args()
    source = DatasetStore.open(Path(args.store).expanduser())
    ids = source.entry_ids()[: args.n]
    rng = np.random.default_rng(0)
    rows, sizes = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "as_on_disk"
        old.mkdir()
        shutil.copy(source.path / "zarr.json", old / "zarr.json")
        for sub in ("entries", "failures", ".tmp"):
            (old / sub).mkdir()
        for entry_id in ids:
            shutil.copytree(source.entry_dir(entry_id), old / "entries" / entry_id)
        old_store = DatasetStore.open(old)
        new_store = DatasetStore.create(Path(tmp) / "rewritten", source.meta["preset"],
                                        source.meta["upscale"], source.meta["margin_angstrom"],
                                        source.meta["split"], source.meta["atrocious"])
        write = []
        for entry_id in ids:
            entry = old_store.read_entry(entry_id, ENTRY_ARRAYS)
            entry.meta = {k: v for k, v in entry.meta.items() if k != "complete"}
            t0 = time.perf_counter()
            new_store.write_entry(entry)
            write.append(time.perf_counter() - t0)
            sizes.append(entry.label.size)
        rows["write an entry (all arrays, with the record)"] = [1e3 * t for t in write]
        r = args.repeat
        record = []
        for i in ids:
            entry = new_store.read_entry(i, ENTRY_ARRAYS)
            stored = {n: _stored_dtype(n, getattr(entry, n)) for n in ENTRY_ARRAYS
                      if getattr(entry, n) is not None}
            record.append(median_ms(r, integrity_record, new_store.entry_dir(i), stored))
        rows["of which the record (CRC-32 of every array, chunk sizes)"] = record
        for kind, store in (("no record", old_store), ("with record", new_store)):
            rows[f"quick check, {kind}"] = [median_ms(r, store.check, i) for i in ids]
            rows[f"deep check (verify), {kind}"] = [median_ms(r, store.check, i, True) for i in ids]
        store = new_store
        size = (args.crop,) * 3
        starts = {i: tuple(int(rng.integers(n)) for n in store.entry_meta(i)["grid"]["coarse_mesh"])
                  for i in ids}
        whole = [paired_ms(r, partial(unchecked_whole, store, i), partial(store.read_entry, i)) for i in ids]
        crops = [paired_ms(r, partial(unchecked_crop, store, i, starts[i], size),
                           partial(store.read_crop, i, starts[i], size)) for i in ids]
        rows["whole read, unchecked (Zarr)"] = [w[0] for w in whole]
        rows["whole read, checked (read_entry)"] = [w[1] for w in whole]
        rows[f"crop {args.crop}^3, unchecked (Zarr)"] = [c[0] for c in crops]
        rows[f"crop {args.crop}^3, checked (read_crop)"] = [c[1] for c in crops]
        rows["read's own checks: metadata + chunk stats"] = [median_ms(r, read_checks, store, i) for i in ids]
        electrons = []
        for i in ids:
            attrs, label = store.entry_meta(i), store.read_entry(i, ("label",)).label
            electrons.append(median_ms(r, check_electrons, store.entry_dir(i), "label", label, attrs, "fine"))
        rows["read's own checks: label electron count"] = electrons
    lines = [
        "# Store integrity checks: cost",
        "",
        f"Command: `python benchmarks/store_integrity.py {args.store} --n {args.n} --repeat {args.repeat} "
        f"--crop {args.crop}` ({len(ids)} entries, labels of {min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} "
        "M points).",
        "",
        "| operation | median ms per entry | max ms |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {np.median(v):.2f} | {np.max(v):.2f} |" for name, v in rows.items()]
    lines.append("")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_integrity.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
