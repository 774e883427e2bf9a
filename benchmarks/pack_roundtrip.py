"""Packs of real QM9 molecules: size per molecule, rebuild time on one core, round-trip Err_rho.

Takes the first ``--n`` entries (sorted by ID) of STORE with ``--heavy`` heavy atoms, packs
them into one pack file in a temporary folder, reads it back (every checksum verified), and
rebuilds each entry into a temporary store exactly as ``rhosr store unpack --workers 0``
does (``rhosr.packs.unpack_item``: label from the packed orbitals, SAD input, atomic write)
on one thread. Reports the record size per molecule (and the pack file size per molecule,
tar headers and manifest included), the rebuild wall and CPU seconds per molecule, and
Err_rho between the rebuilt and the stored label (and SAD), both as stored (float32).

Run: ``OMP_NUM_THREADS=1 python benchmarks/pack_roundtrip.py STORE [--n 100] [--heavy 9]``;
writes results/pack_roundtrip.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rhosr.config import DFTPreset
from rhosr.grid import Grid
from rhosr.labelling import set_threads
from rhosr.metrics import err_rho
from rhosr.packs import (
    PackedMolecule,
    UnpackSettings,
    basis_of,
    iter_records,
    open_store_for,
    read_pack,
    unpack_item,
    write_pack,
)
from rhosr.store import DatasetStore

RESULTS = Path(__file__).parent / "results"


def heavy_atoms(meta: dict) -> int:
    return sum(s != "H" for s in meta["symbols"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--heavy", type=int, default=9, help="heavy atoms per molecule (0 = any)")
    args = parser.parse_args()
    set_threads(1)
    store = DatasetStore.open(args.store)
    ids = [i for i in store.entry_ids() if not args.heavy or heavy_atoms(store.entry_meta(i)) == args.heavy]
    ids = ids[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        records = list(iter_records(store, ids))
        symbols = [s for i in ids for s in store.entry_meta(i)["symbols"]]
        pack_path = Path(tmp) / "bench.tar"
        pack_bytes = write_pack(pack_path, store.meta, records, symbols)
        pack = read_pack(pack_path)
        rebuilt = open_store_for([pack], Path(tmp) / "rebuilt")
        settings = UnpackSettings(str(rebuilt.path), DFTPreset.from_dict(pack.manifest["preset"]),
                                  basis_of([pack]), bool(pack.manifest["store"]["atrocious"]), 1)
        unpack_item(PackedMolecule(ids[0], "", "warm-up", pack.records[ids[0]]), settings)  # caches
        (rebuilt.path / "entries" / ids[0]).rename(Path(tmp) / "warm")
        rows = []
        for entry_id in ids:
            t0, c0 = time.perf_counter(), time.process_time()
            item = PackedMolecule(entry_id, "", pack_path.name, pack.records[entry_id])
            result = unpack_item(item, settings)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if not result["ok"]:
                raise SystemExit(f"{entry_id}: {result['reason']}")
            a = store.read_entry(entry_id, ("label", "sad"))
            b = rebuilt.read_entry(entry_id, ("label", "sad"))
            grid = Grid.from_dict(a.meta["grid"])
            n_e = a.meta["n_electrons"]
            rows.append((entry_id, len(pack.records[entry_id]), wall, cpu,
                         err_rho(b.label, a.label, grid.voxel_volume("fine"), n_e),
                         err_rho(b.sad, a.sad, grid.voxel_volume("coarse"), n_e)))
            print(f"{entry_id}  {rows[-1][1] / 1e3:6.1f} kB  {wall:5.2f} s wall  {cpu:5.2f} s cpu  "
                  f"Err_rho label {rows[-1][4]:.2e} %  sad {rows[-1][5]:.2e} %", flush=True)
    size, wall, cpu, err, err_sad = (np.array([r[k] for r in rows]) for k in range(1, 6))
    store_mb = np.mean([_entry_bytes(store, i) for i in ids]) / 1e6
    label_s = np.array([sum(store.entry_meta(i)[k] for k in ("scf_seconds", "density_seconds", "sad_seconds"))
                        for i in ids])
    what = f"{args.heavy} heavy atoms" if args.heavy else "any size"
    lines = [
        "# Pack round trip",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/pack_roundtrip.py STORE --n {args.n} "
        f"--heavy {args.heavy}` on a `{store.meta['preset']['name']}` QM9 store "
        f"({len(ids)} molecules with {what}, the first by ID; one thread; a machine shared with other jobs, "
        "so wall seconds are above CPU seconds).",
        "",
        "| quantity | mean | max |",
        "|---|---|---|",
        f"| record per molecule (kB) | {size.mean() / 1e3:.1f} | {size.max() / 1e3:.1f} |",
        f"| pack file per molecule, tar + manifest included (kB) | {pack_bytes / len(ids) / 1e3:.1f} | |",
        f"| store entry per molecule (kB, for comparison) | {1e3 * store_mb:.0f} | |",
        f"| DFT labelling time per molecule when labelled (s, from the entries' metadata) | "
        f"{label_s.mean():.1f} | {label_s.max():.1f} |",
        f"| rebuild wall time per molecule (s) | {wall.mean():.2f} | {wall.max():.2f} |",
        f"| rebuild CPU time per molecule (s) | {cpu.mean():.2f} | {cpu.max():.2f} |",
        f"| Err_rho rebuilt vs stored label (%) | {err.mean():.2e} | {err.max():.2e} |",
        f"| Err_rho rebuilt vs stored SAD input (%) | {err_sad.mean():.2e} | {err_sad.max():.2e} |",
        "",
        "Rebuild = `rhosr.packs.unpack_item`: record parsed, label evaluated from the float32 "
        "orbitals with the preset's density method, checked against the packed probe, SAD input "
        "computed, entry written atomically (zstd) into a fresh store.",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pack_roundtrip.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _entry_bytes(store: DatasetStore, entry_id: str) -> int:
    return sum(f.stat().st_size for f in (store.path / "entries" / entry_id).rglob("*") if f.is_file())


if __name__ == "__main__":
    main()
