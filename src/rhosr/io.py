"""Writing and reading densities: Gaussian cube files (through ASE) and plain ``.npy``.

Cube files hold the atoms in the box frame and the density in e/Bohr^3 on the box's mesh,
grid point ``(i, j, k)`` at ``(i/nx*Lx, j/ny*Ly, k/nz*Lz)`` (origin at the box corner), so
VMD, VESTA and Avogadro show the density where the atoms are. ``.npy`` files hold only the
array, axes (x, y, z). Files are written to a temporary name and renamed, so an interrupted
write never leaves a half-written file behind; they get the mode the user's umask gives a new
file (``0o666 & ~umask``, e.g. 0644), as ``open`` would, not the temporary file's 0600.

Output locations are checked before any work (:func:`prepare_output`,
:func:`prepare_output_folder`): a known suffix, not a folder where a file is wanted, not a file
where a folder is wanted, and a folder this process can write in (tried by creating a file).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from rhosr.errors import InputError
from rhosr.grid import BOHR_ANGSTROM

FORMATS = (".cube", ".npy")


_UMASK_LOCK = threading.Lock()


def new_file_mode() -> int:
    """The mode ``open`` gives a new file under this process's umask: ``0o666 & ~umask``."""
    try:
        with open("/proc/self/status") as fh:  # Linux: reading it changes nothing
            umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        with _UMASK_LOCK:  # elsewhere: the umask is read by setting it, and set back at once
            umask = os.umask(0o077)
            os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w"):
    """Open a temporary file beside ``path``; rename it to ``path`` only on success. The file
    gets :func:`new_file_mode` (the temporary file's own mode is 0600)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _label(path: Path, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def _check_writable_folder(folder: Path, label: str) -> None:
    """Make ``folder`` if missing and try writing a file in it (``os.access`` says yes to root
    even where nothing can be written, e.g. ``/proc``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rhosr-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = next((p for p in (folder, *folder.parents) if p.is_dir()), folder)
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileNotFoundError):  # /proc: a folder that takes no new entries
            reason = "it takes no new files or folders"
        raise InputError(f"{label}: cannot write in {where} ({reason})") from None


def prepare_output(path: str | os.PathLike | None, suffixes: tuple[str, ...] | None = None,
                   flag: str | None = None) -> None:
    """Check an output file's path before any work is done: a known suffix (when ``suffixes``
    are given), not a folder, and a folder that is made if missing and can be written in.
    ``None`` (an output not asked for) passes. ``flag`` (``-o``, ``--json``) names the option in
    the error."""
    if path is None:
        return
    path = Path(path)
    label = _label(path, flag)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(f"{label}: unknown output format; use one of {', '.join(suffixes)}")
    if path.is_dir():
        raise InputError(f"{label}: is a folder; give a file name")
    for parent in (path.parent, *path.parent.parents):  # the nearest one that exists
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{label}: {parent} is not a folder")
            break
    _check_writable_folder(path.parent, label)


def prepare_output_folder(path: str | os.PathLike, flag: str | None = "-o") -> Path:
    """Make an output folder before any work and check that it can be written in; a file
    standing at ``path`` is an error."""
    path = Path(path)
    label = _label(path, flag)
    if path.exists() and not path.is_dir():
        raise InputError(f"{label}: exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{label}: {parent} is not a folder")
            break
    _check_writable_folder(path, label)
    return path


