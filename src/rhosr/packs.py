"""Packs: labelled molecules in a few tens of kilobytes each, rebuilt into a store without SCF.

A store entry is ~5 MB of grids and 25-45 s of DFT; a converged density is fully described
by the atoms, the basis and the density matrix. A pack keeps exactly that, so the molecules a
model was trained on travel with the repository and a new machine rebuilds its store in
seconds per molecule instead of hours of labelling.

Format (version ``PACK_FORMAT``), decided for these reasons:

- **One POSIX tar file** (``tar tf PACK`` lists it; Python's ``tarfile`` reads it anywhere).
  Tar, not zip: a tar is read front to back, so a pack cut short still yields every molecule
  before the cut and the one that was cut is named; a zip keeps its directory at the end and
  a truncated zip is unreadable as a whole. Members have fixed times and owners, so the same
  store gives the same bytes (re-packing unchanged molecules changes nothing in git).
- **``manifest.json`` first**: ``rhosr_pack`` (the format version; a newer one is refused),
  the DFT ``preset``, the store settings (``upscale``, ``margin_angstrom`` of the box rule,
  ``split`` name, ``atrocious``), the basis and pseudopotential names *and* their data per
  element in PySCF's plain format (``cell._basis[symbol]``, ``cell._pseudo[symbol]``), the
  orbital encoding, the package versions, and the list of molecules with the byte count and
  the sha256 of each record.
- **One record per molecule**, ``molecules/ID.npz`` (a plain ``numpy.load``-able npz,
  deflated): ``meta`` (the store entry's metadata as JSON bytes: atoms in Bohr, charge, spin,
  box and meshes, energies, timings, versions), ``orbitals`` ``C`` (float32, n_ao x n_orb),
  ``occupations`` ``w`` (float64) with ``D = C diag(w) C^T`` the spin-summed AO density matrix,
  and ``label_probe``, the stored label at every ``PROBE_STRIDE``-th fine point per axis
  (float32), against which every rebuilt label is checked.

Why orbitals in float32: a converged integer-occupation density matrix has rank N_occ, so its
eigen-decomposition (plain symmetric, no overlap matrix, no PySCF) keeps N_occ columns: ~20 KB
per nine-heavy-atom QM9 molecule instead of ~460 KB of float64 ``D``. float32 moves the
rebuilt label by ~1e-6 % Err_rho (``benchmarks/results/pack_roundtrip.md``), 100x inside the
1e-4 % the round trip must hold; eigenvalues below ``ORBITAL_RTOL`` of the largest are
dropped, and a factorisation that does not give back ``D`` within ``DM_RTOL`` is refused.

Reading verifies every record (length, sha256, format, preset) of every pack before anything
is written, so a truncated, damaged or mixed pack is a one-line error naming the molecule and
the store is untouched. Rebuilding (:func:`rebuild_entry`, the one place that turns a record
into an entry) evaluates the label from ``D`` with the same function and preset the labeller
used (:func:`rhosr.dft.density.density_on_mesh`) and the SAD input with :mod:`rhosr.sad`; the
entry is written through :meth:`DatasetStore.write_entry` (atomic), so unpacking resumes and
is idempotent like ``rhosr label``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosr.config import DFTPreset
from rhosr.errors import InputError
from rhosr.store import DatasetStore, Entry, _settings, package_versions

PACK_FORMAT = 1
"""Version of the pack format written here; packs of a newer version are refused."""

ORBITAL_RTOL = 1e-10
"""Eigenvalues of ``D`` below this fraction of the largest are dropped (numerical zeros)."""

DM_RTOL = 1e-5
"""Largest ``|D_rebuilt - D|`` allowed, relative to ``max |D|`` (float32 orbitals give ~1e-7)."""

PROBE_STRIDE = 8
"""Every PROBE_STRIDE-th fine-mesh point per axis of the label is kept to check the rebuild."""

PROBE_TOLERANCE_PERCENT = 1e-4
"""Largest relative L1 difference (percent) of a rebuilt label from its probe points."""

STORE_WRITTEN_KEYS = ("complete", "integrity")
"""Entry attributes the store itself writes (``write_entry``): not packed, written anew."""

MANIFEST = "manifest.json"
STORE_SETTINGS = ("upscale", "margin_angstrom", "split", "atrocious")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class PackRecord:
    """One packed molecule: entry metadata, ``D = C diag(w) C^T`` and the label probe."""

    meta: dict
    orbitals: np.ndarray  # (n_ao, n_orb) float32
    occupations: np.ndarray  # (n_orb,) float64
    label_probe: np.ndarray  # (nx, ny, nz) float32, label[::PROBE_STRIDE, ...]

    @property
    def id(self) -> str:
        return self.meta["id"]

    def density_matrix(self) -> np.ndarray:
        """The spin-summed AO density matrix ``C diag(w) C^T`` (float64)."""
        c = self.orbitals.astype(np.float64)
        return (c * self.occupations) @ c.T


@dataclass
class Pack:
    """A read and verified pack file: its manifest and its records' bytes by ID (in order)."""

    path: Path
    manifest: dict
    records: dict[str, bytes]


