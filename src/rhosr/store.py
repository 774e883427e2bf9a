"""The dataset store: one Zarr v3 group per molecule, written atomically, read fast.

Layout of a store folder::

    STORE/zarr.json            root group; attributes: preset, box rule, split, versions
    STORE/entries/ID/          one complete entry: arrays + attributes (see ``Entry``)
    STORE/failures/ID.json     why ID could not be labelled
    STORE/.tmp/...             entries being written (invisible to readers)
    STORE/claims/ID.json       who labels ID right now (host, PID; see ``rhosr.claims``)
    STORE/quarantine/ID.TIME   a damaged entry moved aside, with ID.TIME.json saying why

Why Zarr v3 on a local or shared filesystem: chunked, compressed (zstd) arrays, so a random
crop reads only the chunks it touches; and every writer writes its own entry, so any number
of Dask workers write at once without a lock (HDF5 has no safe concurrent writers).

An entry is written into ``.tmp/`` with ``complete: true`` as its last attribute, then the
folder is renamed into ``entries/`` (an atomic rename on POSIX). A crashed or killed writer
leaves at most a folder in ``.tmp/``, never a visible partial entry; stale temporaries of
dead processes are removed when a store is opened for writing.

Each array is described by an :class:`ArraySpec` in :data:`ARRAY_SPECS` (its mesh, dtype and so
its chunks and crops): densities are float32 (e/Bohr^3, axes x, y, z; chunks of 16^3 coarse /
16*upscale per axis on the fine mesh); the density matrix float64 in one chunk, so that the
label can be re-gridded exactly. A new array is one more spec (and an ``Entry`` field).

A store is created atomically too: its root ``zarr.json`` and folders are made in a hidden
sibling folder that is renamed onto ``STORE``; a rename onto a folder that is not empty fails,
so of two runs that create one store at the same moment exactly one does, and the other opens
it and compares its settings (a different preset is a one-line error, never a mixed store).

Damaged entries (a missing or truncated chunk, a half-written ``zarr.json``, a stray file in
``entries/``) are never read as zeros: reads check what they read (``rhosr.integrity``) and
raise :class:`~rhosr.integrity.DamagedEntryError` naming the entry and the reason; listings
skip them; :meth:`DatasetStore.check` and :meth:`DatasetStore.verify` find them, and
:meth:`DatasetStore.quarantine` moves one aside so that ``rhosr label`` relabels it.
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

from rhosr.claims import Claim, claim, live_claims, pid_alive
from rhosr.errors import InputError
from rhosr.integrity import (
    INTEGRITY_KEY,
    REQUIRED_ARRAYS,
    DamagedEntryError,
    check_chunks,
    check_electrons,
    damaged,
    entry_problem,
    integrity_record,
    read_entry_attrs,
)

STORE_FORMAT = 1
COARSE_CHUNK = 16
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class ArraySpec:
    """How an entry array is stored: ``mesh`` (``coarse``, ``fine`` or ``none`` for arrays
    that are not on a grid) and ``dtype``; the chunks and periodic crops follow from the mesh."""

    mesh: str
    dtype: str = "float32"


ARRAY_SPECS = {
    "sad": ArraySpec("coarse"),
    "label": ArraySpec("fine"),
    "dm": ArraySpec("none", "float64"),
    "sad_atrocious": ArraySpec("coarse"),
}
ENTRY_ARRAYS = tuple(ARRAY_SPECS)


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
    density_seconds, sad_seconds, preset, versions, attempts; and, as written by
    :meth:`DatasetStore.write_entry`, ``integrity`` (per array its CRC-32 and chunk file sizes,
    see ``rhosr.integrity``) and ``complete``.
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
        """Create a store, or open an existing one whose settings match (else InputError).

        Atomic: the store is built in a hidden sibling folder and renamed onto ``path``, so two
        runs creating one store at the same moment never both create it (see the module doc)."""
        path = Path(path)
        meta = {"rhosr_store": STORE_FORMAT, "preset": preset, "upscale": upscale,
                "margin_angstrom": margin_angstrom, "split": split, "atrocious": atrocious,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": package_versions()}
        if not (path / "zarr.json").exists():
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise InputError(f"{path}: exists and is not a rhosr store")
            if _create_atomically(path, meta):
                return cls(path, meta)
        store = cls.open(path)  # it existed, or another run created it first
        for key in ("preset", "upscale", "margin_angstrom", "atrocious"):
            if _settings(store.meta.get(key)) != _settings(meta[key]):
                was, asked = _shown(store.meta.get(key)), _shown(meta[key])
                if was == asked:  # a preset of the same name with other settings: show them
                    was, asked = repr(store.meta.get(key)), repr(meta[key])
                raise InputError(f"{path}: store was made with {key}={was}, not {asked}; "
                                 "use another --store")
        store.cleanup_stale()
        return store

    @classmethod
    def open(cls, path: str | os.PathLike) -> DatasetStore:
        path = Path(path)
        try:
            meta = json.loads((path / "zarr.json").read_text())["attributes"]
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{path}: not a rhosr dataset store") from None
        if not isinstance(meta, dict):
            raise InputError(f"{path}: not a rhosr dataset store")
        if meta.get("rhosr_store") != STORE_FORMAT:
            raise InputError(f"{path}: not a rhosr dataset store (format {meta.get('rhosr_store')})")
        return cls(path, meta)

    # -- listing ----------------------------------------------------------------------------
    def entry_dir(self, entry_id: str) -> Path:
        """The folder of entry ``entry_id``; the id must be a plain name, not a path."""
        if (not isinstance(entry_id, str) or not entry_id or entry_id.startswith(".")
                or "/" in entry_id or os.sep in entry_id or (os.altsep and os.altsep in entry_id)):
            raise InputError(f"{entry_id!r}: not an entry id (a name like qm9_000001, as "
                             "`rhosr store info` counts them; not a path)")
        return self.path / "entries" / entry_id

    def scan(self, splits: str | tuple[str, ...] | None = None) -> tuple[list[str], dict[str, str]]:
        """``(ids, damaged)``: sorted IDs of entries whose metadata is whole (only those in
        ``splits`` when given), and ``{id: reason}`` of the names in ``entries/`` that are
        not (stray files, missing or half-written ``zarr.json``; their split is unknown).
        Reads each entry's ``zarr.json``, no array: see :meth:`check` for chunk files."""
        folder = self.path / "entries"
        wanted = None if splits is None else ((splits,) if isinstance(splits, str) else tuple(splits))
        ids, bad = [], {}
        for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
            if name.startswith("."):
                continue
            try:
                attrs = read_entry_attrs(folder / name)
            except DamagedEntryError as exc:
                bad[name] = exc.reason
                continue
            if wanted is None or attrs["split"] in wanted:
                ids.append(name)
        return ids, bad

    def entry_ids(self, splits: str | tuple[str, ...] | None = None) -> list[str]:
        """IDs of entries whose metadata is whole, sorted; only those in ``splits`` when given.
        Damaged entries are left out (:meth:`scan` names them)."""
        return self.scan(splits)[0]

    def has(self, entry_id: str) -> bool:
        """Whether an entry folder with a ``zarr.json`` exists (whole or not: :meth:`check`)."""
        return (self.entry_dir(entry_id) / "zarr.json").exists()

    def check(self, entry_id: str, deep: bool = False) -> str | None:
        """Why entry ``entry_id`` is damaged, or None when it is whole (``rhosr.integrity``):
        metadata, shapes and chunk files; with ``deep`` also every value."""
        return entry_problem(self.entry_dir(entry_id), bool(self.meta.get("atrocious")), deep)

    def whole(self, entry_ids: list[str]) -> tuple[list[str], dict[str, str]]:
        """``(whole ids, {id: reason})`` of ``entry_ids`` by the quick :meth:`check`."""
        good, bad = [], {}
        for entry_id in entry_ids:
            problem = self.check(entry_id) if self.entry_dir(entry_id).exists() else "not in the store"
            if problem is None:
                good.append(entry_id)
            else:
                bad[entry_id] = problem
        return good, bad

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
        """Write an entry atomically. Returns False if one with that ID existed (whole or not).

        Every chunk is written (an all-zero one too) with zstd's frame checksum, and the
        entry's attributes record each array's CRC-32 and chunk sizes (``rhosr.integrity``)."""
        import zarr
        from zarr.codecs import ZstdCodec

        target = self.entry_dir(entry.id)
        if target.exists():
            return False
        tmp = self.path / ".tmp" / f"{entry.id}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            stored = {}
            for name in ENTRY_ARRAYS:
                array = getattr(entry, name)
                if array is None:
                    continue
                stored[name] = _stored_dtype(name, array)
                group.create_array(name, data=stored[name],
                                   chunks=_chunks(name, array.shape, self.meta.get("upscale", 2)),
                                   compressors=ZstdCodec(level=0, checksum=True),
                                   config={"write_empty_chunks": True})
            group.attrs.update({**entry.meta, INTEGRITY_KEY: integrity_record(tmp, stored),
                                "complete": True})
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
            if len(parts) == 4 and parts[1] == host and not pid_alive(int(parts[2])):
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        return removed

    def claim(self, entry_id: str) -> Claim:
        """Claim ``entry_id`` for this process (a context manager; ``rhosr.claims``). Raises
        :class:`~rhosr.claims.ClaimedElsewhere` while another live process holds it."""
        self.entry_dir(entry_id)  # a plain name
        return claim(self.path / "claims", entry_id)

    def quarantine(self, entry_id: str, reason: str, by: str) -> Path:
        """Move a damaged entry (or stray file) out of ``entries/`` into ``quarantine/``, beside
        a JSON note of the reason; return where it went. Nothing is deleted."""
        from rhosr.io import atomic_write

        source = self.entry_dir(entry_id)
        folder = self.path / "quarantine"
        folder.mkdir(exist_ok=True)
        target = folder / f"{entry_id}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:6]}"
        with atomic_write(target.with_name(target.name + ".json")) as fh:
            json.dump({"id": entry_id, "reason": reason, "by": by,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, fh, indent=1)
        os.rename(source, target)
        return target

    # -- reading ----------------------------------------------------------------------------
    def entry_meta(self, entry_id: str) -> dict:
        """An entry's attributes. Raises InputError when there is no such entry and
        :class:`~rhosr.integrity.DamagedEntryError` when its metadata is damaged."""
        folder = self.entry_dir(entry_id)
        if not folder.exists():
            raise InputError(f"{self.path}: no complete entry {entry_id!r}")
        return read_entry_attrs(folder)

    def array_names(self, entry_id: str) -> list[str]:
        """The arrays (of :data:`ARRAY_SPECS`) that a complete entry holds."""
        folder = self.path / "entries" / entry_id
        return [name for name in ARRAY_SPECS if (folder / name / "zarr.json").exists()]

    def read_entry(self, entry_id: str, arrays: tuple[str, ...] = ("sad", "label")) -> Entry:
        """Read an entry's metadata and the chosen arrays (float64 densities).

        Checked as read: chunk files present (and of their recorded size), decodable, and a
        label read whole integrates to the entry's electron count; else DamagedEntryError."""
        attrs = self.entry_meta(entry_id)
        folder = self.entry_dir(entry_id)
        out = Entry(attrs)
        required = set(attrs.get(INTEGRITY_KEY) or REQUIRED_ARRAYS) | (
            {"sad_atrocious"} if self.meta.get("atrocious") else set())
        for name in arrays:
            if name not in required and not (folder / name).exists():
                continue  # an array this entry never had (sad_atrocious of a plain store)
            check_chunks(folder, attrs, name)
            values = _read(folder, name, ...)
            if name == "label":
                check_electrons(folder, name, values, attrs, "fine")
            setattr(out, name, np.asarray(values, dtype=np.float64))
        return out

    def read_crop(self, entry_id: str, start: tuple[int, int, int], size: tuple[int, int, int],
                  sad_name: str = "sad") -> tuple[np.ndarray, np.ndarray]:
        """A periodic crop: ``size`` coarse points from coarse index ``start`` (wrapping), and
        the matching ``upscale * size`` fine label points. Returns float32 (sad, label)."""
        crops = self.read_crops(entry_id, start, size, (sad_name, "label"))
        return crops[sad_name], crops["label"]

    def read_crops(self, entry_id: str, start: tuple[int, int, int], size: tuple[int, int, int],
                   names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The same periodic crop of several arrays, each on its own mesh (:data:`ARRAY_SPECS`):
        ``size`` coarse points from coarse index ``start``, ``upscale`` times that on the fine
        mesh. Reads only the chunks the crop touches, and checks them (present, of their
        recorded size, decodable); else DamagedEntryError."""
        attrs = self.entry_meta(entry_id)
        folder = self.entry_dir(entry_id)
        up = int(attrs["grid"]["upscale"])
        coarse_mesh = attrs["grid"]["coarse_mesh"]
        out = {}
        for name in names:
            scale = {"coarse": 1, "fine": up}[ARRAY_SPECS[name].mesh]
            index = tuple((scale * s + np.arange(scale * n)) % (scale * m)
                          for s, n, m in zip(start, size, coarse_mesh))
            check_chunks(folder, attrs, name, index)
            out[name] = _read(folder, name, index)
        return out

    def info(self) -> dict:
        """Counts per split, failures, damaged entries (quick check: metadata and chunk files,
        no array data; ``verify`` reads every value), disk size and settings."""
        ids, bad = self.scan()
        counts = {s: 0 for s in SPLITS}
        for entry_id in ids:
            problem = self.check(entry_id)
            if problem is not None:
                bad[entry_id] = problem
                continue
            split = self.entry_meta(entry_id).get("split", "?")
            counts[split] = counts.get(split, 0) + 1
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        quarantine = self.path / "quarantine"
        return {"path": str(self.path), "entries": sum(counts.values()), "per_split": counts,
                "damaged": dict(sorted(bad.items())), "failures": len(self.failures()),
                "in_progress": len(list((self.path / ".tmp").glob("*"))),
                "labelling_now": len(live_claims(self.path / "claims")),
                "quarantined": len(list(quarantine.glob("*.json"))) if quarantine.exists() else 0,
                "disk_bytes": size, "preset": self.meta.get("preset", {}).get("name"),
                "upscale": self.meta.get("upscale"), "split": self.meta.get("split"),
                "atrocious": self.meta.get("atrocious")}

    def verify(self, repair: bool = False, progress: bool = False) -> dict[str, str]:
        """Deep-check every entry (every value; ``rhosr.integrity``); return ``{id: reason}`` of
        the damaged ones (stray files included). ``repair`` moves each into ``quarantine/``
        (:meth:`quarantine`) so that the next ``rhosr label`` relabels it; an entry another
        process is labelling right now is left to it."""
        from tqdm import tqdm

        from rhosr.claims import ClaimedElsewhere

        ids, bad = self.scan()
        for entry_id in tqdm(ids, desc="verifying", unit="entry", disable=None if progress else True):
            problem = self.check(entry_id, deep=True)
            if problem is not None:
                bad[entry_id] = problem
        if repair:
            for entry_id, reason in sorted(bad.items()):
                try:
                    with self.claim(entry_id):
                        self.quarantine(entry_id, reason, by="rhosr store verify --repair")
                except ClaimedElsewhere:
                    continue
        return dict(sorted(bad.items()))


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


def _shown(value) -> str:
    """A setting in an error message: a preset by its name, anything else as itself."""
    if isinstance(value, dict) and "name" in value:
        return repr(value["name"])
    return repr(value)


def _stored_dtype(name: str, array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=ARRAY_SPECS[name].dtype)


def _chunks(name: str, shape: tuple[int, ...], upscale: int) -> tuple[int, ...]:
    mesh = ARRAY_SPECS[name].mesh
    if mesh == "none":
        return tuple(shape)
    edge = COARSE_CHUNK * (upscale if mesh == "fine" else 1)
    return tuple(min(edge, n) for n in shape)


def _create_atomically(path: Path, meta: dict) -> bool:
    """Make a new store at ``path`` (absent or an empty folder) by building it in a hidden
    sibling folder and renaming that onto ``path``. False when another process made it first."""
    import zarr

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.new.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        root.attrs.update(meta)
        for sub in ("entries", "failures", ".tmp", "claims"):
            (tmp / sub).mkdir()
        try:
            os.rename(tmp, path)  # atomic; fails when path is a folder that is not empty
        except OSError as exc:
            if (path / "zarr.json").exists():
                return False
            raise InputError(f"{path}: cannot create a store there ({exc.strerror})") from None
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read(folder: Path, name: str, index) -> np.ndarray:
    """Values of array ``name``: ``...`` (all) or per-axis integer indices (orthogonal)."""
    import zarr

    try:
        array = zarr.open_array(str(folder / name), mode="r", zarr_format=3)
        return array[...] if index is ... else array.oindex[index]
    except (RuntimeError, ValueError, OSError, KeyError, IndexError) as exc:  # zstd, codecs, metadata
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise damaged(folder, f"{name} cannot be read ({text})") from None