def write_density(path: str | os.PathLike, atoms: Atoms, rho: np.ndarray) -> None:
    """Write ``rho`` (e/Bohr^3, axes x, y, z) as ``.cube`` (with ``atoms`` and their cell, in
    Angstrom, box frame) or ``.npy`` (array only), chosen by the suffix. Cube files are ASE's
    layout, written by :mod:`rhosr.cube_text` (the same bytes, ~4x faster)."""
    from rhosr import __version__
    from rhosr.cube_text import write_cube

    rho = np.asarray(rho, dtype=float)
    if rho.ndim != 3:
        raise ValueError(f"a density must be a 3D array (x, y, z), got shape {rho.shape}")
    suffix = Path(path).suffix.lower()
    if suffix == ".cube":
        with atomic_write(path, "wb") as fh:
            write_cube(fh, atoms.numbers, atoms.positions, np.asarray(atoms.cell), rho,
                       f"Cube file from rhosr {__version__}: electron density (e/Bohr^3)")
    elif suffix == ".npy":
        with atomic_write(path, "wb") as fh:
            np.save(fh, rho)
    else:
        raise InputError(f"{path}: unknown output format; use one of {', '.join(FORMATS)}")


@dataclass
class CubeDensity:
    """A density read from a cube file: atoms (Angstrom), rho (e/Bohr^3), voxel volume (Bohr^3)."""

    atoms: Atoms
    rho: np.ndarray
    voxel_volume: float

    @property
    def integral(self) -> float:
        """Electrons in the box: ``sum(rho) * voxel_volume``."""
        return float(self.rho.sum() * self.voxel_volume)