# -- the orbital factorisation ---------------------------------------------------------------
def orbitals_from_dm(dm: np.ndarray, rtol: float = ORBITAL_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """``(C, w)`` with ``dm ~= C diag(w) C^T``: eigenvectors of the symmetric ``dm`` whose
    eigenvalue exceeds ``rtol`` times the largest (float64; ``C`` is n_ao x n_orb)."""
    w, u = np.linalg.eigh(0.5 * (dm + dm.T))
    keep = np.abs(w) > rtol * np.abs(w).max()
    return u[:, keep], w[keep]


# -- records -------------------------------------------------------------------------------------
def make_record(entry: Entry) -> bytes:
    """The record bytes of a store entry read with ``dm`` and ``label`` (see module doc)."""
    c, w = orbitals_from_dm(entry.dm)
    record = PackRecord(entry.meta, c.astype(np.float32), w,
                        np.ascontiguousarray(entry.label[::PROBE_STRIDE, ::PROBE_STRIDE, ::PROBE_STRIDE],
                                             dtype=np.float32))
    error = np.abs(record.density_matrix() - entry.dm).max() / np.abs(entry.dm).max()
    if not error <= DM_RTOL:
        raise InputError(f"molecule {entry.id}: its density matrix is not low-rank enough to pack "
                         f"({len(w)} orbitals leave a relative error {error:.1e} > {DM_RTOL:g})")
    meta = {k: v for k, v in entry.meta.items() if k not in STORE_WRITTEN_KEYS}
    arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
              "orbitals": record.orbitals, "occupations": record.occupations,
              "label_probe": record.label_probe}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def parse_record(data: bytes) -> PackRecord:
    """A record from its bytes (ValueError if it is not one)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes().decode())
            return PackRecord(meta, npz["orbitals"], npz["occupations"], npz["label_probe"])
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ValueError(f"not a pack record ({type(exc).__name__})") from None


# -- writing ---------------------------------------------------------------------------------------
def element_data(symbols: list[str], basis: str, pseudo: str) -> dict:
    """Basis and pseudopotential data per element in PySCF's plain format."""
    from pyscf import gto

    elements = sorted(set(symbols))
    return {"basis": {"name": basis, "data": {s: gto.format_basis({s: basis})[s] for s in elements}},
            "pseudo": {"name": pseudo, "data": {s: gto.format_pseudo({s: pseudo})[s] for s in elements}}}


def pack_ids(store: DatasetStore, split: str | None = None, limit: int | None = None,
             ids: list[str] | None = None) -> list[str]:
    """The entries a pack of ``store`` holds: ``ids`` (all must be in the store) or all, sorted,
    of ``split`` if given, the first ``limit``."""
    if ids is None:
        chosen = store.entry_ids(split)
    else:
        missing = [i for i in ids if not store.has(i)]
        if missing:
            raise InputError(f"{store.path}: {len(missing)} of the listed molecules are not in the store "
                             f"(first: {missing[0]})")
        chosen = sorted(i for i in set(ids) if split is None or store.entry_meta(i)["split"] == split)
    return chosen if limit is None else chosen[:limit]


