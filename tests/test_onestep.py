"""One-step DFT: fed the converged SCF density it must return the SCF energy and orbitals."""

import numpy as np
import pytest

from rhosr.config import get_preset
from rhosr.dft.density import density_on_mesh
from rhosr.dft.onestep import make_fine_mesh_scf, one_step
from rhosr.grid import place_in_box
from rhosr.molecule import read_molecule


@pytest.fixture(scope="module")
def water_scf():
    placed, grid = place_in_box(read_molecule("qm9:3"), 2, 3.0)
    mf = make_fine_mesh_scf(placed, grid, get_preset("fast").with_options(conv_tol=1e-11))
    mf.kernel()
    assert mf.converged
    return placed, grid, mf


def test_one_step_from_the_scf_density_returns_the_scf_energies(water_scf):
    placed, grid, mf = water_scf
    rho = density_on_mesh(placed, grid, mf.make_rdm1(), "multigrid")
    result = one_step(mf, rho)
    assert result.energy_ks == pytest.approx(mf.e_tot, abs=1e-6)
    assert result.energy_harris == pytest.approx(mf.e_tot, abs=1e-6)
    np.testing.assert_allclose(result.mo_energy, mf.mo_energy, atol=1e-6)
    assert result.electrons_in == pytest.approx(8.0, abs=1e-5)
    assert result.gap > 0


def test_one_step_from_the_sad_lies_above_the_scf_minimum(water_scf):
    from rhosr.sad import sad_density

    placed, grid, mf = water_scf
    result = one_step(mf, sad_density(placed, grid, "fine"))
    # the KS energy of any idempotent density matrix lies above the SCF minimum
    assert mf.e_tot + 1e-4 < result.energy_ks < mf.e_tot + 0.5
    assert abs(result.energy_harris - mf.e_tot) < 0.5
    assert np.abs(result.mo_energy[:4] - mf.mo_energy[:4]).max() > 1e-4
