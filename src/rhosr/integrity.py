"""Whether a store entry is whole: the checks behind reads, ``store info`` and ``store verify``.

A store entry is *damaged* when any part of it cannot be trusted: a stray file (not a folder)
in ``entries/``; an entry ``zarr.json`` that is missing, not valid JSON (half-written) or not
marked ``complete``; an array that is missing, of the wrong shape for the entry's grid, with a
chunk file missing, truncated or corrupt; a density that does not integrate to the entry's
electron count. Zarr reads a missing chunk as its fill value (zeros) without a word, so every
reader checks before it trusts: a water label (tiny preset, 12 chunks) with one chunk missing
holds 5.33 to 7.99998 of its 8 electrons, depending on the chunk, and was exported, evaluated
and trained on as a label.

How an entry proves it is whole (decided here, measured in ``docs/guide/store-integrity.md``):

- At write time (:func:`integrity_record`) every array's chunks are all written (even an
  all-zero one), compressed with zstd *with its frame checksum* (so a flipped bit fails the
  read itself, at no measurable cost), and the entry's attributes record per array the byte
  size of every chunk file and a CRC-32 of the stored values (C order). CRC-32 rather than a
  cryptographic hash: it is for accidents, not attacks, and costs 3 ms per 4 MB label where
  SHA-256 costs 8 ms (measured on this project's machine).
- The *quick* check (:func:`entry_problem` with ``deep=False``; ``store info``, ``label``'s
  list of what is left to do, training start) reads the entry's ``zarr.json`` and the arrays'
  metadata and stats every chunk file: present, and of its recorded size (entries written
  before the record existed: present and not empty). It reads no array data.
- The *deep* check (``deep=True``; ``store verify``) also decodes every array: values finite,
  CRC-32 equal to the record (when there is one), and the label and SAD integrate to the
  entry's ``n_electrons`` within :data:`ELECTRON_RTOL`. Entries written before the record
  existed are verified by everything except the CRC.
- Every read (:func:`check_chunks` and :func:`check_electrons`, called by
  ``DatasetStore.read_entry`` / ``read_crop``) stats the chunk files it is about to read, turns
  a decoding error into a damaged-entry error, and, when the whole label is read, checks its
  electron count (a sum over the array that is already in memory).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import zlib
from pathlib import Path

import numpy as np

from rhosr.errors import InputError

INTEGRITY_KEY = "integrity"
"""Entry attribute holding, per array, ``{"crc32": int, "chunk_bytes": [int, ...]}``."""

ELECTRON_RTOL = 1e-3
"""Relative tolerance of ``sum(rho) * dV`` against ``n_electrons`` for the label and the SAD.

Whole entries integrate far closer (labels to ~1e-6, the SAD to ~1e-4: ``tests/test_store.py``;
7 QM9 entries of preset ``fast``: labels within 5e-9, SAD within 3e-5). A lost chunk near an
atom changes the count by far more (water: 8 -> 5.33 electrons), one in a corner of the box by
less (8 -> 7.99998): chunk files are therefore checked first, the count is the second line."""

REQUIRED_ARRAYS = ("sad", "label", "dm")
"""Arrays every labelled entry has (``sad_atrocious`` too when the store was made with it)."""


class DamagedEntryError(InputError):
    """A store entry that must not be used; ``entry_id`` and ``reason`` say which and why."""

    def __init__(self, message: str, entry_id: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.entry_id, self.reason = entry_id, reason


def damaged(folder: Path, reason: str) -> DamagedEntryError:
    """The error for the entry in ``folder`` (``STORE/entries/ID``), with what to do about it."""
    return DamagedEntryError(f"entry {folder.name} is damaged: {reason} (`rhosr store verify "
                             f"{folder.parent.parent} --repair` moves it aside, `rhosr label` then "
                             "relabels it)", folder.name, reason)


# -- writing ----------------------------------------------------------------------------------
def checksum(values: np.ndarray) -> int:
    """CRC-32 of an array's values as stored (its dtype, C order)."""
    return zlib.crc32(memoryview(np.ascontiguousarray(values)).cast("B"))


