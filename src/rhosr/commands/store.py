"""``rhosr store``: inspect a dataset store (``info``), check it (``verify``), export an entry,
pack labelled molecules compactly and rebuild a store from packs (``pack``/``unpack``)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
rhosr store info PATH            counts per split, damaged entries, failures, disk size, preset
rhosr store verify PATH [--repair]
                                 read every value of every entry; --repair moves damaged
                                 entries to PATH/quarantine/ (rhosr label then relabels them)
rhosr store export PATH ID -o x.cube [--what label|sad|sad_atrocious]
rhosr store pack STORE -o PACK [--split S] [--limit N]
                                 atoms, box, preset and converged orbitals (~40 kB a molecule)
rhosr store unpack PACK [PACK ...] --store STORE [--workers W]
                                 rebuild the grid entries (inputs and labels) with no SCF"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="summary of a store")
    info.add_argument("path", help="store folder")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--failures", action="store_true", help="list each failure and its reason")
    verify = sub.add_parser("verify", help="check every chunk of every entry")
    verify.add_argument("path", help="store folder")
    verify.add_argument("--repair", action="store_true",
                        help="move damaged entries to PATH/quarantine/ so that rhosr label relabels them")
    verify.add_argument("--json", action="store_true", help="print JSON")
    export = sub.add_parser("export", help="write one entry's density as a cube or npy file")
    export.add_argument("path", help="store folder")
    export.add_argument("id", help="entry ID (see rhosr store info)")
    export.add_argument("-o", "--output", required=True, help=".cube or .npy")
    export.add_argument("--what", choices=("label", "sad", "sad_atrocious"), default="label",
                        help="which density (default label, on the fine mesh)")
    from rhosr.commands import store_pack

    store_pack.add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    from rhosr.store import DatasetStore

    if args.store_command in ("pack", "unpack"):
        from rhosr.commands import store_pack

        return getattr(store_pack, f"run_{args.store_command}")(args)
    store = DatasetStore.open(args.path)
    actions = {"info": _info, "verify": _verify, "export": _export}
    return actions[args.store_command](store, args)


def _info(store, args) -> int:
    import json

    info = store.info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"store      {info['path']}")
        print(f"preset     {info['preset']}  (upscale x{info['upscale']}, split {info['split']}, "
              f"atrocious {'yes' if info['atrocious'] else 'no'})")
        per_split = "  ".join(f"{k}: {v}" for k, v in info["per_split"].items())
        print(f"entries    {info['entries']}  {per_split}")
        print(f"damaged    {len(info['damaged'])}" + ("  (rhosr store verify PATH --repair moves them "
                                                     "aside; rhosr label relabels them)"
                                                     if info["damaged"] else ""))
        print(f"failures   {info['failures']}")
        print(f"writing    {info['in_progress']} (in progress or left by a killed writer)")
        print(f"claimed    {info['labelling_now']} (being labelled now)")
        if info["quarantined"]:
            print(f"quarantine {info['quarantined']} (damaged entries moved aside; delete when reviewed)")
        print(f"disk       {info['disk_bytes'] / 1e9:.3f} GB")
        for entry_id, reason in info["damaged"].items():
            print(f"damaged {entry_id}: {reason}")
    if args.failures:
        for entry_id, failure in store.failures().items():
            print(f"failed {entry_id}: {failure['reason']}")
    return 0


def _verify(store, args) -> int:
    """Exit 0 when every entry is whole (or was moved aside by --repair), 1 when damage remains."""
    import json
    import time

    t0 = time.perf_counter()
    n_entries = sum(map(len, store.scan()))  # folders and stray files in entries/
    bad = store.verify(repair=args.repair, progress=not args.json)
    seconds = time.perf_counter() - t0
    remaining = {i: r for i, r in bad.items() if store.entry_dir(i).exists()}
    if args.json:
        print(json.dumps({"entries": n_entries, "seconds": seconds, "damaged": bad,
                          "repaired": sorted(set(bad) - set(remaining))}, indent=2))
    else:
        for entry_id, reason in bad.items():
            moved = " -> moved to quarantine/" if entry_id not in remaining else ""
            print(f"damaged {entry_id}: {reason}{moved}")
        per_entry = f" ({1e3 * seconds / n_entries:.0f} ms per entry)" if n_entries else ""
        print(f"verified {n_entries} entries in {seconds:.1f} s{per_entry}: {len(bad)} damaged"
              + (f", {len(bad) - len(remaining)} moved to {store.path / 'quarantine'}; "
                 "rhosr label relabels them" if args.repair and bad else ""))
    return 1 if remaining else 0


def _export(store, args) -> int:
    from rhosr.errors import InputError
    from rhosr.io import FORMATS, prepare_output, write_density
    from rhosr.store import entry_atoms

    prepare_output(args.output, FORMATS, "-o")
    if store.entry_dir(args.id).exists():
        problem = store.check(args.id, deep=True)  # every value of this one entry (~0.1 s)
        if problem is not None:
            raise InputError(f"entry {args.id} is damaged: {problem} (rhosr store verify --repair "
                             "moves it aside; rhosr label or store unpack rebuilds it)")
    entry = store.read_entry(args.id, arrays=(args.what,))
    rho = getattr(entry, args.what)
    if rho is None:
        raise InputError(f"entry {args.id} has no {args.what} array")
    write_density(args.output, entry_atoms(entry.meta), rho)
    print(f"{args.id}: {args.what} {'x'.join(map(str, rho.shape))} -> {args.output}")
    return 0
