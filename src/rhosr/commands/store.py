"""``rhosr store``: inspect a dataset store (``info``), export an entry (``export``), pack and
unpack labelled molecules (``pack``, ``unpack``: see ``rhosr.commands.store_pack``)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
rhosr store info PATH            counts per split, failures, disk size, preset
rhosr store export PATH ID -o x.cube [--what label|sad|sad_atrocious]
rhosr store pack PATH -o PACK [--split S] [--limit N] [--ids FILE] [--shard-mb MB]
rhosr store unpack PACK [PACK ...] --store STORE [--workers W]"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rhosr.commands import store_pack

    sub = parser.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="summary of a store")
    info.add_argument("path", help="store folder")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--failures", action="store_true", help="list each failure and its reason")
    export = sub.add_parser("export", help="write one entry's density as a cube or npy file")
    export.add_argument("path", help="store folder")
    export.add_argument("id", help="entry ID (see rhosr store info)")
    export.add_argument("-o", "--output", required=True, help=".cube or .npy")
    export.add_argument("--what", choices=("label", "sad", "sad_atrocious"), default="label",
                        help="which density (default label, on the fine mesh)")
    store_pack.add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    import json

    from rhosr.commands import store_pack
    from rhosr.store import DatasetStore

    if args.store_command in ("pack", "unpack"):
        return getattr(store_pack, f"run_{args.store_command}")(args)
    store = DatasetStore.open(args.path)
    if args.store_command == "info":
        info = store.info()
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            print(f"store      {info['path']}")
            print(f"preset     {info['preset']}  (upscale x{info['upscale']}, split {info['split']}, "
                  f"atrocious {'yes' if info['atrocious'] else 'no'})")
            per_split = "  ".join(f"{k}: {v}" for k, v in info["per_split"].items())
            print(f"entries    {info['entries']}  {per_split}")
            print(f"failures   {info['failures']}")
            print(f"writing    {info['in_progress']} (in progress or left by a killed writer)")
            print(f"disk       {info['disk_bytes'] / 1e9:.3f} GB")
        if args.failures:
            for entry_id, failure in store.failures().items():
                print(f"failed {entry_id}: {failure['reason']}")
        return 0
    return _export(store, args)


def _export(store, args) -> int:
    from rhosr.errors import InputError
    from rhosr.io import write_density
    from rhosr.store import entry_atoms

    entry = store.read_entry(args.id, arrays=(args.what,))
    rho = getattr(entry, args.what)
    if rho is None:
        raise InputError(f"entry {args.id} has no {args.what} array")
    write_density(args.output, entry_atoms(entry.meta), rho)
    print(f"{args.id}: {args.what} {'x'.join(map(str, rho.shape))} -> {args.output}")
    return 0
