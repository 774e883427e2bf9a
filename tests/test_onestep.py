"""One-step DFT: fed the converged SCF density it must return the SCF energy and orbitals."""

import numpy as np
import pytest

from rhosr.config import get_preset
from rhosr.dft.density import density_on_mesh
from rhosr.dft.onestep import make_fine_mesh_scf, one_step
from rhosr.errors import InputError
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


@pytest.fixture(scope="module")
def sad_cube(tmp_path_factory):
    from rhosr.cli import main

    path = tmp_path_factory.mktemp("cubes") / "water_sad.cube"
    assert main(["sad", "qm9:3", "--mesh", "fine", "-o", str(path)]) == 0
    return path


def test_onestep_cli_from_a_cube_writes_json_and_molden(sad_cube, tmp_path, run_cli):
    import json

    code, out, _ = run_cli("onestep", "qm9:3", "--density", sad_cube, "--json", tmp_path / "r.json",
                           "--molden", tmp_path / "r.molden", "--quiet")
    assert code == 0, out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["gap"] == pytest.approx(result["lumo"] - result["homo"])
    assert result["energy_ks"] < -17.0
    assert "[MO]" in (tmp_path / "r.molden").read_text()
    assert "E (Harris-Foulkes" in out


def test_onestep_from_a_flat_npy_equals_the_cube(sad_cube, tmp_path, run_cli):
    import json

    from rhosr.io import read_cube

    np.save(tmp_path / "sad.npy", read_cube(sad_cube).rho.ravel())  # C order, as the authors'
    results = []
    for density in (sad_cube, tmp_path / "sad.npy"):
        code, _, err = run_cli("onestep", "qm9:3", "--density", density, "--json", tmp_path / "r.json",
                               "--quiet")
        assert code == 0, err
        results.append(json.loads((tmp_path / "r.json").read_text()))
    for key in ("energy_ks", "energy_harris", "homo", "lumo"):
        assert results[1][key] == pytest.approx(results[0][key], abs=1e-7)
    np.save(tmp_path / "short.npy", np.zeros(100))
    code, _, err = run_cli("onestep", "qm9:3", "--density", tmp_path / "short.npy")
    assert code == 2 and "does not fit the mesh" in err


def _write_variant(sad_cube, tmp_path, change, name):
    from rhosr.io import read_cube, write_density

    cube = read_cube(sad_cube)
    atoms, rho = change(cube.atoms.copy(), cube.rho.copy())
    write_density(tmp_path / name, atoms, rho)
    return tmp_path / name


def _negative(atoms, rho):
    rho[0, 0, 0] = -0.05 * rho.max()
    return atoms, rho


def _shifted(atoms, rho):
    atoms.translate((0.3, 0.0, 0.0))
    return atoms, rho


@pytest.mark.parametrize("change, message", [
    (lambda a, r: (a, 1.05 * r), "pass --renormalize"),
    (_negative, "negative values"),
    (lambda a, r: (a, r[:-2]), "not this molecule's"),
    (_shifted, "atoms are not this molecule's atoms"),
])
def test_onestep_refuses_a_wrong_density(sad_cube, tmp_path, run_cli, change, message):
    bad = _write_variant(sad_cube, tmp_path, change, "bad.cube")
    code, _, err = run_cli("onestep", "qm9:3", "--density", bad, "--json", tmp_path / "r.json")
    assert code == 2
    assert message in err.strip().splitlines()[-1]
    assert not (tmp_path / "r.json").exists()


def test_onestep_renormalizes_when_asked(sad_cube, tmp_path, run_cli):
    scaled = _write_variant(sad_cube, tmp_path, lambda a, r: (a, 1.05 * r), "scaled.cube")
    code, _, err = run_cli("onestep", "qm9:3", "--density", scaled, "--renormalize")
    assert code == 0 and "rescaled from 8.39" in err


