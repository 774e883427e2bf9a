"""Box and mesh rule, pinned on the authors' published boxes (mesh shapes from their files)."""

import numpy as np
import pytest

from rhosr.grid import Grid, box_for_positions, coarse_spacing, place_in_box
from rhosr.molecule import read_molecule

# fine mesh shapes of the authors' QM9 samples (grid_sizes_22.dat in their archive)
AUTHORS_MESHES = {1: (68, 66, 70), 2: (66, 66, 60), 36784: (124, 120, 86), 107770: (98, 108, 108)}


@pytest.mark.parametrize("index, mesh", AUTHORS_MESHES.items())
def test_box_rule_matches_authors_meshes(index, mesh):
    mol = read_molecule(f"qm9:{index}")
    placed, grid = place_in_box(mol)
    assert grid.fine_mesh == mesh
    # box = whole number of coarse steps minus 1e-4 Angstrom
    steps = (grid.lengths_angstrom + 1e-4) / (coarse_spacing(2) * 0.52917721092)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    # the plain mean of the positions sits at the box centre
    np.testing.assert_allclose(placed.positions_angstrom.mean(axis=0), grid.lengths_angstrom / 2)


def test_box_ch4_lengths_pinned():
    """CH4's box from the authors' box.npy (Angstrom)."""
    _, grid = place_in_box(read_molecule("qm9:1"))
    np.testing.assert_allclose(grid.lengths_angstrom, [5.65226141, 5.48601549, 5.81850733], atol=1e-7)


def test_box_x4_fine_mesh_is_multiple_of_four():
    _, grid = place_in_box(read_molecule("qm9:36784"), upscale=4)
    assert all(n % 4 == 0 for n in grid.fine_mesh)
    assert grid.fine_mesh == tuple(4 * n for n in grid.coarse_mesh)
    np.testing.assert_allclose(grid.spacing("fine"), 0.157, atol=0.001)


def test_box_margin_is_configurable():
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    small, _ = box_for_positions(pos, margin_angstrom=4.0)
    large, _ = box_for_positions(pos, margin_angstrom=6.0)
    assert all(b > a for a, b in zip(small.lengths, large.lengths))


def test_grid_points_order_and_roundtrip():
    grid = Grid((3.0, 4.0, 5.0), (3, 4, 5), upscale=2)
    pts = grid.points("coarse").reshape(3, 4, 5, 3)
    np.testing.assert_allclose(pts[1, 2, 3], [1.0, 2.0, 3.0])  # (i/nx*Lx, j/ny*Ly, k/nz*Lz)
    assert Grid.from_dict(grid.to_dict()) == grid
    assert grid.voxel_volume("fine") * 8 == pytest.approx(grid.voxel_volume("coarse"))


def test_grid_bohr_is_pyscfs_and_rotations_moved_here():
    """grid.py writes PySCF's Bohr out (so it needs no PySCF); the rotations live in rhosr.grid
    and rhosr.data still re-exports them for older imports."""
    from pyscf.lib.parameters import BOHR

    import rhosr.data
    import rhosr.grid

    assert rhosr.grid.BOHR_ANGSTROM == BOHR
    assert rhosr.data.ROTATIONS is rhosr.grid.ROTATIONS and rhosr.data.rotate_grid is rhosr.grid.rotate_grid
    assert len(rhosr.grid.ROTATIONS) == 24