def read_cube(path: str | os.PathLike) -> CubeDensity:
    """Read a cube file written by rhosr (or any orthorhombic, axis-aligned cube).

    Validated as it is read, so a damaged file is a one-line error naming it, never a wrong
    number later: a header with positive mesh counts and finite, axis-aligned, non-zero voxel
    vectors; exactly as many values as the counts announce (a truncated file says how many
    are missing); finite atoms and values. The atoms are returned in the box frame (their
    positions minus the cube's origin), where grid point ``(i, j, k)`` is at
    ``(i, j, k) * spacing``."""
    from ase.io.cube import read_cube as ase_read_cube

    path = str(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a cube file")
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable cube file ({_reason(exc)})") from None
    lines = text.splitlines()
    natoms, counts = _check_cube_header(path, lines)
    n_values = sum(len(line.split()) for line in lines[6 + natoms:])
    expected = int(np.prod(counts))
    if n_values != expected:
        what = "truncated" if n_values < expected else "damaged"
        raise InputError(f"{path}: {what}: the header announces {' x '.join(map(str, counts))} = "
                         f"{expected} values, the file holds {n_values}")
    try:
        content = ase_read_cube(io.StringIO(text))
    except Exception as exc:
        raise InputError(f"{path}: not a readable cube file ({_reason(exc)})") from None
    rho = np.asarray(content["data"], dtype=float)
    if rho.ndim != 3:
        raise InputError(f"{path}: holds {rho.ndim}D data; a density is one value per grid point")
    if not np.all(np.isfinite(rho)):
        bad = int(np.count_nonzero(~np.isfinite(rho)))
        raise InputError(f"{path}: holds {bad} NaN or infinite values")
    atoms = content["atoms"]
    atoms.set_positions(atoms.get_positions() - np.asarray(content["origin"]))
    spacing = np.asarray(content["spacing"]) / BOHR_ANGSTROM  # voxel vectors in Bohr
    voxel_volume = abs(float(np.linalg.det(spacing)))
    return CubeDensity(atoms, rho, voxel_volume)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _check_cube_header(path: str, lines: list[str]) -> tuple[int, tuple[int, int, int]]:
    """Atom count and mesh counts of a cube file's header, checked (see :func:`read_cube`)."""

    def numbers(index: int, what: str, size: int) -> list[float]:
        try:
            fields = [float(v) for v in lines[index].split()[:size]]
        except (IndexError, ValueError):
            fields = []
        if len(fields) < size:
            raise InputError(f"{path}: not a readable cube file (line {index + 1} should hold {what})")
        if not all(np.isfinite(fields)):
            raise InputError(f"{path}: line {index + 1} ({what}) holds NaN or infinite numbers")
        return fields

    first = numbers(2, "the atom count and the origin", 4)
    natoms = first[0]
    if natoms != int(natoms) or natoms == 0 or len(lines[2].split()) > 4:
        raise InputError(f"{path}: line 3 should give the number of atoms and the origin "
                         "(orbital or multi-value cubes are not densities)")
    if natoms < 0:
        raise InputError(f"{path}: a negative atom count marks an orbital cube, not a density")
    natoms = int(natoms)
    counts, vectors = [], []
    for axis in range(3):
        n, *vector = numbers(3 + axis, f"the point count and voxel vector of axis {'xyz'[axis]}", 4)
        if n != int(n) or n < 1:
            raise InputError(f"{path}: axis {'xyz'[axis]} has {n:g} points; a count must be a "
                             "positive integer (Angstrom-unit cubes with negative counts are not "
                             "supported)")
        counts.append(int(n))
        vectors.append(vector)
    vectors = np.asarray(vectors)
    diagonal = np.diag(vectors)
    if np.any(diagonal <= 0) or np.any(np.abs(vectors - np.diag(np.diag(vectors))) > 1e-6 * diagonal.max()):
        raise InputError(f"{path}: voxel vectors {vectors.tolist()} are not an orthorhombic, "
                         "axis-aligned mesh with non-zero steps")
    for i in range(natoms):
        z = numbers(6 + i, f"atom {i + 1}: number, charge, x, y, z", 5)[0]
        if z != int(z) or not 1 <= z <= 118:
            raise InputError(f"{path}: atom {i + 1} has atomic number {z:g}")
    return natoms, (counts[0], counts[1], counts[2])


@dataclass
class ArrayDensity:
    """A density read from a ``.npy`` file: the array only (e/Bohr^3, axes x, y, z, or flat in
    C order as the authors publish ``rho_22.npy``: see :meth:`on_mesh`); its box, atoms and
    voxel volume are not in the file."""

    rho: np.ndarray
    atoms: None = None
    voxel_volume: None = None

    def on_mesh(self, mesh, path: str | os.PathLike) -> ArrayDensity:
        """This density as a 3D array on ``mesh`` (a flat array is reshaped in C order)."""
        mesh = tuple(int(n) for n in mesh)
        if self.rho.shape == mesh:
            return self
        if self.rho.ndim == 1 and self.rho.size == int(np.prod(mesh)):
            return ArrayDensity(self.rho.reshape(mesh))
        raise InputError(f"{path}: its array {self.rho.shape} does not fit the mesh {mesh}")


def read_density_file(path: str | os.PathLike) -> CubeDensity | ArrayDensity:
    """A cube file (with atoms and box, see :func:`read_cube`) or a ``.npy`` array, chosen by
    the suffix. A ``.npy`` density is validated before its data is read: a float array, 3D
    (x, y, z) or flat, not empty, as many bytes as its header announces (a truncated file says
    so), then finite values."""
    if Path(path).suffix.lower() != ".npy":
        return read_cube(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a .npy file")
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version} (rhosr reads 1.0 and 2.0)")
            shape, _, dtype = read_header(fh)
            offset = fh.tell()
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy file ({_reason(exc)})") from None
    if len(shape) not in (1, 3) or dtype.kind != "f" or dtype.hasobject:
        raise InputError(f"{path}: a density must be a 3D (x, y, z) or flat float array, "
                         f"got {dtype} {shape}")
    if math.prod(shape) == 0:
        raise InputError(f"{path}: holds an empty array {shape}")
    expected = math.prod(shape) * dtype.itemsize
    held = os.path.getsize(path) - offset
    if held != expected:
        raise InputError(f"{path}: {'truncated' if held < expected else 'damaged'}: its header "
                         f"announces {dtype} {shape} = {expected} bytes of data, the file holds {held}")
    try:
        rho = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy file ({_reason(exc)})") from None
    if not np.all(np.isfinite(rho)):
        bad = int(np.count_nonzero(~np.isfinite(rho)))
        raise InputError(f"{path}: holds {bad} NaN or infinite values")
    return ArrayDensity(np.asarray(rho, dtype=float))
