"""Property-based fuzzing of the readers of user files (hypothesis): whatever the bytes, the
structure reader, the cube reader and the .npy reader return a valid object or raise
InputError (a one-line message naming the file), never another exception."""

import io
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rhosr.errors import InputError
from rhosr.io import ArrayDensity, CubeDensity, read_cube, read_density_file, write_density
from rhosr.molecule import Molecule, read_molecule

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WATER = b"3\nwater\nO 0.000 0.000 0.117\nH 0.000 0.757 -0.469\nH 0.000 -0.757 -0.469\n"
TOKENS = [b"nan", b"inf", b"-inf", b"-1", b"0", b"1e400", b"999999999", b"1e-30", b"X", b"", b" ", b"\n",
          b"\x00", b"\xff", b"3", b"-2", b"0.5", b"Lattice=\"1 0 0 0 1 0 0 0 1\"", b"Pu", b"e"]


def _cube_bytes() -> bytes:
    from ase import Atoms

    atoms = Atoms("H2", [(1.0, 1.0, 1.0), (1.0, 1.0, 1.74)], cell=[2.0, 2.0, 2.74], pbc=True)
    with tempfile.TemporaryDirectory() as d:
        write_density(Path(d) / "seed.cube", atoms, np.random.default_rng(0).random((2, 3, 4)))
        return (Path(d) / "seed.cube").read_bytes()


CUBE = _cube_bytes()


@st.composite
def mutated(draw, original: bytes):
    """``original`` with a few edits: bytes replaced, inserted or deleted, whole tokens swapped
    for troublesome ones (NaN, huge counts, empty), lines dropped or duplicated; or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["byte", "insert", "delete", "token", "line", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "byte" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "token":
            words = re.split(rb"(\s+)", bytes(data))  # words at even indexes, whitespace between
            i = 2 * draw(st.integers(0, len(words) // 2))
            words[i] = draw(st.sampled_from(TOKENS))
            data = bytearray(b"".join(words))
        elif kind == "line":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if draw(st.booleans()):
                del lines[i]
            else:
                lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
        else:
            del data[at:]
    return bytes(data)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=mutated(WATER))
def test_read_molecule_fuzzed_xyz_is_a_molecule_or_input_error(folder, data):
    path = _write(folder, "fuzz.xyz", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mol = read_molecule(str(path))
        except InputError:
            return
    assert isinstance(mol, Molecule) and len(mol.atoms) > 0
    assert np.all(np.isfinite(mol.positions_angstrom)) and mol.n_valence > 0


def _cube_with(line: int, text: bytes) -> bytes:
    """The seed cube with line ``line`` (0-based) replaced: lines 3-5 give the axes, values
    start at line 8 (ASE writes one per line)."""
    lines = CUBE.split(b"\n")
    lines[line] = text
    return b"\n".join(lines)


@FUZZ
@given(data=mutated(CUBE))
@example(data=_cube_with(8, b"nan"))  # values the reader accepted before it checked them
@example(data=_cube_with(13, b"-inf"))
@example(data=_cube_with(3, b"   -2    1.889726    0.000000    0.000000"))  # a negative count
@example(data=CUBE[: len(CUBE) // 2])
def test_read_cube_fuzzed_is_a_density_or_input_error(folder, data):
    path = _write(folder, "fuzz.cube", data)
    try:
        cube = read_cube(path)
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert isinstance(cube, CubeDensity) and cube.rho.ndim == 3 and np.all(np.isfinite(cube.rho))
    assert cube.voxel_volume > 0 and np.all(np.isfinite(cube.atoms.get_positions()))


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


NPY = _npy_bytes(np.random.default_rng(0).random((2, 3, 4)))


@FUZZ
@given(data=mutated(NPY))
@example(data=NPY.replace(b"(2, 3, 4)", b"(2, 3, 9)"))  # the header promises more than the file holds
@example(data=NPY[:-8])
def test_read_density_file_fuzzed_npy_is_an_array_or_input_error(folder, data):
    path = _write(folder, "fuzz.npy", data)
    try:
        density = read_density_file(path)
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert isinstance(density, ArrayDensity) and density.rho.ndim in (1, 3) and density.rho.size > 0
    assert np.all(np.isfinite(density.rho))


@FUZZ
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=4),
    dtype=st.sampled_from(["f8", "f4", "f2", "i4", "u1", "c16", "b1", ">f8"]),
    fill=st.sampled_from([0.5, -1.0, np.nan, np.inf, 1e300]),
)
def test_read_density_file_any_saved_array_is_a_density_or_input_error(folder, shape, dtype, fill):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = np.full(shape, fill).astype(dtype)
    path = _write(folder, "array.npy", _npy_bytes(array))
    try:
        density = read_density_file(path)
    except InputError:
        assert not (array.ndim in (1, 3) and array.size and array.dtype.kind == "f"
                    and np.all(np.isfinite(array)))
        return
    assert np.array_equal(density.rho, array.astype(float))


def test_fuzz_seeds_are_valid_files(folder):
    """The unmutated seeds read back: the fuzzing starts from valid files."""
    assert len(read_molecule(str(_write(folder, "seed.xyz", WATER))).atoms) == 3
    assert read_cube(_write(folder, "seed.cube", CUBE)).rho.shape == (2, 3, 4)
    assert read_density_file(_write(folder, "seed.npy", NPY)).rho.shape == (2, 3, 4)
    write_density(folder / "again.npy", None, np.ones((2, 2, 2)))
    assert read_density_file(folder / "again.npy").rho.shape == (2, 2, 2)
