"""The SAD input: exact against PySCF's own periodic evaluation, normalised, invariant."""

import numpy as np
import pytest
import scipy.linalg

from rhosr.dft import build_cell
from rhosr.grid import place_in_box
from rhosr.molecule import read_molecule
from rhosr.sad import atomic_density_matrix, sad_basis, sad_density


@pytest.fixture(scope="module")
def water():
    return place_in_box(read_molecule("qm9:3"))


def _pyscf_reference_sad(mol, grid, which, atrocious):
    """The recipe written the slow, obvious way: block-diagonal D in the periodic cell,
    Tr(DS) = N_e, rho = chi D chi with PySCF's lattice-summed orbitals at the grid points."""
    cell = build_cell(mol, grid)
    dm = scipy.linalg.block_diag(*[atomic_density_matrix(s, atrocious) for s in mol.symbols])
    dm *= mol.n_valence / np.einsum("ij,ji->", dm, cell.pbc_intor("int1e_ovlp"))
    ao = cell.pbc_eval_gto("GTOval", grid.points(which))
    return np.einsum("gi,ij,gj->g", ao, dm, ao).reshape(grid.mesh(which))


@pytest.mark.parametrize("atrocious", [False, True])
def test_sad_equals_pyscf_periodic_evaluation(water, atrocious):
    mol, grid = water
    rho = sad_density(mol, grid, "coarse", atrocious=atrocious)
    ref = _pyscf_reference_sad(mol, grid, "coarse", atrocious)
    # orbitals are cut where they fall below 1e-7 (sad.AO_CUTOFF)
    assert np.abs(rho - ref).max() < 1e-6 * ref.max()
    assert np.abs(rho - ref).sum() < 1e-6 * ref.sum()


def test_sad_integrates_to_electron_count(water):
    mol, grid = water
    fine = sad_density(mol, grid, "fine")
    assert fine.sum() * grid.voxel_volume("fine") == pytest.approx(mol.n_valence, rel=1e-6)
    # the coarse mesh (0.166 Angstrom) is a coarser quadrature of the same function
    coarse = sad_density(mol, grid, "coarse")
    assert coarse.sum() * grid.voxel_volume("coarse") == pytest.approx(mol.n_valence, rel=1e-4)


def test_sad_coarse_is_every_second_fine_point(water):
    mol, grid = water
    coarse, fine = sad_density(mol, grid, "coarse"), sad_density(mol, grid, "fine")
    np.testing.assert_allclose(coarse, fine[::2, ::2, ::2], rtol=1e-12, atol=1e-18)


def test_sad_translation_by_grid_steps_gives_same_array():
    mol = read_molecule("qm9:3")
    placed, grid = place_in_box(mol)
    moved = read_molecule("qm9:3")
    step = grid.spacing("coarse") * 0.52917721092
    moved.atoms.translate(step * np.array([3, -5, 7]))
    placed2, grid2 = place_in_box(moved)
    assert grid2 == grid
    np.testing.assert_allclose(sad_density(placed2, grid2), sad_density(placed, grid), atol=1e-12)


def test_sad_is_positive_and_charged_molecule_rescaled():
    mol = read_molecule("qm9:3", charge=1, spin=1)
    placed, grid = place_in_box(mol)
    rho = sad_density(placed, grid, "fine")
    assert rho.min() >= 0
    assert rho.sum() * grid.voxel_volume("fine") == pytest.approx(7, rel=1e-6)


def test_atrocious_basis_doubles_exponents():
    plain, doubled = sad_basis("C"), sad_basis("C", atrocious=True)
    for shell_a, shell_b in zip(plain, doubled):
        for prim_a, prim_b in zip(shell_a[1:], shell_b[1:]):
            assert prim_b[0] == 2 * prim_a[0] and prim_b[1:] == prim_a[1:]


def test_sad_many_atoms_in_small_box_uses_images():
    """A molecule larger than the orbital radius on one axis: windows wrap more than once."""
    mol = read_molecule("qm9:1")
    placed, grid = _tight_box(mol, margin_angstrom=0.5)  # below the CLI's minimum margin on purpose
    rho = sad_density(placed, grid, "coarse")
    ref = _pyscf_reference_sad(placed, grid, "coarse", False)
    # orbitals are cut where they fall below 1e-7 (sad.AO_CUTOFF)
    assert np.abs(rho - ref).max() < 1e-6 * ref.max()
    assert np.abs(rho - ref).sum() < 1e-6 * ref.sum()


