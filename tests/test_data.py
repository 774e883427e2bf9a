"""Rotations keep input and label aligned: a rotated coarse SAD is the SAD of the rotated
molecule on its own coarse grid, and the fine grid rotates with it (no one-voxel slide)."""

import numpy as np
import pytest
import torch
from ase import Atoms

from rhosr.data import ROTATIONS, rotate_grid, rotate_positions
from rhosr.grid import BOHR_ANGSTROM, Grid, place_in_box
from rhosr.molecule import Molecule, read_molecule
from rhosr.sad import sad_density


def test_there_are_24_distinct_proper_rotations():
    assert len(ROTATIONS) == 24
    x = torch.arange(2 * 3 * 4.0).view(2, 3, 4)
    outs = set()
    for perm, signs in ROTATIONS:
        y = rotate_grid(x, perm, signs)
        outs.add((tuple(y.shape), tuple(y.flatten().tolist())))
    assert len(outs) == 24


@pytest.fixture(scope="module")
def water_in_box():
    return place_in_box(read_molecule("qm9:3"))


@pytest.mark.parametrize("rotation", [ROTATIONS[i] for i in (1, 5, 13, 22)])
def test_rotated_input_equals_sad_of_rotated_molecule(water_in_box, rotation):
    mol, grid = water_in_box
    perm, signs = rotation
    positions = mol.positions_angstrom / BOHR_ANGSTROM
    new_pos, new_lengths = rotate_positions(positions, grid.lengths, perm, signs)
    new_grid = Grid(new_lengths, tuple(grid.coarse_mesh[p] for p in perm), grid.upscale)
    rotated = Molecule(Atoms(mol.symbols, new_pos * BOHR_ANGSTROM))
    for which in ("coarse", "fine"):
        expected = sad_density(rotated, new_grid, which)
        got = rotate_grid(sad_density(mol, grid, which), perm, signs)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_flip_would_misalign_fine_and_coarse(water_in_box):
    """The pitfall the rotation avoids: torch.flip slides the fine grid by one voxel."""
    mol, grid = water_in_box
    coarse = torch.as_tensor(sad_density(mol, grid, "coarse"))
    fine = torch.as_tensor(sad_density(mol, grid, "fine"))
    perm, signs = (0, 1, 2), (-1, -1, 1)
    fine_rotated, coarse_rotated = rotate_grid(fine, perm, signs), rotate_grid(coarse, perm, signs)
    torch.testing.assert_close(fine_rotated[::2, ::2, ::2], coarse_rotated)
    flipped = torch.flip(fine, (0, 1))[::2, ::2, ::2]
    assert not torch.allclose(flipped, torch.flip(coarse, (0, 1)))
