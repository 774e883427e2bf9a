"""``rhosr label``: label a dataset into a store (DFT on Dask), resumable."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run DFT labels for many molecules and write them into a dataset store (Zarr), one entry per
molecule: SAD input (coarse mesh), label density (fine mesh), density matrix, energies.

SOURCE: qm9 | qm9:START-END[,...] (QM9 molecules of the committed --split) | a folder of
structure files | an ASE database (.db) | a multi-frame file (xyz trajectory, .traj).

Complete entries are skipped, failures recorded with their reason (retried only with
--retry-failed), so a run that was killed can simply be started again. A damaged entry (see
rhosr store verify) is moved to the store's quarantine/ folder and labelled again. Runs may
share a store: each molecule is claimed by one process and computed once. Jobs run on a Dask
LocalCluster of --workers processes with cores/workers threads each, or on an existing Dask
scheduler (--scheduler tcp://HOST:8786, e.g. started with dask-jobqueue on SLURM)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rhosr.config import PRESETS

    parser.add_argument("source", metavar="SOURCE", help="qm9[:RANGES], a folder, a .db or a trajectory")
    parser.add_argument("--store", required=True, help="store folder (created if missing)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="fast", help="DFT preset (default fast)")
    parser.add_argument("--split", choices=("train", "validation", "test"), default="train",
                        help="QM9: which committed split to draw from; other sources: the split "
                             "every item is stored under (default train)")
    parser.add_argument("--limit", type=int, default=None,
                        help="label at most this many molecules of the source (in its order; "
                             "entries already in the store count)")
    parser.add_argument("--workers", type=int, default=1,
                        help="Dask worker processes on this machine (default 1; 0 = no Dask)")
    parser.add_argument("--threads-per-worker", type=int, default=None,
                        help="PySCF threads per worker (default: cores // workers)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="use an existing Dask scheduler instead of a LocalCluster")
    parser.add_argument("--atrocious", action="store_true", help="also store the atrocious SAD input")
    parser.add_argument("--retry-failed", action="store_true", help="retry recorded failures")
    parser.add_argument("--charge", type=int, default=0, help="charge of every molecule (not QM9)")
    parser.add_argument("--spin", type=int, default=0, help="2S of every molecule (not QM9)")
    parser.add_argument("--upscale", type=int, choices=(2, 4), default=2, help="fine/coarse ratio")
    parser.add_argument("--margin", type=float, default=4.0, metavar="ANGSTROM",
                        help="total empty space per axis (default 4)")


def run(args: argparse.Namespace) -> int:
    import os
    import shutil
    from pathlib import Path

    from tqdm import tqdm

    from rhosr.commands.common import Reporter, check_box_arguments
    from rhosr.config import get_preset
    from rhosr.errors import InputError
    from rhosr.io import prepare_output_folder
    from rhosr.labelling import LabelSettings, damaged_among, pending, run_labelling
    from rhosr.sources import read_source
    from rhosr.store import DatasetStore

    report = Reporter()
    if args.workers < 0:
        raise InputError("--workers must be >= 0")
    if args.limit is not None and args.limit < 0:
        raise InputError("--limit must be >= 0")
    if args.threads_per_worker is not None and args.threads_per_worker < 1:
        raise InputError(f"--threads-per-worker must be >= 1, got {args.threads_per_worker}")
    check_box_arguments(args)  # before the store records the margin
    preset = get_preset(args.preset)
    store_existed = Path(args.store).exists()
    prepare_output_folder(args.store, "--store")  # before reading a source or starting workers
    items = read_source(args.source, args.split, args.charge, args.spin, args.limit)
    if not items and args.limit != 0:
        if not store_existed:
            shutil.rmtree(args.store, ignore_errors=True)  # the folder made above, still empty
        raise InputError(f"{args.source}: no molecules to label (split {args.split})")
    split_name = "qm9-seeded-v1" if args.source.startswith("qm9") else "user"
    store = DatasetStore.create(args.store, preset.to_dict(), args.upscale, args.margin, split_name,
                                args.atrocious)
    todo = pending(items, store, args.retry_failed)
    skipped = len(items) - len(todo)
    damaged = damaged_among(todo, store)
    for entry_id, reason in damaged.items():
        report(f"relabelling damaged entry {entry_id}: {reason}")
    threads = args.threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, args.workers))
    where = (f"on the Dask scheduler {args.scheduler}" if args.scheduler
             else f"on {args.workers} worker(s)" if args.workers else "in this process")
    report(f"{len(items)} molecules from {args.source} ({args.split}); {skipped} already in the store "
           f"or failed before; labelling {len(todo)} with preset {preset.name} {where}, "
           f"{threads} thread(s) each")
    if not todo:
        return 0
    settings = LabelSettings(str(store.path), preset, args.upscale, args.margin, args.atrocious, threads)
    bar = tqdm(total=len(todo), unit="mol", desc="labelling", dynamic_ncols=True)
    failed = [0]

    def on_result(result: dict) -> None:
        failed[0] += not result["ok"]
        bar.set_postfix(failed=failed[0], last=f"{result['id']} {result['seconds']:.0f}s")
        bar.update(1)
        if result.get("status") == "skipped":
            bar.write(f"skipped {result['id']}: {result['reason']}")
        elif not result["ok"]:
            bar.write(f"failed {result['id']}: {result['reason']}")

    try:
        summary = run_labelling(todo, settings, args.workers, args.scheduler, on_result)
    finally:
        bar.close()
    report(f"done {summary.done}, failed {summary.failed}, skipped {skipped + summary.skipped} "
           f"in {summary.seconds:.0f} s "
           f"({summary.per_hour:.0f} molecules/hour)")
    for reason, count in summary.reasons.most_common():
        report(f"  {count} x {reason}")
    return 0 if summary.failed == 0 else 1