def _tight_box(mol, margin_angstrom):
    """The authors' box rule with a margin smaller than :func:`place_in_box` accepts."""
    from dataclasses import replace

    from rhosr.grid import BOHR_ANGSTROM, Grid, coarse_spacing

    pos = mol.positions_angstrom
    step = coarse_spacing(2) * BOHR_ANGSTROM
    n = np.ceil((np.ptp(pos, axis=0) + margin_angstrom) / step).astype(int)
    atoms = mol.atoms.copy()
    atoms.set_positions(pos - pos.mean(axis=0) + n * step / 2)
    grid = Grid(tuple(float(v) for v in n * step / BOHR_ANGSTROM), tuple(int(v) for v in n), 2)
    return replace(mol, atoms=atoms), grid


@pytest.mark.parametrize("atrocious", [False, True])
def test_sad_fine_is_the_exact_fine_sad_near_enough(atrocious):
    """sad_fine (interpolated coarse SAD + exact values within a radius of each nucleus) is
    < 0.02% Err_rho from the exact fine-mesh SAD at the default radius, closer at a larger one
    (what remains is the interpolation of the cross terms between an atom and its own periodic
    images), and equal to the coarse SAD at the coarse points."""
    from rhosr.metrics import err_rho
    from rhosr.sad import sad_fine

    mol, grid = place_in_box(read_molecule("qm9:21976"))  # C3H2N2O3, box 114 x 92 x 50 fine
    exact = sad_density(mol, grid, "fine", atrocious)
    fast = sad_fine(mol, grid, atrocious)
    assert fast.dtype == np.float32 and fast.shape == grid.fine_mesh
    dv, n_e = grid.voxel_volume("fine"), mol.n_valence
    err = err_rho(fast, exact, dv, n_e)
    assert 1e-4 < err < 0.02
    np.testing.assert_allclose(fast[::2, ::2, ::2], exact[::2, ::2, ::2], rtol=1e-4, atol=1e-6 * exact.max())
    assert err_rho(sad_fine(mol, grid, atrocious, radius=6.0), exact, dv, n_e) < err


@pytest.mark.parametrize("shape, up", [((5, 6, 7), 2), ((4, 3, 5), 4), ((1, 2, 3), 2)])
def test_fine_sad_interpolation_equals_the_sad_linear_base_without_torch(shape, up):
    """``sad_fine``'s NumPy interpolation is the ``sad_linear`` base's (PyTorch), exactly."""
    import numpy as np
    import torch

    from rhosr.layers import upsample_linear
    from rhosr.sad import _interpolate_linear

    a = np.random.default_rng(0).random(shape)
    ref = upsample_linear(torch.as_tensor(a)[None, None], int(np.log2(up)))[0, 0].numpy()
    np.testing.assert_array_equal(_interpolate_linear(a, up), ref)
    cut = tuple(slice(0, up * (n - 1) + 1) for n in shape)
    np.testing.assert_array_equal(_interpolate_linear(a, up, periodic=False), ref[cut])


def test_recent_sad_is_remembered_as_a_copy(water):
    """A prediction asks for a molecule's coarse SAD twice (its inputs, its base): the second call
    is the remembered array's copy, equal to a fresh computation and safe to change; another
    molecule, mesh or channel split is computed anew."""
    import rhosr.sad as sad_module

    mol, grid = water
    sad_module._RECENT_SAD.clear()
    first = sad_module.sad_channels(mol, grid, "coarse")
    first *= 2.0  # a caller changing its array changes nothing remembered
    again = sad_module.sad_channels(mol, grid, "coarse")
    fresh = sad_module._sad_channels(mol, grid, "coarse", False, None, None)
    np.testing.assert_array_equal(again, fresh)
    assert len(sad_module._RECENT_SAD) == 1
    split = sad_module.sad_channels(mol, grid, "coarse", elements=("H", "O"))
    np.testing.assert_allclose(split.sum(axis=0), fresh[0], rtol=1e-12, atol=1e-15)
    assert len(sad_module._RECENT_SAD) == 2
    for _ in range(sad_module.RECENT_SAD_ENTRIES + 2):  # the oldest go first
        sad_module.sad_channels(mol, grid, "coarse", channel_of={"H": 0, "O": 0}, n_channels=_ + 1)
    assert len(sad_module._RECENT_SAD) == sad_module.RECENT_SAD_ENTRIES
