"""Cube files round-trip; writes are atomic."""

import numpy as np
import pytest

from rhosr.errors import InputError
from rhosr.grid import place_in_box
from rhosr.io import read_cube, write_density
from rhosr.molecule import read_molecule
from rhosr.sad import sad_density


def test_cube_roundtrip(tmp_path):
    placed, grid = place_in_box(read_molecule("qm9:3"))
    rho = sad_density(placed, grid, "coarse")
    path = tmp_path / "sad.cube"
    write_density(path, placed.atoms, rho)
    cube = read_cube(path)
    assert cube.rho.shape == grid.coarse_mesh
    np.testing.assert_allclose(cube.rho, rho, rtol=1e-5, atol=1e-12)  # cube text keeps 6 digits
    assert cube.voxel_volume == pytest.approx(grid.voxel_volume("coarse"), rel=1e-6)
    np.testing.assert_allclose(cube.atoms.get_positions(), placed.positions_angstrom, atol=1e-5)
    np.testing.assert_allclose(cube.atoms.cell.lengths(), grid.lengths_angstrom, atol=1e-5)
    assert cube.integral == pytest.approx(rho.sum() * grid.voxel_volume("coarse"), rel=1e-6)


def test_cube_bytes_are_ases(tmp_path, monkeypatch):
    """rhosr's cube writer gives byte for byte what ASE's write_cube gives, on a density and on
    values that exercise printf's %e: signs, -0, rounding carries and near-ties, powers of ten,
    three-digit exponents, non-finite values."""
    from ase.io.cube import write_cube as ase_write_cube

    from rhosr.cube_text import format_e, write_cube

    placed, grid = place_in_box(read_molecule("qm9:3"))
    rho = sad_density(placed, grid, "coarse")
    rho[0, 0, :2] = 0.0
    with open(tmp_path / "ase.cube", "w") as fh:
        ase_write_cube(fh, placed.atoms, data=rho, comment="same")
    with open(tmp_path / "rhosr.cube", "wb") as fh:
        write_cube(fh, placed.atoms.numbers, placed.atoms.positions, np.asarray(placed.atoms.cell), rho,
                   "same")
    assert (tmp_path / "ase.cube").read_bytes() == (tmp_path / "rhosr.cube").read_bytes()
    rng = np.random.default_rng(0)
    awkward = [0.0, -0.0, 1.0, 10.0, 1000.0, 1e-3, 9.9999995, 9.99999949999, 0.5, 9.9999995e-5,
               999999.95, 1e99, 1e-99, 1e100, 1e-100, 1e-300, 5e-324, np.nan, np.inf, -np.inf]
    values = np.concatenate([rng.lognormal(-5, 4, 20000), -rng.lognormal(0, 3, 200), awkward])
    assert format_e(values) == b"\n".join(b"%e" % x for x in values)
    assert format_e(np.array([])) == b""
    # no negative value: the lines printf formats are patched in place where they are 13 bytes
    positive = np.concatenate([rng.lognormal(-5, 4, 20000), [0.0, 9.9999995, 0.5, 1.0000005, 1e-100, 1e99,
                                                            9.99999996e98, 2.5e-7, np.inf, np.nan]])
    assert format_e(positive) == b"\n".join(b"%e" % x for x in positive)
    ties = np.array([2.5e-7, 1.0000005])  # printf rounds these, in place of the 13-byte lines
    assert format_e(ties) == b"%e\n%e" % tuple(ties)
    import rhosr.cube_text

    monkeypatch.setattr(rhosr.cube_text, "CHUNK", 997)  # chunk boundaries, slow values in later chunks
    for chunked in (values, positive):
        assert format_e(chunked) == b"\n".join(b"%e" % x for x in chunked)


def test_npy_output(tmp_path):
    placed, grid = place_in_box(read_molecule("qm9:3"))
    rho = sad_density(placed, grid, "coarse")
    write_density(tmp_path / "sad.npy", placed.atoms, rho)
    np.testing.assert_array_equal(np.load(tmp_path / "sad.npy"), rho)


def test_failed_write_leaves_nothing(tmp_path):
    placed, _ = place_in_box(read_molecule("qm9:3"))
    with pytest.raises(ValueError):
        write_density(tmp_path / "bad.cube", placed.atoms, np.zeros((2, 2)))  # not 3D
    with pytest.raises(KeyboardInterrupt):  # interrupted mid-write: no file, no temporary
        write_density(tmp_path / "x.cube", _Interrupting(), np.zeros((2, 2, 2)))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="unknown output format"):
        write_density(tmp_path / "x.txt", placed.atoms, np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="does not exist"):
        write_density(tmp_path / "nowhere" / "x.cube", placed.atoms, np.zeros((2, 2, 2)))


class _Interrupting:
    """Stands in for ASE atoms and raises KeyboardInterrupt once the cube file is open."""

    @property
    def numbers(self):
        raise KeyboardInterrupt


def test_read_cube_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_cube(tmp_path / "missing.cube")
    bad = tmp_path / "bad.cube"
    bad.write_text("not a cube\n")
    with pytest.raises(InputError, match="not a readable cube"):
        read_cube(bad)