def integrity_record(group_path: Path, arrays: dict[str, np.ndarray]) -> dict:
    """The record written into a new entry's attributes, for ``arrays`` (name -> stored values)
    just written under ``group_path``: per array its CRC-32 and its chunk files' sizes."""
    record = {}
    for name, values in arrays.items():
        array_path = group_path / name
        shape, chunks = _array_layout(array_path)
        record[name] = {"crc32": checksum(values),
                        "chunk_bytes": [(array_path / key).stat().st_size
                                        for key in chunk_keys(shape, chunks)]}
    return record


# -- the checks -------------------------------------------------------------------------------
def read_entry_attrs(folder: Path) -> dict:
    """An entry's attributes; raises :class:`DamagedEntryError` when they cannot be trusted."""
    entry_id = folder.name
    if not folder.is_dir():
        raise damaged(folder, "a stray file in entries/, not an entry folder")
    try:
        text = (folder / "zarr.json").read_text()
    except FileNotFoundError:
        raise damaged(folder, "no zarr.json (its metadata is missing)") from None
    except OSError as exc:
        raise damaged(folder, f"zarr.json cannot be read ({exc.strerror})") from None
    try:
        attrs = json.loads(text)["attributes"]
    except (ValueError, KeyError, TypeError):
        raise damaged(folder, "zarr.json is not valid entry metadata (half-written?)") from None
    if not isinstance(attrs, dict) or attrs.get("complete") is not True:
        raise damaged(folder, "zarr.json is not marked complete")
    if attrs.get("id") != entry_id:
        raise damaged(folder, f"zarr.json belongs to entry {attrs.get('id')!r}")
    for key in ("grid", "n_electrons", "split"):
        if key not in attrs:
            raise damaged(folder, f"zarr.json has no {key!r}")
    return attrs


def entry_problem(folder: Path, atrocious: bool = False, deep: bool = False) -> str | None:
    """Why the entry in ``folder`` is damaged, or None when it is whole.

    ``deep=False``: metadata, shapes and chunk files (no array data read). ``deep=True``: also
    every value (finite, CRC-32, electron counts). ``atrocious``: the store promises a
    ``sad_atrocious`` array in every entry."""
    try:
        attrs = read_entry_attrs(folder)
        record = attrs.get(INTEGRITY_KEY) or {}
        names = set(record) | set(REQUIRED_ARRAYS) | ({"sad_atrocious"} if atrocious else set())
        for name in sorted(names):
            shape = _check_array(folder, attrs, name, record.get(name))
            if deep:
                _check_values(folder, attrs, name, shape, record.get(name))
    except DamagedEntryError as exc:
        return exc.reason
    return None