def read_ids(path: str | os.PathLike) -> list[str]:
    """Entry IDs from a JSON list (a run's ``train_ids.json``) or a text file, one per line."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        ids = json.loads(text)
    except ValueError:
        ids = text.split()
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(f"{path}: expected a JSON list of entry IDs or one ID per line")
    return ids


def iter_records(store: DatasetStore, ids: list[str],
                 progress: Callable[[str], None] | None = None) -> Iterator[tuple[str, str, bytes]]:
    """``(id, split, record bytes)`` of each entry, read from the store; ``progress(id)`` after each."""
    preset = _settings(store.meta["preset"])
    for entry_id in ids:
        entry = store.read_entry(entry_id, arrays=("label", "dm"))
        if entry.dm is None or entry.label is None:
            raise InputError(f"{store.path}: molecule {entry_id} has no density matrix or label")
        if _settings(entry.meta.get("preset")) != preset:
            name = (entry.meta.get("preset") or {}).get("name")
            raise InputError(f"{store.path}: molecule {entry_id} was labelled with preset {name!r}, "
                             f"the store says {preset['name']!r}")
        record = make_record(entry)
        if progress is not None:
            progress(entry_id)
        yield entry_id, entry.meta.get("split", ""), record


def write_pack(path: str | os.PathLike, store_meta: dict, records: list[tuple[str, str, bytes]],
               symbols: list[str]) -> int:
    """Write a pack file atomically (temporary + rename); return its size in bytes."""
    from rhosr.io import atomic_write

    preset = store_meta["preset"]
    manifest = {
        "rhosr_pack": PACK_FORMAT,
        "about": "rhosr pack: labelled molecules; rebuild with `rhosr store unpack PACK --store STORE`",
        "preset": preset,
        "store": {k: store_meta.get(k) for k in STORE_SETTINGS},
        **element_data(symbols, preset["basis"], preset["pseudo"]),
        "orbitals": {"dtype": "float32", "density_matrix": "D = C diag(w) C^T (spin-summed, AO basis)",
                     "probe_stride": PROBE_STRIDE},
        "versions": package_versions(),
        "molecules": [{"id": i, "split": s, "member": f"molecules/{i}.npz", "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()} for i, s, data in records],
    }
    with atomic_write(path, "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
            _add_member(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
            for entry_id, _, data in records:
                _add_member(tar, f"molecules/{entry_id}.npz", data)
    os.chmod(path, 0o644)  # a data file like any other (the temporary was private)
    return Path(path).stat().st_size


def pack_store(store_path: str | os.PathLike, output: str | os.PathLike, split: str | None = None,
               limit: int | None = None, shard_mb: float | None = None,
               progress: Callable[[str], None] | None = None, ids: list[str] | None = None) -> list[Path]:
    """Pack a store's entries (``ids`` or all; of ``split``; the first ``limit``) into ``output``.

    Without ``shard_mb`` one file; with it, ``output`` is a folder of files
    ``part-0000.tar``, ... of about ``shard_mb`` MB each. Returns the files written.
    """
    store = DatasetStore.open(store_path)
    ids = pack_ids(store, split, limit, ids)
    if not ids:
        raise InputError(f"{store_path}: no entries to pack" + (f" in split {split!r}" if split else ""))
    output = check_pack_output(output, shard_mb)
    if shard_mb is None:
        records = list(iter_records(store, ids, progress))
        write_pack(output, store.meta, records, _symbols(store, ids))
        return [output]
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".packing-", dir=output))
    try:
        names = []
        for shard in _shards(iter_records(store, ids, progress), shard_mb * 1e6):
            names.append(f"part-{len(names):04d}.tar")
            write_pack(staging / names[-1], store.meta, shard, _symbols(store, [i for i, *_ in shard]))
        for old in output.glob("part-*.tar"):  # a re-pack replaces the whole set of shards
            old.unlink()
        for name in names:
            os.replace(staging / name, output / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [output / name for name in names]


def check_pack_output(output: str | os.PathLike, shard_mb: float | None = None) -> Path:
    """Check where a pack goes before any work: a file (its folder must exist), or with
    ``shard_mb`` a folder."""
    output = Path(output)
    if shard_mb is None:
        if output.is_dir():
            raise InputError(f"{output}: is a folder; give a file name (or --shard-mb for shards)")
        if not output.parent.is_dir():
            raise InputError(f"{output}: folder {output.parent} does not exist")
    else:
        if not shard_mb > 0:
            raise InputError(f"--shard-mb must be > 0, got {shard_mb:g}")
        if output.exists() and not output.is_dir():
            raise InputError(f"{output}: exists and is not a folder (with --shard-mb, -o is a folder)")
    return output


def _shards(records: Iterator[tuple[str, str, bytes]], max_bytes: float) -> Iterator[list]:
    shard: list[tuple[str, str, bytes]] = []
    for record in records:
        shard.append(record)
        if sum(len(d) for *_, d in shard) >= max_bytes:
            yield shard
            shard = []
    if shard:
        yield shard


def _symbols(store: DatasetStore, ids: list[str]) -> list[str]:
    return [s for i in ids for s in store.entry_meta(i)["symbols"]]


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


# -- reading and verifying ------------------------------------------------------------------------
def pack_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Pack files of the given files and folders (a folder: its ``*.tar`` files, recursively,
    outside hidden folders such as a packer's staging folder)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.tar")
                           if not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise InputError(f"{p}: no pack files (*.tar) in this folder")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such pack file or folder")
    return out


def read_pack(path: str | os.PathLike) -> Pack:
    """Read a pack and verify every record; InputError (one line, naming the molecule) if not."""
    path = Path(path)
    try:
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{path}: not a rhosr pack ({str(exc) or type(exc).__name__})") from None
    with tar:
        members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in tar:
                members[member.name] = member
        except tarfile.TarError:
            pass  # cut short: the members read so far are checked against the manifest below
        manifest_bytes = _member_bytes(tar, members.get(MANIFEST))
        manifest = _parse_manifest(path, manifest_bytes)
        records = {}
        for mol in manifest["molecules"]:
            data = _member_bytes(tar, members.get(mol["member"]))
            if data is None or len(data) != mol["bytes"]:
                raise InputError(f"{path}: molecule {mol['id']} is truncated (the pack ends early; "
                                 "copy or download it again)")
            if hashlib.sha256(data).hexdigest() != mol["sha256"]:
                raise InputError(f"{path}: molecule {mol['id']} fails its sha256 checksum "
                                 "(the pack is damaged or was edited)")
            _check_record(path, manifest, mol["id"], data)
            records[mol["id"]] = data
    return Pack(path, manifest, records)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo | None) -> bytes | None:
    if member is None:
        return None
    try:
        fh = tar.extractfile(member)
        return None if fh is None else fh.read()
    except (tarfile.TarError, OSError):
        return None


def _parse_manifest(path: Path, data: bytes | None) -> dict:
    if data is None:
        raise InputError(f"{path}: not a rhosr pack (no readable {MANIFEST})")
    try:
        manifest = json.loads(data)
        version = manifest["rhosr_pack"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a rhosr pack (damaged {MANIFEST})") from None
    if not isinstance(version, int) or version > PACK_FORMAT:
        raise InputError(f"{path}: pack format {version} is newer than this rhosr reads "
                         f"({PACK_FORMAT}); upgrade rhosr")
    try:
        DFTPreset.from_dict(manifest["preset"])
        for mol in manifest["molecules"]:
            mol["id"], mol["member"], mol["bytes"], mol["sha256"]  # noqa: B018 (presence check)
        for key in ("store", "basis"):
            manifest[key]
    except (KeyError, TypeError, InputError):
        raise InputError(f"{path}: not a rhosr pack (incomplete {MANIFEST})") from None
    return manifest


def _check_record(path: Path, manifest: dict, entry_id: str, data: bytes) -> None:
    try:
        record = parse_record(data)
    except ValueError as exc:
        raise InputError(f"{path}: molecule {entry_id}: {exc}") from None
    if record.id != entry_id:
        raise InputError(f"{path}: molecule {entry_id}: its record says it is {record.id!r}")
    preset = _settings(record.meta.get("preset"))
    if preset != _settings(manifest["preset"]):
        raise InputError(f"{path}: molecule {entry_id} was labelled with preset "
                         f"{(preset or {}).get('name')!r}, the pack says {manifest['preset']['name']!r} "
                         "(mixed presets)")


def read_packs(paths: list[str | os.PathLike]) -> list[Pack]:
    """Read and verify all packs; they must agree on preset and store settings."""
    packs = [read_pack(p) for p in pack_files(paths)]
    first = packs[0]
    for pack in packs[1:]:
        if (_settings(first.manifest["preset"]) != _settings(pack.manifest["preset"])
                or first.manifest["store"] != pack.manifest["store"]):
            name = next(iter(pack.records), "(none)")
            raise InputError(f"{pack.path}: molecule {name}: preset or box settings differ from those "
                             f"of {first.path} (mixed presets); unpack it into another store")
    return packs


# -- rebuilding ----------------------------------------------------------------------------------
def rebuild_entry(record: PackRecord, preset: DFTPreset, basis=None, atrocious: bool = False) -> Entry:
    """The store entry of a record: label from ``D`` on the fine mesh, SAD on the coarse mesh.

    The one place a record becomes an entry. The label is evaluated as the labeller did for
    ``preset`` (``density_eval``), in ``basis`` (PySCF's data per element; the preset's basis
    name if None). Raises ValueError if the label differs from the record's probe points by
    more than ``PROBE_TOLERANCE_PERCENT``.
    """
    from rhosr.dft.density import density_on_mesh
    from rhosr.grid import Grid
    from rhosr.inputs import get_input
    from rhosr.molecule import Molecule
    from rhosr.store import entry_atoms

    meta = record.meta
    mol = Molecule(entry_atoms(meta), int(meta["charge"]), int(meta["spin"]), name=record.id)
    grid = Grid.from_dict(meta["grid"])
    label = density_on_mesh(mol, grid, record.density_matrix(), preset.density_eval, basis or preset.basis)
    s = PROBE_STRIDE
    probe = label[::s, ::s, ::s]
    if probe.shape != record.label_probe.shape:
        raise ValueError(f"rebuilt label mesh {label.shape} does not match the packed probe")
    diff = 100.0 * np.abs(probe - record.label_probe).sum() / np.abs(record.label_probe).sum()
    if not diff <= PROBE_TOLERANCE_PERCENT:
        raise ValueError(f"rebuilt label differs from the packed one by {diff:.1e} % "
                         f"(> {PROBE_TOLERANCE_PERCENT:g} %)")
    sad = get_input("sad")().build(mol, grid, "coarse")[0]  # as the labeller builds it
    sad_atrocious = get_input("sad_atrocious")().build(mol, grid, "coarse")[0] if atrocious else None
    return Entry(dict(meta), sad=sad, label=label, dm=record.density_matrix(), sad_atrocious=sad_atrocious)


@dataclass
class PackedMolecule:
    """One molecule to rebuild (picklable; sent to a worker). ``source``: the pack file's name."""

    id: str
    split: str
    source: str
    record: bytes