def test_fourier_resample_is_exact_for_band_limited_densities():
    from rhosr.dft.guess import fourier_resample

    axes = np.meshgrid(*[np.arange(n) / n for n in (20, 24, 18)], indexing="ij")
    coarse_axes = np.meshgrid(*[np.arange(n) / n for n in (14, 16, 12)], indexing="ij")

    def f(x, y, z):
        return 1 + 0.5 * np.cos(2 * np.pi * x) * np.sin(4 * np.pi * y) + 0.2 * np.cos(6 * np.pi * z)

    np.testing.assert_allclose(fourier_resample(f(*axes), (14, 16, 12)), f(*coarse_axes), atol=1e-12)


def test_scf_from_the_model_guess_reaches_the_same_energy(tiny_model_dir, tmp_path, run_cli):
    import json

    results = {}
    for guess in ("model", "minao"):
        code, out, _ = run_cli("scf", "qm9:3", "--guess", guess, "--model", tiny_model_dir, "--preset",
                               "tiny", "--json", tmp_path / f"{guess}.json", "--quiet")
        assert code == 0, out
        results[guess] = json.loads((tmp_path / f"{guess}.json").read_text())
    assert results["model"]["converged"] and results["minao"]["converged"]
    assert results["model"]["energy"] == pytest.approx(results["minao"]["energy"], abs=1e-5)
    assert results["model"]["guess_seconds"] > 0 and results["minao"]["guess_seconds"] == 0


def test_model_guess_hands_its_core_hamiltonian_and_overlap_to_the_scf():
    """The guess computes h and S once; the SCF after it reuses them (same matrices)."""
    from rhosr.config import get_preset
    from rhosr.dft.guess import guess_from_density
    from rhosr.dft.label import make_scf, scf_cell

    placed, grid = place_in_box(read_molecule("qm9:3"), 2, 3.0)
    preset = get_preset("tiny")
    mf = make_scf(scf_cell(placed, grid, preset), preset)
    hcore, overlap = mf.get_hcore(), mf.get_ovlp()
    built = []
    for name in ("get_hcore", "get_ovlp"):
        method = getattr(mf, name)
        setattr(mf, name, lambda *a, _m=method, _n=name, **k: built.append(_n) or _m(*a, **k))
    rho = np.full(grid.fine_mesh, placed.n_valence / (grid.voxel_volume("fine") * np.prod(grid.fine_mesh)))
    dm0 = guess_from_density(mf, rho)
    assert sorted(built) == ["get_hcore", "get_ovlp"]  # once each, by the guess
    np.testing.assert_array_equal(mf.get_hcore(placed), hcore)
    np.testing.assert_array_equal(mf.get_ovlp(), overlap)
    assert sorted(built) == ["get_hcore", "get_ovlp"] and dm0.shape == hcore.shape


def test_scf_started_from_a_density_diagonalises_its_kohn_sham_matrix_first():
    """``start_from_density``: cycle 1 gives the one-step density matrix of the density (the
    one ``guess_from_density`` returns), PySCF never builds a potential for the stand-in ``dm0``,
    and the SCF converges to the energy it reaches from that density matrix."""
    from rhosr.dft.guess import guess_from_density, start_from_density
    from rhosr.dft.label import make_scf, scf_cell
    from rhosr.sad import sad_density

    placed, grid = place_in_box(read_molecule("qm9:3"), 2, 3.0)
    preset = get_preset("tiny")
    rho = sad_density(placed, grid, "fine")
    mf_dm = make_scf(scf_cell(placed, grid, preset), preset)
    one_step_dm = guess_from_density(mf_dm, rho)
    mf_dm.kernel(one_step_dm)

    mf = make_scf(scf_cell(placed, grid, preset), preset)
    dm0 = start_from_density(mf, rho)
    asked, first = [], []
    original = type(mf).get_veff

    def type_get_veff(self, cell=None, dm=None, *args, **kwargs):
        asked.append(dm is dm0)
        return original(self, cell, dm, *args, **kwargs)

    mf.callback = lambda envs: first.append(envs["dm"]) if envs["cycle"] == 0 else None
    try:
        type(mf).get_veff = type_get_veff
        mf.kernel(dm0)
    finally:
        type(mf).get_veff = original
    assert mf.converged and mf_dm.converged and asked and not any(asked)
    np.testing.assert_allclose(first[0], one_step_dm, atol=1e-10)
    assert mf.e_tot == pytest.approx(mf_dm.e_tot, abs=1e-6)
    assert "get_veff" not in vars(mf)  # PySCF's own again


