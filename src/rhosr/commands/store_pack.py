"""``rhosr store pack`` / ``rhosr store unpack``: compact packs of labelled molecules (see
:mod:`rhosr.packs`). Arguments and runs; ``rhosr.commands.store`` dispatches here."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
rhosr store pack STORE -o PACK [--split S] [--limit N] [--ids FILE] [--shard-mb MB]
rhosr store unpack PACK [PACK ...] --store STORE [--workers W]"""


def add_arguments(sub) -> None:
    """Add the ``pack`` and ``unpack`` actions to ``rhosr store``'s subparsers."""
    pack = sub.add_parser("pack", help="write labelled molecules as a compact pack (no grids)")
    pack.add_argument("path", help="store folder")
    pack.add_argument("-o", "--output", required=True,
                      help="pack file (a folder of part-NNNN.tar files with --shard-mb)")
    pack.add_argument("--split", choices=("train", "validation", "test"), default=None,
                      help="only this split (default all)")
    pack.add_argument("--limit", type=int, default=None, help="at most this many (sorted by ID)")
    pack.add_argument("--ids", default=None, metavar="FILE",
                      help="only these entries: a JSON list (a run's train_ids.json) or one ID a line")
    pack.add_argument("--shard-mb", type=float, default=None, metavar="MB",
                      help="write shards of about MB megabytes into the folder -o")
    unpack = sub.add_parser("unpack", help="rebuild store entries from packs (no SCF; resumable)")
    unpack.add_argument("packs", nargs="+", metavar="PACK", help="pack files or folders of them")
    unpack.add_argument("--store", required=True, help="store folder (created if missing)")
    unpack.add_argument("--workers", type=int, default=1,
                        help="Dask worker processes on this machine (default 1; 0 = no Dask)")
    unpack.add_argument("--threads-per-worker", type=int, default=None,
                        help="threads per worker (default: cores // workers)")


def run_pack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rhosr.commands.common import Reporter
    from rhosr.errors import InputError
    from rhosr.packs import check_pack_output, pack_ids, pack_store, read_ids
    from rhosr.store import DatasetStore

    report = Reporter()
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    check_pack_output(args.output, args.shard_mb)
    ids = read_ids(args.ids) if args.ids else None
    total = len(pack_ids(DatasetStore.open(args.path), args.split, args.limit, ids))
    if not total:
        where = f" in split {args.split!r}" if args.split else ""
        raise InputError(f"{args.path}: no entries to pack{where}")
    bar = tqdm(total=total, unit="mol", desc="packing", dynamic_ncols=True)
    try:
        files = pack_store(args.path, args.output, args.split, args.limit, args.shard_mb,
                           progress=lambda _: bar.update(1), ids=ids)
    finally:
        bar.close()
    size = sum(f.stat().st_size for f in files)
    report(f"packed {total} molecules into {len(files)} file(s), {size / 1e6:.2f} MB "
           f"({size / max(total, 1) / 1e3:.1f} kB per molecule) -> {args.output}")
    return 0


def run_unpack(args: argparse.Namespace) -> int:
    import os

    from tqdm import tqdm

    from rhosr.commands.common import Reporter
    from rhosr.config import DFTPreset
    from rhosr.errors import InputError
    from rhosr.labelling import run_labelling
    from rhosr.packs import (
        UnpackSettings,
        basis_of,
        open_store_for,
        pending_molecules,
        read_packs,
        unpack_item,
    )

    report = Reporter()
    if args.workers < 0:
        raise InputError("--workers must be >= 0")
    if args.threads_per_worker is not None and args.threads_per_worker < 1:
        raise InputError(f"--threads-per-worker must be >= 1, got {args.threads_per_worker}")
    packs = read_packs(args.packs)  # every record verified before anything is written
    store = open_store_for(packs, args.store)
    todo, present = pending_molecules(packs, store)
    threads = args.threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, args.workers))
    preset = DFTPreset.from_dict(packs[0].manifest["preset"])
    where = f"{args.workers} worker(s)" if args.workers else "in this process"
    report(f"{len(todo) + present} molecules in {len(packs)} pack(s); {present} already in the store; "
           f"rebuilding {len(todo)} with preset {preset.name} ({where}, {threads} thread(s) each)")
    if not todo:
        return 0
    settings = UnpackSettings(str(store.path), preset, basis_of(packs),
                              bool(packs[0].manifest["store"]["atrocious"]), threads)
    bar = tqdm(total=len(todo), unit="mol", desc="unpacking", dynamic_ncols=True)

    def on_result(result: dict) -> None:
        bar.set_postfix(last=f"{result['id']} {result['seconds']:.1f}s")
        bar.update(1)
        if not result["ok"]:
            bar.write(f"failed {result['id']}: {result['reason']}")

    try:
        summary = run_labelling(todo, settings, args.workers, None, on_result, task=unpack_item)
    finally:
        bar.close()
    report(f"rebuilt {summary.done}, failed {summary.failed}, skipped {present} in {summary.seconds:.0f} s")
    return 0 if summary.failed == 0 else 1
