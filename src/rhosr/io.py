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
    Angstrom, box frame) or ``.npy`` (array only), chosen by the suffix."""
    from ase.io.cube import write_cube

    rho = np.asarray(rho, dtype=float)
    if rho.ndim != 3:
        raise ValueError(f"a density must be a 3D array (x, y, z), got shape {rho.shape}")
    suffix = Path(path).suffix.lower()
    if suffix == ".cube":
        with atomic_write(path) as fh:
            write_cube(fh, atoms, data=rho)
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
    """Read a cube file written by rhosr (or any orthorhombic, axis-aligned cube)."""
    from ase.io.cube import read_cube as ase_read_cube

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        with open(path) as fh:
            content = ase_read_cube(fh)
    except Exception as exc:
        raise InputError(f"{path}: not a readable cube file ({type(exc).__name__}: {exc})") from None
    rho = np.asarray(content["data"], dtype=float)
    spacing = np.asarray(content["spacing"]) / BOHR_ANGSTROM  # voxel vectors in Bohr
    voxel_volume = abs(float(np.linalg.det(spacing)))
    return CubeDensity(content["atoms"], rho, voxel_volume)


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
    """A cube file (with atoms and box) or a ``.npy`` array, chosen by the suffix."""
    if Path(path).suffix.lower() != ".npy":
        return read_cube(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        rho = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc})") from None
    if rho.ndim not in (1, 3) or not np.issubdtype(rho.dtype, np.floating):
        raise InputError(f"{path}: a density must be a 3D (x, y, z) or flat float array, "
                         f"got {rho.dtype} {rho.shape}")
    if not np.all(np.isfinite(rho)):
        raise InputError(f"{path}: holds NaN or infinite values")
    return ArrayDensity(np.asarray(rho, dtype=float))
