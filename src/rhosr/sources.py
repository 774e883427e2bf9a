"""Where molecules for a dataset come from: QM9 ranges, folders, ASE databases, trajectories.

A SOURCE is one of:

- ``qm9`` or ``qm9:START-END[,START-END...]`` - QM9 molecules (qm9pack), restricted to the
  committed split named by ``--split`` (``rhosr/data/qm9_split.npz``); training molecules come
  in the split's seeded random order, so ``--limit N`` labels a random sample that later runs
  extend; validation and test likewise. IDs ``qm9_000123``.
- a folder - every structure file in it (sorted by name; one molecule per file). IDs: stems.
  A file that cannot be read becomes an item with a ``problem``: labelling records it as a
  failure with that reason and goes on with the others (one bad file in ten thousand should not
  stop a run, nor hide behind the first error).
- ``*.db`` - an ASE database; charge from the row's ``total_charge`` key (ASE reserves
  ``charge`` for the sum of initial charges, used if non-zero), spin from ``spin``.
  IDs ``<stem>_<row id>``.
- any other file - every frame of it (an xyz/extxyz trajectory, an ASE ``.traj``, ...).
  IDs ``<stem>_<frame>``.

For sources other than QM9 the user decides the split: every item gets ``--split``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosr.errors import InputError

STRUCTURE_SUFFIXES = {".xyz", ".extxyz", ".pdb", ".cif", ".sdf", ".mol", ".traj", ".json", ".vasp",
                      ".xsf", ".cube", ".gen", ".in", ".cell", ".res"}


@dataclass(frozen=True)
class SourceItem:
    """One molecule to label: positions in Angstrom, charge in e, spin = 2S."""

    id: str
    symbols: tuple[str, ...]
    positions_angstrom: np.ndarray
    split: str
    source: str
    charge: int = 0
    spin: int = 0
    problem: str | None = None  # why the structure could not be read (then no atoms)


def read_source(
    spec: str, split: str = "train", charge: int = 0, spin: int = 0, limit: int | None = None
) -> list[SourceItem]:
    """The first ``limit`` (default all) items of a SOURCE (see the module docstring)."""
    if spec == "qm9" or spec.startswith("qm9:"):
        return _qm9_items(spec, split, limit)
    path = Path(spec)
    if path.is_dir():
        items = _folder_items(path, split, charge, spin)
    elif not path.exists():
        raise InputError(f"{spec}: no such file or folder (and not qm9 or qm9:START-END)")
    elif path.suffix == ".db":
        items = _database_items(path, split, charge, spin)
    else:
        items = _frame_items(path, split, charge, spin)
    return list(itertools.islice(items, limit))


def _qm9_items(spec: str, split: str, limit: int | None = None) -> list[SourceItem]:
    from rhosr.qm9 import iter_qm9, load_split

    splits = load_split()
    if split not in splits:
        raise InputError(f"QM9 split must be one of {', '.join(splits)}, got {split!r}")
    order = splits[split]
    if spec.startswith("qm9:"):
        keep = np.zeros(len(order), dtype=bool)
        for part in spec[4:].split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", part)
            if not m:
                raise InputError(f"{spec}: QM9 ranges look like qm9:1-1000 or qm9:5,10-20")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            keep |= (order >= lo) & (order <= hi)
        order = order[keep]
    order = order[:limit]
    geometry = {index: (symbols, pos) for index, symbols, pos in iter_qm9(order.tolist())}
    return [SourceItem(f"qm9_{i:06d}", tuple(geometry[i][0]), geometry[i][1], split, f"qm9:{i}")
            for i in order.tolist() if i in geometry]


def _folder_items(path: Path, split: str, charge: int, spin: int) -> Iterator[SourceItem]:
    from rhosr.molecule import read_molecule

    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in STRUCTURE_SUFFIXES)
    if not files:
        raise InputError(f"{path}: no structure files ({', '.join(sorted(STRUCTURE_SUFFIXES))})")
    for f in files:
        try:
            mol = read_molecule(str(f), charge=charge, spin=spin, check=False)
        except InputError as exc:
            yield SourceItem(f.stem, (), np.zeros((0, 3)), split, str(f), charge, spin, problem=str(exc))
            continue
        yield SourceItem(f.stem, tuple(mol.symbols), mol.positions_angstrom, split, str(f), charge, spin)


def _database_items(path: Path, split: str, charge: int, spin: int) -> Iterator[SourceItem]:
    import ase.db

    try:
        rows = list(ase.db.connect(str(path)).select())
    except Exception as exc:
        raise InputError(f"{path}: cannot read ASE database ({exc})") from None
    for row in rows:
        atoms, keys = row.toatoms(), row.key_value_pairs
        yield SourceItem(f"{path.stem}_{row.id}", tuple(atoms.get_chemical_symbols()),
                         atoms.get_positions(), split, f"{path}@{row.id}",
                         int(round(keys.get("total_charge", row.charge or charge))),
                         int(keys.get("spin", spin)))


def _frame_items(path: Path, split: str, charge: int, spin: int) -> Iterator[SourceItem]:
    import ase.io

    try:
        frames = ase.io.read(str(path), index=":")
    except Exception as exc:
        raise InputError(f"{path}: cannot read structures ({exc})") from None
    if not frames:
        raise InputError(f"{path}: no structures")
    for i, atoms in enumerate(frames):
        yield SourceItem(f"{path.stem}_{i:05d}", tuple(atoms.get_chemical_symbols()),
                         atoms.get_positions(), split, f"{path}@{i}", charge, spin)