def test_start_from_density_refuses_a_first_cycle_it_cannot_replace():
    from rhosr.dft.guess import start_from_density
    from rhosr.dft.label import make_scf, scf_cell

    placed, grid = place_in_box(read_molecule("qm9:3"), 2, 3.0)
    preset = get_preset("tiny")
    mf = make_scf(scf_cell(placed, grid, preset), preset)
    mf.level_shift = 0.2
    with pytest.raises(InputError, match="plain first cycle"):
        start_from_density(mf, np.zeros(grid.fine_mesh))


def test_density_fit_reproduces_a_density_in_the_auxiliary_basis():
    from rhosr.dft.density_fit import _aux_cell, fit_density
    from rhosr.metrics import err_rho

    placed, grid = place_in_box(read_molecule("qm9:3"), 2, 3.0)
    auxcell = _aux_cell(placed, grid, "gth-tzv2p", "gth-pbe")[1]
    coeff = np.random.default_rng(0).random(auxcell.nao_nr()) * 0.05
    chi = auxcell.pbc_eval_gto("GTOval", auxcell.get_uniform_grids(grid.fine_mesh))
    rho = (chi @ coeff).reshape(grid.fine_mesh)
    fitted, info = fit_density(placed, grid, rho)
    n_e = float(rho.sum() * grid.voxel_volume())
    assert err_rho(fitted, rho, grid.voxel_volume(), n_e) < 1e-3
    assert info["n_aux"] == auxcell.nao_nr()


def test_onestep_zeroes_shallow_negative_ringing_with_a_note(sad_cube, tmp_path, run_cli):
    def ringing(atoms, rho):
        rho[0, 0, :3] = -1e-5 * rho.max()
        return atoms, rho

    cube = _write_variant(sad_cube, tmp_path, ringing, "ringing.cube")
    code, _, err = run_cli("onestep", "qm9:3", "--density", cube)
    assert code == 0 and "set 3 slightly negative values" in err


def test_scf_started_from_an_exact_density_needs_few_cycles(water_scf):
    """The guess path (Fourier truncation to the SCF mesh, its Kohn-Sham matrix as the first
    Fock matrix) from the converged fine-mesh density: measured 5 cycles (the first diagonalises
    that matrix) against 7 from minao. Not 1: the SCF mesh
    (100 Hartree) has its own minimum, |g| ~ 1e-3 away, which bounds what any prediction saves."""
    from rhosr.commands.scf import run_scf

    placed, grid, mf_fine = water_scf
    rho = density_on_mesh(placed, grid, mf_fine.make_rdm1(), "multigrid")
    water = read_molecule("qm9:3")
    runs = {"density": run_scf(water, "density", "fast", density=(placed, grid, rho)),
            "minao": run_scf(water, "minao", "fast", margin=3.0)}  # the fixture's box
    assert all(r["converged"] for r in runs.values())
    assert runs["density"]["energy"] == pytest.approx(runs["minao"]["energy"], abs=1e-8)
    cycles = {guess: r["cycles"] for guess, r in runs.items()}
    with pytest.raises(InputError, match="needs the density"):
        run_scf(water, "density", "fast")
    assert cycles["density"] <= 5 and cycles["density"] <= cycles["minao"] - 2, cycles