@dataclass
class UnpackSettings:
    """What every rebuild task needs besides its molecule (picklable)."""

    store_path: str
    preset: DFTPreset
    basis: dict
    atrocious: bool = False
    threads: int = 1


def unpack_item(item: PackedMolecule, settings: UnpackSettings) -> dict:
    """Rebuild one molecule and write its entry, under the same claim as ``rhosr label``
    (:func:`rhosr.labelling.run_claimed`: a whole entry is skipped, a damaged one moved to
    ``quarantine/`` and rebuilt). Never raises: failures are recorded."""
    from rhosr.labelling import _failed, run_claimed, set_threads

    set_threads(settings.threads)
    store = DatasetStore.open(settings.store_path)
    t0 = time.perf_counter()

    def write() -> dict:
        try:
            entry = rebuild_entry(parse_record(item.record), settings.preset, settings.basis,
                                  settings.atrocious)
            entry.meta["unpacked"] = {"pack": item.source, "seconds": round(time.perf_counter() - t0, 3),
                                      "versions": package_versions()}
            store.write_entry(entry)
        except Exception as exc:  # a worker must report, not die: the reason goes to the store
            return _failed(store, item, exc, t0)
        return {"id": item.id, "ok": True, "status": "done", "seconds": time.perf_counter() - t0}

    return run_claimed(store, item, "rhosr store unpack", write)