def check_chunks(folder: Path, attrs: dict, name: str, index: tuple[np.ndarray, ...] | None = None) -> None:
    """Before a read: the chunk files of array ``name`` that cover ``index`` (per-axis integer
    indices; None: the whole array) are present and of their recorded size."""
    record = (attrs.get(INTEGRITY_KEY) or {}).get(name)
    shape, chunks = _array_layout(folder / name)
    keys = chunk_keys(shape, chunks)
    if index is None:
        wanted = range(len(keys))
    else:
        per_axis = [np.unique(np.asarray(ix) // c).tolist() for ix, c in zip(index, chunks)]
        grid = [math.ceil(n / c) for n, c in zip(shape, chunks)]
        wanted = [int(np.ravel_multi_index(k, grid)) for k in itertools.product(*per_axis)]
    sizes = record["chunk_bytes"] if record else None
    for k in wanted:
        _check_chunk(folder, name, keys[k], sizes[k] if sizes else None)


def check_electrons(folder: Path, name: str, values: np.ndarray, attrs: dict, which: str) -> None:
    """A whole density read from an entry integrates to its ``n_electrons``."""
    from rhosr.grid import Grid

    n_e = float(attrs["n_electrons"])
    total = float(np.sum(values, dtype=np.float64)) * Grid.from_dict(attrs["grid"]).voxel_volume(which)
    if not math.isfinite(total) or abs(total - n_e) > ELECTRON_RTOL * max(n_e, 1.0):
        raise damaged(folder, f"{name} integrates to {total:.4g} electrons, not {n_e:g}")


def chunk_keys(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[str]:
    """Zarr v3 chunk file names (``c/i/j/k``, default "/" encoding) in C order of the chunk index."""
    ranges = [range(math.ceil(n / c)) for n, c in zip(shape, chunks)]
    return ["/".join(("c", *map(str, k))) for k in itertools.product(*ranges)]


def expected_shape(attrs: dict, name: str) -> tuple[int, ...] | None:
    """The shape an entry's grid implies for array ``name`` (None: not fixed by the grid)."""
    from rhosr.grid import Grid
    from rhosr.store import ARRAY_SPECS

    grid = Grid.from_dict(attrs["grid"])
    mesh = ARRAY_SPECS[name].mesh if name in ARRAY_SPECS else None
    return {"coarse": tuple(grid.coarse_mesh), "fine": tuple(grid.fine_mesh)}.get(mesh)


# -- helpers ----------------------------------------------------------------------------------
def _array_layout(array_path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, chunk shape) from an array's ``zarr.json`` (``STORE/entries/ID/NAME``)."""
    folder = array_path.parent
    try:
        meta = json.loads((array_path / "zarr.json").read_text())
        shape = tuple(int(n) for n in meta["shape"])
        chunks = tuple(int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"])
        encoding = meta.get("chunk_key_encoding", {})
    except FileNotFoundError:
        raise damaged(folder, f"array {array_path.name} is missing") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise damaged(folder, f"array {array_path.name}: zarr.json is not valid (half-written?)") from None
    if encoding.get("name") != "default" or encoding.get("configuration", {}).get("separator", "/") != "/":
        raise damaged(folder, f"array {array_path.name}: unexpected chunk key encoding {encoding}")
    return shape, chunks


def _check_chunk(folder: Path, name: str, key: str, size: int | None) -> None:
    try:
        actual = os.stat(f"{folder}/{name}/{key}").st_size  # not pathlib: 2x faster, ~130 per entry
    except (FileNotFoundError, NotADirectoryError):
        raise damaged(folder, f"{name} chunk {key} is missing") from None
    if size is not None and actual != size:
        raise damaged(folder, f"{name} chunk {key} has {actual} bytes, not {size} (truncated?)")
    if size is None and actual == 0:
        raise damaged(folder, f"{name} chunk {key} is empty")


def _check_array(folder: Path, attrs: dict, name: str, record: dict | None) -> tuple[int, ...]:
    """Metadata, shape and chunk files of one array; returns its shape."""
    shape, chunks = _array_layout(folder / name)
    want = expected_shape(attrs, name)
    if want is not None and shape != want:
        raise damaged(folder, f"{name} has shape {shape}, the entry's grid needs {want}")
    if name == "dm" and (len(shape) != 2 or shape[0] != shape[1]):
        raise damaged(folder, f"dm has shape {shape}, not a square matrix")
    keys = chunk_keys(shape, chunks)
    if record is not None and len(record.get("chunk_bytes", ())) != len(keys):
        raise damaged(folder, f"{name}: {len(keys)} chunks, the record lists "
                                   f"{len(record.get('chunk_bytes', ()))}")
    for k, key in enumerate(keys):
        _check_chunk(folder, name, key, record["chunk_bytes"][k] if record else None)
    return shape


def _check_values(folder: Path, attrs: dict, name: str, shape: tuple[int, ...], record: dict | None) -> None:
    import zarr

    try:
        values = zarr.open_array(str(folder / name), mode="r", zarr_format=3)[...]
    except Exception as exc:  # a zstd or codec error: the bytes on disk are not what was written
        raise damaged(folder, f"{name} cannot be decoded ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if record is not None and checksum(values) != int(record["crc32"]):
        raise damaged(folder, f"{name} values differ from those written (CRC-32)")
    if not np.all(np.isfinite(values)):
        raise damaged(folder, f"{name} holds NaN or infinite values")
    if name in ("sad", "label"):
        check_electrons(folder, name, values, attrs, "fine" if name == "label" else "coarse")
