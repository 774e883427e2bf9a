"""The dataset store: one Zarr v3 group per molecule, written atomically, read fast.

Layout of a store folder::

    STORE/zarr.json            root group; attributes: preset, box rule, split, versions
    STORE/entries/ID/          one complete entry: arrays + attributes (see ``Entry``)
    STORE/failures/ID.json     why ID could not be labelled
    STORE/.tmp/...             entries being written (invisible to readers)

Why Zarr v3 on a local or shared filesystem: chunked, compressed (zstd) arrays, so a random
crop reads only the chunks it touches; and every writer writes its own entry, so any number
of Dask workers write at once without a lock (HDF5 has no safe concurrent writers).

An entry is written into ``.tmp/`` with ``complete: true`` as its last attribute, then the
folder is renamed into ``entries/`` (an atomic rename on POSIX). A crashed or killed writer
leaves at most a folder in ``.tmp/``, never a visible partial entry; stale temporaries of
dead processes are removed when a store is opened for writing.

Densities are stored as float32 (e/Bohr^3, axes x, y, z; chunks of 16^3 coarse / 32^3 fine
points); the density matrix as float64 so that the label can be re-gridded exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosr.errors import InputError

STORE_FORMAT = 1
COARSE_CHUNK = 16
SPLITS = ("train", "validation", "test")
ENTRY_ARRAYS = ("sad", "label", "dm", "sad_atrocious")


def package_versions() -> dict[str, str]:
    import ase
    import pyscf
    import zarr

    from rhosr import __version__

    return {"rhosr": __version__, "pyscf": pyscf.__version__, "ase": ase.__version__,
            "numpy": np.__version__, "zarr": zarr.__version__}


@dataclass
class Entry:
    """One molecule of a dataset.

    Arrays: ``sad`` (coarse mesh), ``label`` (fine mesh), ``sad_atrocious`` (coarse, optional),
    ``dm`` (AO density matrix in ``meta['basis']``). ``meta`` holds: id, split, source,
    symbols, positions_bohr (box frame), charge, spin, n_electrons, grid (lengths_bohr,
    coarse_mesh, upscale), basis, energy, homo, lumo (Hartree), scf_cycles, scf_seconds,
    density_seconds, sad_seconds, preset, versions, attempts.
    """

    meta: dict
    sad: np.ndarray | None = None
    label: np.ndarray | None = None
    dm: np.ndarray | None = None
    sad_atrocious: np.ndarray | None = None

    @property
    def id(self) -> str:
        return self.meta["id"]


class DatasetStore:
    """A folder of labelled molecules. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: str | os.PathLike, meta: dict):
        self.path = Path(path)
        self.meta = meta

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, preset: dict, upscale: int = 2,
               margin_angstrom: float = 4.0, split: str = "", atrocious: bool = False) -> DatasetStore:
        """Create a store, or open an existing one whose settings match (else InputError)."""
        import zarr

        path = Path(path)
        meta = {"rhosr_store": STORE_FORMAT, "preset": preset, "upscale": upscale,
                "margin_angstrom": margin_angstrom, "split": split, "atrocious": atrocious,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": package_versions()}
        if (path / "zarr.json").exists():
            store = cls.open(path)
            for key in ("preset", "upscale", "margin_angstrom", "atrocious"):
                if _settings(store.meta.get(key)) != _settings(meta[key]):
                    raise InputError(f"{path}: store was made with {key}={store.meta.get(key)!r}, "
                                     f"not {meta[key]!r}; use another --store")
            store.cleanup_stale()
            return store
        if path.exists() and any(path.iterdir()):
            raise InputError(f"{path}: exists and is not a rhosr store")
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(meta)
        for sub in ("entries", "failures", ".tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return cls(path, meta)

    @classmethod
    def open(cls, path: str | os.PathLike) -> DatasetStore:
        path = Path(path)
        try:
            meta = json.loads((path / "zarr.json").read_text())["attributes"]
        except (OSError, ValueError, KeyError):
            raise InputError(f"{path}: not a rhosr dataset store") from None
        if meta.get("rhosr_store") != STORE_FORMAT:
            raise InputError(f"{path}: not a rhosr dataset store (format {meta.get('rhosr_store')})")
        return cls(path, meta)

    # -- listing ----------------------------------------------------------------------------
    def entry_ids(self, splits: str | tuple[str, ...] | None = None) -> list[str]:
        """IDs of complete entries, sorted; only those in ``splits`` when given."""
        folder = self.path / "entries"
        if not folder.exists():
            return []
        ids = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if splits is None:
            return ids
        wanted = (splits,) if isinstance(splits, str) else tuple(splits)
        return [i for i in ids if self.entry_meta(i)["split"] in wanted]

    def has(self, entry_id: str) -> bool:
        return (self.path / "entries" / entry_id / "zarr.json").exists()

    def failures(self) -> dict[str, dict]:
        folder = self.path / "failures"
        out = {}
        for p in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                out[p.stem] = json.loads(p.read_text())
            except ValueError:
                continue
        return out

    # -- writing ----------------------------------------------------------------------------
    def write_entry(self, entry: Entry) -> bool:
        """Write an entry atomically. Returns False if a complete one with that ID existed."""
        import zarr

        target = self.path / "entries" / entry.id
        if target.exists():
            return False
        tmp = self.path / ".tmp" / f"{entry.id}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            for name in ENTRY_ARRAYS:
                array = getattr(entry, name)
                if array is None:
                    continue
                group.create_array(name, data=_stored_dtype(name, array), chunks=_chunks(name, array.shape,
                                   self.meta.get("upscale", 2)))
            group.attrs.update({**entry.meta, "complete": True})
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if target.exists():  # another writer finished the same entry first
                return False
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        failure = self.path / "failures" / f"{entry.id}.json"
        failure.unlink(missing_ok=True)
        return True

    def record_failure(self, entry_id: str, reason: str, **details) -> None:
        from rhosr.io import atomic_write

        with atomic_write(self.path / "failures" / f"{entry_id}.json") as fh:
            json.dump({"id": entry_id, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       **details}, fh, indent=1)

    def cleanup_stale(self) -> int:
        """Remove temporaries of writers that no longer run on this host; return how many."""
        removed = 0
        host = socket.gethostname()
        for tmp in (self.path / ".tmp").glob("*"):
            parts = tmp.name.rsplit(".", 3)
            if len(parts) == 4 and parts[1] == host and not _pid_alive(int(parts[2])):
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        return removed

    # -- reading ----------------------------------------------------------------------------
    def _group(self, entry_id: str):
        import zarr

        if not self.has(entry_id):
            raise InputError(f"{self.path}: no complete entry {entry_id!r}")
        return zarr.open_group(str(self.path / "entries" / entry_id), mode="r", zarr_format=3)

    def entry_meta(self, entry_id: str) -> dict:
        path = self.path / "entries" / entry_id / "zarr.json"
        try:
            return json.loads(path.read_text())["attributes"]
        except OSError:
            raise InputError(f"{self.path}: no complete entry {entry_id!r}") from None

    def read_entry(self, entry_id: str, arrays: tuple[str, ...] = ("sad", "label")) -> Entry:
        """Read an entry's metadata and the chosen arrays (float64 densities)."""
        group = self._group(entry_id)
        out = Entry(dict(group.attrs))
        for name in arrays:
            if name in group:
                setattr(out, name, np.asarray(group[name][...], dtype=np.float64))
        return out

    def read_crop(self, entry_id: str, start: tuple[int, int, int], size: tuple[int, int, int],
                  sad_name: str = "sad") -> tuple[np.ndarray, np.ndarray]:
        """A periodic crop: ``size`` coarse points from coarse index ``start`` (wrapping), and
        the matching ``upscale * size`` fine label points. Returns float32 (sad, label)."""
        group = self._group(entry_id)
        up = int(group.attrs["grid"]["upscale"])
        coarse_mesh = group[sad_name].shape
        ci = [(s + np.arange(n)) % m for s, n, m in zip(start, size, coarse_mesh)]
        fi = [(up * s + np.arange(up * n)) % (up * m) for s, n, m in zip(start, size, coarse_mesh)]
        return group[sad_name].oindex[tuple(ci)], group["label"].oindex[tuple(fi)]

    def info(self) -> dict:
        counts = {s: 0 for s in SPLITS}
        for entry_id in self.entry_ids():
            split = self.entry_meta(entry_id).get("split", "?")
            counts[split] = counts.get(split, 0) + 1
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return {"path": str(self.path), "entries": sum(counts.values()), "per_split": counts,
                "failures": len(self.failures()), "in_progress": len(list((self.path / ".tmp").glob("*"))),
                "disk_bytes": size, "preset": self.meta.get("preset", {}).get("name"),
                "upscale": self.meta.get("upscale"), "split": self.meta.get("split"),
                "atrocious": self.meta.get("atrocious")}


def entry_atoms(meta: dict):
    """The ASE ``Atoms`` of an entry's metadata: box frame, Angstrom, with its periodic cell."""
    from ase import Atoms

    from rhosr.grid import BOHR_ANGSTROM

    return Atoms(meta["symbols"], np.asarray(meta["positions_bohr"]) * BOHR_ANGSTROM,
                 cell=np.asarray(meta["grid"]["lengths_bohr"]) * BOHR_ANGSTROM, pbc=True)


def _settings(value):
    """What must match to add to a store: a preset's documentation string and how tightly its
    SCF converges (``rhosr.config.SCF_ROUTE_KEYS``) may change."""
    from rhosr.config import SCF_ROUTE_KEYS

    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in ("label_error_vs_paper", *SCF_ROUTE_KEYS)}
    return value


def _stored_dtype(name: str, array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64 if name == "dm" else np.float32)


def _chunks(name: str, shape: tuple[int, ...], upscale: int) -> tuple[int, ...]:
    if name == "dm":
        return tuple(shape)
    edge = COARSE_CHUNK * (upscale if name == "label" else 1)
    return tuple(min(edge, n) for n in shape)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