def open_store_for(packs: list[Pack], store_path: str | os.PathLike) -> DatasetStore:
    """Create the store the packs describe, or open a matching one (InputError if it differs)."""
    manifest = packs[0].manifest
    s = manifest["store"]
    return DatasetStore.create(store_path, manifest["preset"], s["upscale"], s["margin_angstrom"],
                               s.get("split") or "", bool(s["atrocious"]))


def pending_molecules(packs: list[Pack], store: DatasetStore) -> tuple[list[PackedMolecule], int]:
    """Molecules of the packs not yet complete in ``store`` (first pack wins for a repeated ID),
    and how many are already there."""
    todo, seen, present = [], set(), 0
    for pack in packs:
        splits = {m["id"]: m.get("split", "") for m in pack.manifest["molecules"]}
        for entry_id, data in pack.records.items():
            if entry_id in seen:
                continue
            seen.add(entry_id)
            if store.entry_dir(entry_id).exists() and store.check(entry_id) is None:
                present += 1  # whole; a damaged entry is rebuilt (unpack_item quarantines it)
                continue
            todo.append(PackedMolecule(entry_id, splits[entry_id], pack.path.name, data))
    return todo, present


def basis_of(packs: list[Pack]) -> dict:
    """Per-element basis data of all packs (PySCF's plain format)."""
    out: dict = {}
    for pack in packs:
        out.update(pack.manifest["basis"]["data"])
    return out
