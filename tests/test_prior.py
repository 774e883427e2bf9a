"""The fitted prior (rhosr.prior, base fitted_prior, rhosr fit-prior) and the training recipe keys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from tests.conftest import benchmark_module

from rhosr.errors import InputError
from rhosr.grid import place_in_box
from rhosr.model import build_model, model_config
from rhosr.molecule import read_molecule
from rhosr.prior import DEFAULT_EXPONENTS, PriorOptions, correction_channels, prior_density, sites
from rhosr.sad import sad_fine
from rhosr.train import TrainConfig

ELEMENTS = ("H", "O")
PRIOR_MODEL = {"inputs": ["sad"],
               "trunk": {"name": "srresnet", "num_feat": 4, "num_block": 1, "norm": "none"},
               "base": {"name": "fitted_prior", "elements": ["H", "O", "F"]}}


@pytest.fixture(scope="module")
def water():
    return place_in_box(read_molecule("qm9:3"))


def test_prior_zero_coefficients_is_the_fine_sad(water):
    mol, grid = water
    zero = np.zeros((len(ELEMENTS), len(DEFAULT_EXPONENTS)))
    rho = prior_density(mol, grid, "fine", PriorOptions(ELEMENTS, coefficients=zero.tolist()))
    assert rho.dtype == np.float32 and rho.shape == grid.fine_mesh
    np.testing.assert_allclose(rho, sad_fine(mol, grid), rtol=1e-6, atol=1e-9)


def test_prior_correction_is_gaussians_around_the_fitted_atoms(water):
    """One coefficient on hydrogen adds c * (pi/alpha)^(3/2) electrons per H atom (units:
    coefficients in e/Bohr^3, exponents in Bohr^-2), and equals the fitting design's channel."""
    mol, grid = water
    coeff = np.zeros((2, len(DEFAULT_EXPONENTS)))
    k, c = 3, 0.05
    coeff[0, k] = c
    options = PriorOptions(ELEMENTS, coefficients=coeff.tolist())
    rho = prior_density(mol, grid, "fine", options).astype(np.float64)
    added = rho - sad_fine(mol, grid)
    alpha = DEFAULT_EXPONENTS[k]
    assert added.sum() * grid.voxel_volume("fine") == pytest.approx(2 * c * (np.pi / alpha) ** 1.5, rel=1e-4)
    design = correction_channels(mol, grid, "fine", PriorOptions(ELEMENTS))
    assert design.shape == (2 * len(DEFAULT_EXPONENTS), *grid.fine_mesh)
    np.testing.assert_allclose(added, c * design[k], rtol=1e-4, atol=1e-7)
    assert design[len(DEFAULT_EXPONENTS):].any()  # oxygen's channels hold its atom


def test_prior_leaves_an_unfitted_element_at_its_sad():
    """HF with a prior fitted for H only: the correction is hydrogen's alone (F keeps its SAD)."""
    from ase import Atoms

    from rhosr.molecule import Molecule

    mol, grid = place_in_box(Molecule(Atoms("HF", [(0, 0, 0), (0, 0, 0.92)]), name="HF"))
    coeff = np.full((1, len(DEFAULT_EXPONENTS)), 0.01)
    options = PriorOptions(("H",), coefficients=coeff.tolist())
    rho = prior_density(mol, grid, "fine", options).astype(np.float64)
    design = correction_channels(mol, grid, "fine", PriorOptions(("H",)))
    expected = sad_fine(mol, grid) + np.tensordot(coeff[0], design, axes=1)
    np.testing.assert_allclose(rho, expected, rtol=1e-4, atol=1e-7)


def test_prior_fit_beats_the_sad_on_its_molecules(tiny_store):
    from rhosr.prior import fit_prior
    from rhosr.store import DatasetStore

    ids = DatasetStore.open(tiny_store).entry_ids("train")
    fitted = fit_prior(str(tiny_store), ids, PriorOptions(("H", "O", "F")), progress=False)
    assert np.shape(fitted["options"].coefficients) == (3, len(DEFAULT_EXPONENTS))
    assert np.mean(fitted["prior_err"]) < np.mean(fitted["sad_err"])
    bonded = fit_prior(str(tiny_store), ids, PriorOptions(("H", "O", "F"), typed=True,
                                                          bond_positions=(0.25, 0.5, 0.75)), progress=False)
    options = bonded["options"]
    assert options.kinds == ("F1", "H1", "O2") and options.bond_kinds == ("F1-H1", "H1-O2")
    assert np.shape(options.bond_coefficients) == (2, 3 * 4)
    assert np.mean(bonded["prior_err"]) < np.mean(fitted["prior_err"])  # more terms, same molecules


def test_prior_l1_passes_lower_the_absolute_deviation(tiny_store):
    """Each reweighted pass starts from coefficients with a smaller L1 residual than the
    least-squares ones (the metric Err_rho counts), and zero passes is the least-squares fit."""
    from rhosr.prior import fit_prior
    from rhosr.store import DatasetStore

    ids = DatasetStore.open(tiny_store).entry_ids("train")
    options = PriorOptions(("H", "O", "F"), typed=True, bond_positions=(0.5,))
    l2 = fit_prior(str(tiny_store), ids, options, progress=False)
    l1 = fit_prior(str(tiny_store), ids, options, progress=False, l1_iterations=3)
    assert len(l2["passes"]) == 1 and len(l1["passes"]) == 4
    assert l1["options"].coefficients[0] != l2["options"].coefficients[0]
    start_sad, start_l2, *later = l1["passes"]
    assert start_l2 < start_sad
    assert later[-1] < start_l2
    with pytest.raises(InputError, match="l1 iterations"):
        fit_prior(str(tiny_store), ids, options, progress=False, l1_iterations=-1)


def test_prior_l1_fit_resumes_from_its_checkpoint(tiny_store, tmp_path):
    """A fit interrupted after some passes, run again, starts after the last saved pass and ends
    where an uninterrupted fit ends; a checkpoint of other molecules is ignored."""
    from rhosr.prior import fit_prior
    from rhosr.store import DatasetStore

    ids = DatasetStore.open(tiny_store).entry_ids("train")
    options = PriorOptions(("H", "O", "F"), typed=True, bond_positions=(0.5,))
    straight = fit_prior(str(tiny_store), ids, options, progress=False, l1_iterations=2)
    checkpoint = tmp_path / "fit.npz"
    first = fit_prior(str(tiny_store), ids, options, progress=False, l1_iterations=1, checkpoint=checkpoint)
    assert first["resumed"] == 0 and checkpoint.exists()
    resumed = fit_prior(str(tiny_store), ids, options, progress=False, l1_iterations=2, checkpoint=checkpoint)
    assert resumed["resumed"] == 2
    np.testing.assert_allclose(resumed["passes"], straight["passes"], rtol=1e-6)
    np.testing.assert_allclose(resumed["options"].coefficients, straight["options"].coefficients,
                               rtol=1e-5, atol=1e-9)
    other = fit_prior(str(tiny_store), ids[:1], options, progress=False, l1_iterations=1,
                      checkpoint=checkpoint)
    assert other["resumed"] == 0


def test_prior_base_without_coefficients_is_a_clear_error():
    config = model_config({"trunk": {"name": "srresnet", "num_feat": 4, "num_block": 1},
                           "base": "fitted_prior"})
    with pytest.raises(InputError, match="rhosr fit-prior"):
        build_model(config)
    with pytest.raises(InputError, match="coefficients must be 5 rows"):
        model_config({"base": {"name": "fitted_prior", "coefficients": [[1.0]]}})
    with pytest.raises(InputError, match="exponents"):
        model_config({"base": {"name": "fitted_prior", "exponents": [-1.0]}})


def test_prior_fit_prior_cli_writes_a_config_that_trains(tiny_store, tmp_path, run_cli):
    from rhosr.train import TrainConfig

    config = tmp_path / "prior.yaml"
    config.write_text(yaml.safe_dump({"model": PRIOR_MODEL,
                                      "epochs": 1}))
    out = tmp_path / "fitted.yaml"
    code, stdout, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out,
                                "--no-progress", "--l1-iterations", "0")
    assert code == 0, err
    assert "fitted on 2 train molecules" in stdout and "least squares" in stdout
    assert "on 1 validation molecules" in stdout
    fitted = TrainConfig.load(str(out))
    base = fitted.model_config.base
    assert base.name == "fitted_prior" and len(base.options.coefficients) == 3
    model = build_model(fitted.model_config)  # builds: the coefficients are there
    assert model.needs_fine
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", "qm9_small", "--out", out)
    assert code == 2 and "not fitted_prior" in err
    bonded = {**PRIOR_MODEL, "base": {**PRIOR_MODEL["base"], "typed": True, "bond_positions": [0.5]}}
    config.write_text(yaml.safe_dump({"model": bonded, "epochs": 1}))
    code, stdout, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out,
                                "--no-progress")
    assert code == 0, err
    assert "3 atom kinds, 2 bond kinds" in stdout and "4 L1 passes" in stdout
    passes = next(line for line in stdout.splitlines() if "at the start of each L1 pass" in line)
    assert passes.count(" -> ") == 3  # the residual at the start of each of the 4 passes
    assert not list(tmp_path.glob("*.partial.npz"))  # the pass checkpoint is gone once OUT is written
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out,
                           "--l1-floor", "0")
    assert code == 2 and "--l1-floor in (0, 1)" in err
    base = TrainConfig.load(str(out)).model_config.base.options
    assert base.kinds == ("F1", "H1", "O2") and base.bond_kinds == ("F1-H1", "H1-O2")


def test_prior_untrained_model_returns_the_prior(tiny_store):
    """The data path hands the base its prior; an untrained model returns it, rescaled to N_e."""
    import torch

    from rhosr.data import DensityDataset
    from rhosr.prior import rescaled

    coeff = np.zeros((2, len(DEFAULT_EXPONENTS)))
    coeff[0, 2] = -0.02
    config = model_config({"trunk": {"name": "srresnet", "num_feat": 4, "num_block": 1, "norm": "none"},
                           "base": {"name": "fitted_prior", "elements": list(ELEMENTS),
                                    "coefficients": coeff.tolist()}})
    item = DensityDataset(str(tiny_store), "validation", model=config)[0]
    model = build_model(config)
    with torch.no_grad():
        out = model(item["inputs"][None], item["n_electrons"][None], item["voxel_volume"][None],
                    item["fine"][None])
    expected = rescaled(item["fine"][0].numpy(), float(item["n_electrons"]), float(item["voxel_volume"]))
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-4, atol=1e-7)


def test_prior_recipe_keys():
    from rhosr.train import TrainConfig, lr_factor

    cfg = TrainConfig.from_dict({"warmup_shape": "linear", "gradient_clip_val": 10})
    assert cfg.warmup_shape == "linear" and cfg.gradient_clip_val == 10.0
    assert [lr_factor(s, 10, 110, 0.01, "linear") for s in (0, 5, 10)] == pytest.approx([0.01, 0.505, 1.0])
    assert lr_factor(5, 10, 110, 0.01) == 0.01  # the paper's constant warm-up
    with pytest.raises(InputError, match="warmup_shape"):
        TrainConfig.from_dict({"warmup_shape": "cosine"})
    with pytest.raises(InputError, match="gradient_clip_val"):
        TrainConfig.from_dict({"gradient_clip_val": -1})


@pytest.mark.slow
def test_prior_train_then_predict_with_a_fitted_prior(tiny_store, tmp_path, run_cli):
    from rhosr.checkpoint import load_model
    from rhosr.grid import Grid

    config = tmp_path / "prior.yaml"
    config.write_text(yaml.safe_dump({"model": PRIOR_MODEL,
                                      "epochs": 2, "lr": 1e-3, "log_every_n_steps": 1}))
    fitted = tmp_path / "fitted.yaml"
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", fitted,
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli("train", "--store", tiny_store, "--config", fitted, "--out", tmp_path / "run",
                           "--no-progress")
    assert code == 0, err
    model, meta = load_model(tmp_path / "run" / "best")
    assert meta["model"]["base"]["name"] == "fitted_prior" and len(meta["model"]["base"]["coefficients"]) == 3
    code, _, err = run_cli("predict", "qm9:3", "-o", tmp_path / "w.npy", "--model", tmp_path / "run" / "best",
                           "--quiet")
    assert code == 0, err
    _, grid = place_in_box(read_molecule("qm9:3"), 2, meta["grid"]["margin_angstrom"])
    assert isinstance(grid, Grid)
    rho = np.load(tmp_path / "w.npy")
    assert rho.shape == grid.fine_mesh
    assert rho.sum() * grid.voxel_volume("fine") == pytest.approx(8.0, rel=1e-5)


def test_prior_fit_prior_refuses_ids_that_are_not_train_entries(tiny_store, tmp_path, run_cli):
    import json

    from rhosr.store import DatasetStore

    config = tmp_path / "prior.yaml"
    config.write_text(yaml.safe_dump({"model": PRIOR_MODEL, "epochs": 1}))
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(DatasetStore.open(tiny_store).entry_ids("validation")))
    out = tmp_path / "o.yaml"
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out, "--ids", ids)
    assert code == 2 and "would leak them" in err and not out.exists()


def test_prior_sites_follow_kinds_and_bonds(water):
    """Water, typed, three terms per bond: O2 and two H1 atoms; each O-H bond's terms run from H
    (the first kind, alphabetically) to O. Ethane's C-C bond joins two C4 atoms: its terms at
    1/4 and 3/4 are the same term (index 0)."""
    from ase import Atoms

    from rhosr.molecule import Molecule

    mol, _ = water
    options = PriorOptions(("H", "O"), typed=True, bond_positions=(0.25, 0.5, 0.75))
    found = sites(mol, options)
    assert sorted(s.row for s in found if s.position is None) == ["H1", "H1", "O2"]
    bond_sites = [s for s in found if s.position is not None]
    assert {s.row for s in bond_sites} == {"H1-O2"} and len(bond_sites) == 6
    o = np.asarray(mol.positions_angstrom[0]) / 0.529177210903
    first = min(bond_sites, key=lambda s: s.position)  # a quarter of the way from H to O
    assert np.linalg.norm(np.array(first.centre_bohr) - o) > np.linalg.norm(
        np.array(max(bond_sites, key=lambda s: s.position).centre_bohr) - o)
    ethane = Molecule(Atoms("C2H6", [(0, 0, 0), (1.53, 0, 0), (-0.4, 1.0, 0), (-0.4, -0.5, 0.87),
                                     (-0.4, -0.5, -0.87), (1.93, -1.0, 0), (1.93, 0.5, 0.87),
                                     (1.93, 0.5, -0.87)]), name="ethane")
    cc = [s for s in sites(ethane, PriorOptions(("H", "C"), typed=True, bond_positions=(0.25, 0.5, 0.75)))
          if s.row == "C4-C4"]
    assert sorted(s.position for s in cc) == [0, 0, 1]


def test_prior_bond_term_adds_its_electrons_and_unseen_kinds_add_nothing(water):
    """A bond coefficient c on the midpoint term with exponent a adds c (pi/a)^(3/2) electrons
    per bond; kinds the fit never saw (here: the atoms, and an S-H bond) add nothing."""
    mol, grid = water
    width = 3 * 4
    row = [0.0] * width
    row[1 * 4 + 2] = 0.03  # position 1/2, exponent index 2 (2.0 Bohr^-2)
    options = PriorOptions(("H", "O", "S"), typed=True, bond_positions=(0.25, 0.5, 0.75), kinds=("H1",),
                           coefficients=[[0.0] * len(DEFAULT_EXPONENTS)], bond_kinds=("H1-O2", "H1-S2"),
                           bond_coefficients=[row, [0.5] * width])
    added = prior_density(mol, grid, "fine", options).astype(np.float64) - sad_fine(mol, grid)
    assert added.sum() * grid.voxel_volume("fine") == pytest.approx(2 * 0.03 * (np.pi / 2.0) ** 1.5, rel=1e-4)
    with pytest.raises(InputError, match="bond_coefficients must be one row per bond kind"):
        PriorOptions(bond_positions=(0.5,), bond_kinds=("C4-H1",), bond_coefficients=[[1.0]])
    with pytest.raises(InputError, match="bond_positions must be fractions"):
        PriorOptions(bond_positions=(1.5,))


ETHANETHIOL = [(0, 0, 0), (1.53, 0, 0), (2.16, 1.69, 0),  # C0, C1, S2 (Angstrom)
               (-0.39, 1.0, 0), (-0.39, -0.5, 0.87), (-0.39, -0.5, -0.87),  # H3-H5 on C0
               (1.92, -0.5, 0.87), (1.92, -0.5, -0.87), (3.49, 1.5, 0)]  # H6, H7 on C1; H8 on S2


def test_prior_atoms_with_a_bond_of_an_unseen_kind_keep_their_sad():
    """Ethanethiol with a prior fitted on C, H, O and bonds: the S atom, the C bonded to it and
    every bond of those get nothing (the C's C4 terms were fitted for other neighbours), nor do
    the hydrogens on that C and on the S (all their neighbours are at their SAD); the methyl
    carbon and its hydrogens keep their own atom terms."""
    from ase import Atoms

    from rhosr.molecule import Molecule

    mol, grid = place_in_box(Molecule(Atoms("C2SH6", ETHANETHIOL), name="C2H5SH"))
    width = 4
    options = PriorOptions(("H", "C", "O"), typed=True, bond_positions=(0.5,), kinds=("C4", "H1"),
                           coefficients=[[0.02] * 8, [0.01] * 8], bond_kinds=("C4-C4", "C4-H1"),
                           bond_coefficients=[[0.0] * width, [0.0] * width])
    added = prior_density(mol, grid, "fine", options).astype(np.float64) - sad_fine(mol, grid)
    methyl = sum((0.02 + 3 * 0.01) * (np.pi / a) ** 1.5 for a in DEFAULT_EXPONENTS)  # C0, H3-H5
    assert added.sum() * grid.voxel_volume("fine") == pytest.approx(methyl, rel=1e-4)
    with_s = PriorOptions(("H", "C", "S"), typed=True, bond_positions=(0.5,), kinds=("C4", "H1", "S2"),
                          coefficients=[[0.02] * 8, [0.01] * 8, [0.0] * 8],
                          bond_kinds=("C4-C4", "C4-H1", "C4-S2", "H1-S2"),
                          bond_coefficients=[[0.0] * width] * 4)
    added = prior_density(mol, grid, "fine", with_s).astype(np.float64) - sad_fine(mol, grid)
    every = sum((2 * 0.02 + 6 * 0.01) * (np.pi / a) ** 1.5 for a in DEFAULT_EXPONENTS)
    assert added.sum() * grid.voxel_volume("fine") == pytest.approx(every, rel=1e-4)  # fitted with S


def test_prior_nearest_atom_kind_is_one_bonded_neighbour_away():
    from rhosr.prior import nearest_atom_kind

    assert nearest_atom_kind("N4", {"N3", "N2", "C4"}) == "N3"
    assert nearest_atom_kind("C3", {"C2", "C4"}) == "C2"  # a tie: the fewer neighbours
    assert nearest_atom_kind("N4", {"N2", "C4"}) == "N4"  # two neighbours away: not borrowed
    assert nearest_atom_kind("S2", {"C4"}) == "S2"
    assert nearest_atom_kind("O", {"O1"}) == "O"  # untyped kinds are never remapped


def test_prior_an_unseen_bond_between_fitted_atom_kinds_borrows_nothing(water):
    """Water's O2 and H1 are fitted kinds but H1-O2 is not (only H1-O1 is): no bond terms,
    and its atoms stay at their SAD (the rule for a bond of an unseen kind)."""
    mol, grid = water
    options = PriorOptions(("H", "O"), typed=True, bond_positions=(0.5,), kinds=("H1", "O2"),
                           coefficients=[[0.01] * 8, [0.02] * 8], bond_exponents=(2.0,),
                           bond_kinds=("H1-O1",), bond_coefficients=[[0.05]])
    np.testing.assert_allclose(prior_density(mol, grid, "fine", options), sad_fine(mol, grid),
                               rtol=1e-6, atol=1e-9)


METHYLAMMONIUM = [(0, 0, 0), (1.50, 0, 0),  # C0, N1 (Angstrom)
                  (-0.36, 1.03, 0), (-0.36, -0.51, 0.89), (-0.36, -0.51, -0.89),  # H on C
                  (1.86, 0.96, 0), (1.86, -0.48, 0.83), (1.86, -0.48, -0.83)]  # H on N


def test_prior_an_unseen_kind_takes_the_nearest_fitted_kinds_terms():
    """Methylammonium with a prior fitted without any 4-bonded N: the N4 atom, its C4-N4 and
    H1-N4 bonds take the N3, C4-N3 and H1-N3 terms (one neighbour fewer), so every atom and bond
    adds its electrons; the fit's own sites keep the kinds the molecule has."""
    from ase import Atoms

    from rhosr.molecule import Molecule

    mol, grid = place_in_box(Molecule(Atoms("CNH6", METHYLAMMONIUM), charge=1, name="CH3NH3+"))
    assert {s.row for s in sites(mol, PriorOptions(("H", "C", "N"), typed=True, bond_positions=(0.5,)))} == {
        "C4", "N4", "H1", "C4-H1", "C4-N4", "H1-N4"}
    options = PriorOptions(("H", "C", "N"), typed=True, bond_positions=(0.5,), kinds=("C4", "H1", "N3"),
                           coefficients=[[0.02] * 8, [0.01] * 8, [0.03] * 8], bond_exponents=(2.0,),
                           bond_kinds=("C4-H1", "C4-N3", "H1-N3"), bond_coefficients=[[0.0], [0.04], [0.05]])
    assert {s.row for s in sites(mol, options, nearest=True)} == {"C4", "N3", "H1", "C4-H1", "C4-N3", "H1-N3"}
    added = prior_density(mol, grid, "fine", options).astype(np.float64) - sad_fine(mol, grid)
    atoms = sum((0.02 + 0.03 + 6 * 0.01) * (np.pi / a) ** 1.5 for a in DEFAULT_EXPONENTS)
    bonds = (0.04 + 3 * 0.05) * (np.pi / 2.0) ** 1.5
    assert added.sum() * grid.voxel_volume("fine") == pytest.approx(atoms + bonds, rel=1e-4)


ETHANE = [(0, 0, 0), (1.53, 0, 0), (-0.4, 1.0, 0), (-0.4, -0.5, 0.87), (-0.4, -0.5, -0.87),
          (1.93, -1.0, 0), (1.93, 0.5, 0.87), (1.93, 0.5, -0.87)]


def test_prior_bond_length_slopes_scale_with_the_bond_stretch():
    """With bond_length_slopes each bond term has a ``/dL`` twin weighted by the bond's length
    less the covalent radii (units of 0.1 Angstrom): ethane's C-C bond (1.53 A, radii 2 x 0.76)
    is +0.1 units long, a C-C stretched to 1.73 A +2.1; the twin adds c * stretch electrons."""
    from ase import Atoms

    from rhosr.molecule import Molecule
    from rhosr.prior import bond_stretch

    assert bond_stretch("C", "C", (0, 0, 0), (1.53 / 0.529177210903, 0, 0)) == pytest.approx(0.1, abs=1e-6)
    options = PriorOptions(("H", "C"), typed=True, bond_positions=(0.5,), bond_exponents=(2.0,),
                           bond_length_slopes=True, kinds=("C4", "H1"), coefficients=[[0.0] * 8] * 2,
                           bond_kinds=("C4-C4", "C4-C4/dL", "C4-H1", "C4-H1/dL"),
                           bond_coefficients=[[0.0], [0.05], [0.0], [0.0]])
    for length in (1.53, 1.73):
        xyz = [(x * length / 1.53 if n == 1 or n >= 5 else x, y, z) for n, (x, y, z) in enumerate(ETHANE)]
        mol, grid = place_in_box(Molecule(Atoms("C2H6", xyz), name="ethane"))
        slopes = [s for s in sites(mol, options) if s.row == "C4-C4/dL"]
        assert len(slopes) == 1 and slopes[0].weight == pytest.approx((length - 1.52) / 0.1, abs=1e-6)
        added = prior_density(mol, grid, "fine", options).astype(np.float64) - sad_fine(mol, grid)
        assert added.sum() * grid.voxel_volume("fine") == pytest.approx(
            0.05 * slopes[0].weight * (np.pi / 2.0) ** 1.5, rel=1e-4)
    with pytest.raises(InputError, match="bond_length_slopes needs bond terms"):
        PriorOptions(typed=True, bond_length_slopes=True)


def test_prior_bond_stretch_is_clipped_to_the_range_the_fit_saw():
    """``bond_stretch_ranges``: a bond longer (or shorter) than any of its kind in the fit reads
    as the longest (shortest) one; ``stretch_ranges`` gives those ranges, widened to 4 decimals."""
    from ase import Atoms

    from rhosr.molecule import Molecule
    from rhosr.prior import stretch_ranges

    plain = PriorOptions(("H", "C"), typed=True, bond_positions=(0.5,), bond_exponents=(2.0,),
                         bond_length_slopes=True)
    molecules = []
    for length in (1.53, 1.63):
        xyz = [(x * length / 1.53 if n == 1 or n >= 5 else x, y, z) for n, (x, y, z) in enumerate(ETHANE)]
        molecules.append(place_in_box(Molecule(Atoms("C2H6", xyz), name="ethane"))[0])
    ranges = stretch_ranges(molecules, plain)
    assert ranges["C4-C4"] == pytest.approx([0.1, 1.1], abs=1e-4)
    assert ranges["C4-C4"][0] <= 0.1 + 1e-9 <= 1.1 <= ranges["C4-C4"][1] + 1e-9 and "C4-H1" in ranges
    clipped = dataclasses.replace(plain, bond_stretch_ranges={"C4-C4": [0.2, 0.5]})
    for mol, expected in zip(molecules, (0.2, 0.5)):
        (slope,) = [s for s in sites(mol, clipped) if s.row == "C4-C4/dL"]
        assert slope.weight == pytest.approx(expected)
    with pytest.raises(InputError, match="bond_stretch_ranges"):
        dataclasses.replace(plain, bond_stretch_ranges={"C4-C4": [0.5, 0.2]})


def test_prior_wide_terms_summed_on_the_coarse_mesh_are_exact(water, monkeypatch):
    """The wide terms go through the coarse mesh and Fourier interpolation: the prior equals the
    one with every term on the fine mesh to float32 rounding."""
    import rhosr.prior as prior_module

    mol, grid = water
    assert 0.4 < prior_module.smooth_exponent_limit(grid) < 3.2  # some terms each way
    width = 4
    options = PriorOptions(("H", "O"), typed=True, bond_positions=(0.5,), kinds=("H1", "O2"),
                           coefficients=[[0.01] * 8, [-0.02] * 8], bond_kinds=("H1-O2",),
                           bond_coefficients=[[0.03] * width])
    fast = prior_density(mol, grid, "fine", options).astype(np.float64)
    monkeypatch.setattr(prior_module, "smooth_exponent_limit", lambda g: 0.0)
    every = prior_density(mol, grid, "fine", options).astype(np.float64)
    np.testing.assert_allclose(fast, every, rtol=0, atol=1e-6 * np.abs(every).max())
    assert np.abs(fast - sad_fine(mol, grid)).max() > 1e-3  # the terms are there


def test_prior_variants_benchmark_runs_on_a_store(tiny_store, tmp_path):
    import json

    from rhosr.store import DatasetStore

    module = benchmark_module("prior_variants")
    store = DatasetStore.open(tiny_store)
    for split in ("train", "validation"):
        (tmp_path / f"{split}_ids.json").write_text(json.dumps(store.entry_ids(split)))
    rows = module.main(["--store", str(tiny_store), "--ids", str(tmp_path), "--md", str(tmp_path / "t.md"),
                        "--only", "elements", "typed + 3 bond positions"])
    assert [r[0] for r in rows] == ["elements", "typed + 3 bond positions"]
    assert rows[1][2] < rows[0][2]  # on its own molecules, more terms fit better
    assert "| typed + 3 bond positions |" in (tmp_path / "t.md").read_text()


def test_prior_lobes_sit_off_the_atoms_and_turn_with_the_molecule():
    """Formaldehyde (planar, C3 and O1): the oxygen's back lobe lies on the C=O axis beyond O,
    its pi lobes on both sides of the molecular plane (the carbon's plane, which the hydrogens
    share too), the C=O bond's pi pair on both sides of its midpoint; the trigonal carbon has no
    back lobe. A lobe term's electrons do not depend on how the molecule is turned."""
    from ase import Atoms

    from rhosr.molecule import Molecule

    xyz = np.array([(0, 0, 0), (1.21, 0, 0), (-0.55, 0.94, 0), (-0.55, -0.94, 0)])
    options = PriorOptions(("H", "C", "O"), typed=True, lobe_distances=(0.7,), bond_pi_distances=(0.8,))
    found = {}
    for s in sites(Molecule(Atoms("COH2", xyz), name="CH2O"), options):
        found.setdefault(s.row, []).append(np.array(s.centre_bohr) * 0.529177210903)
    rows = ["C3", "C3-H1>p0.8", "C3-O1>p0.8", "C3>p0.7", "H1", "H1>b0.7", "H1>p0.7",
            "O1", "O1>b0.7", "O1>p0.7"]
    assert sorted(found) == rows
    np.testing.assert_allclose(found["O1>b0.7"][0], [1.21 + 0.7 * 0.529177210903, 0, 0], atol=1e-9)
    assert sorted(abs(c[2]) for c in found["O1>p0.7"]) == pytest.approx([0.7 * 0.529177210903] * 2)
    np.testing.assert_allclose(sorted(c[2] for c in found["C3-O1>p0.8"]), [-0.8 * 0.529177210903,
                                                                         0.8 * 0.529177210903])
    assert len(found["H1>b0.7"]) == 2 and len(found["C3-H1>p0.8"]) == 4
    coeff = [[0.0] * 8 for _ in rows]
    coeff[rows.index("O1>p0.7")][3] = 0.02
    options = PriorOptions(("H", "C", "O"), typed=True, lobe_distances=(0.7,), bond_pi_distances=(0.8,),
                           kinds=tuple(rows), coefficients=coeff)
    turned = xyz @ np.array([[0.0, 0.6, 0.8], [0.0, -0.8, 0.6], [1.0, 0.0, 0.0]])
    electrons = []
    for positions in (xyz, turned):
        mol, grid = place_in_box(Molecule(Atoms("COH2", positions), name="CH2O"))
        added = prior_density(mol, grid, "fine", options).astype(np.float64) - sad_fine(mol, grid)
        electrons.append(added.sum() * grid.voxel_volume("fine"))
    assert electrons == pytest.approx([2 * 0.02 * (np.pi / DEFAULT_EXPONENTS[3]) ** 1.5] * 2, rel=1e-4)
    with pytest.raises(InputError, match="needs typed: true"):
        PriorOptions(lobe_distances=(0.7,))
    with pytest.raises(InputError, match="distances in"):
        PriorOptions(typed=True, bond_pi_distances=(9.0,))


def test_prior_ring_sites_bulge_out_of_small_rings_only():
    """Cyclopropane: each C-C bond gets two ring sites in the ring's plane, one outside the ring
    and one inside, at the given distance from its midpoint (perpendicular to the bond); C-H
    bonds get none.
    Cyclobutane's four ring bonds get ``>r4`` sites; bicyclobutane (two 3-rings sharing a bond) is two
    3-rings, not a 4-ring, and its shared bond gets sites from each ring; benzene has
    no small ring."""
    from ase.build import molecule

    from rhosr.molecule import Molecule
    from rhosr.prior import bonds, small_rings

    options = PriorOptions(("H", "C", "O"), typed=True, ring_distances=(0.5,))

    def ring_sites(name):
        mol = Molecule(molecule(name), name=name)
        return mol, [s for s in sites(mol, options) if ">r" in s.row]

    mol, found = ring_sites("C3H6_D3h")
    assert sorted(s.row for s in found) == ["C4-C4>r3@-0.5"] * 3 + ["C4-C4>r3@0.5"] * 3
    carbons = mol.positions_angstrom[[i for i, e in enumerate(mol.symbols) if e == "C"]] / 0.529177210903
    centroid = carbons.mean(axis=0)
    for s in found:
        a, b = (mol.positions_angstrom[list(s.atoms)] / 0.529177210903)
        middle, centre = (a + b) / 2, np.array(s.centre_bohr)
        assert np.linalg.norm(centre - middle) == pytest.approx(0.5)
        assert (centre - middle) @ (b - a) == pytest.approx(0.0, abs=1e-9)
        outside = np.linalg.norm(centre - centroid) > np.linalg.norm(middle - centroid)
        assert outside == (s.row == "C4-C4>r3@0.5")
        normal = np.cross(carbons[1] - carbons[0], carbons[2] - carbons[0])
        assert (centre - carbons[0]) @ normal == pytest.approx(0.0, abs=1e-9)
    _, found = ring_sites("cyclobutane")
    assert sorted(s.row for s in found) == ["C4-C4>r4@-0.5"] * 4 + ["C4-C4>r4@0.5"] * 4
    mol, found = ring_sites("bicyclobutane")
    assert [len(r) for r in small_rings(bonds(mol))] == [3, 3]
    assert len(found) == 12 and len({s.atoms for s in found}) == 5
    assert ring_sites("C6H6")[1] == []
    with pytest.raises(InputError, match="needs typed: true"):
        PriorOptions(ring_distances=(0.5,))


def test_prior_lobes_of_an_atom_bonded_to_an_unfitted_element_are_left_out():
    """Ethanethiol with lobes but no bond terms: the S atom has no terms; the carbon bonded to it
    (whose directions the S bond sets) keeps its SAD, and so do the hydrogens on that carbon and
    on the sulfur (every neighbour of theirs is at its SAD); the methyl carbon and its hydrogens
    keep their terms."""
    from ase import Atoms

    from rhosr.molecule import Molecule
    from rhosr.prior import kept_sites

    mol = Molecule(Atoms("C2SH6", ETHANETHIOL), name="C2H5SH")
    options = PriorOptions(("H", "C", "O"), typed=True, lobe_distances=(0.7,))
    kept = kept_sites(mol, options, ())
    assert {a for s in kept for a in s.atoms} == {0, 3, 4, 5}
    assert {s.row for s in kept} == {"C4", "H1", "H1>b0.7"}


def test_prior_normal_equations_are_float64_sums(tiny_store, monkeypatch):
    """The normal equations are the float64 products of the design (in chunks of mesh points):
    with terms close together along a bond the columns are nearly dependent, and float32
    products spoiled the fit. Chunked or not, the sums agree to float64 rounding."""
    import rhosr.prior as prior_module
    from rhosr.store import DatasetStore

    store = DatasetStore.open(tiny_store)
    ids = store.entry_ids("train")[:1]
    options = PriorOptions(("H", "O", "F"), typed=True, bond_positions=(0.25, 0.5, 0.75))
    system = prior_module.PriorSystem.of(str(tiny_store), ids, options)
    molecules, index = system.molecules, system.index
    args = (store, ids, molecules, options, index, None, 1e-5, "", False)
    whole, rhs, _ = prior_module._normal_equations(*args)
    monkeypatch.setattr(prior_module, "NORMAL_CHUNK", 1000)
    chunked, rhs_chunked, _ = prior_module._normal_equations(*args)
    entry = store.read_entry(ids[0], ("label",))
    grid = prior_module.Grid.from_dict(entry.meta["grid"])
    cols, channels = prior_module.design(molecules[ids[0]], grid, "fine", options, index)
    d = channels.reshape(len(cols), -1).astype(np.float64)
    assert whole.dtype == np.float64
    gram = d @ d.T
    np.testing.assert_allclose(whole[np.ix_(cols, cols)], gram, rtol=1e-12, atol=1e-12 * np.abs(gram).max())
    np.testing.assert_allclose(chunked, whole, rtol=1e-10, atol=1e-12 * np.abs(whole).max())
    np.testing.assert_allclose(rhs_chunked, rhs, rtol=1e-10, atol=1e-12 * np.abs(rhs).max())


def test_prior_ridge_shrinks_nearly_collinear_coefficients():
    """Two nearly equal columns whose tiny difference the target follows: least squares gives
    them large coefficients of opposite signs, which blow up on held-out data where the two
    columns differ otherwise (another molecule's bond); a ridge relative to each column's own
    weight gives small ones, a well-determined column barely moves, and one nothing touches
    keeps zero."""
    from rhosr.prior import solve_normal

    rng = np.random.default_rng(0)

    def columns(n=2000):
        a = rng.normal(size=n)
        return np.stack([a, a + 1e-3 * rng.normal(size=n), np.zeros(n), rng.normal(size=n)])

    d, held_out = columns(), columns()
    target = d[0] + 0.05 * (d[1] - d[0]) / 1e-3 + 0.01 * d[3]
    normal, rhs = d @ d.T, d @ target
    plain = solve_normal(normal, rhs)
    ridged = solve_normal(normal, rhs, ridge=1e-2)
    assert np.abs(plain[:2]).max() > 20 and np.abs(ridged[:2]).max() < 1
    assert plain[2] == 0 and ridged[2] == 0
    assert abs(ridged[3] - 0.01) < 2e-3
    expected = held_out[0] + 0.01 * held_out[3]  # what the columns themselves carry
    misfit = [np.abs(c @ held_out - expected).mean() for c in (plain, ridged)]
    assert misfit[1] < misfit[0] / 5


def test_prior_smoothness_penalty_ties_neighbouring_positions():
    """The smoothness penalty pulls the coefficients of neighbouring positions together (and
    only those it names): two nearly collinear columns fitted to a target that follows their
    difference get nearly equal coefficients; the pair's sum still fits the common part."""
    from rhosr.prior import solve_normal

    rng = np.random.default_rng(1)
    a = rng.normal(size=2000)
    d = np.stack([a, a + 1e-3 * rng.normal(size=2000), rng.normal(size=2000)])
    target = d[0] + 0.05 * (d[1] - d[0]) / 1e-3 + 0.3 * d[2]
    normal, rhs = d @ d.T, d @ target
    plain = solve_normal(normal, rhs)
    tied = solve_normal(normal, rhs, smooth=1e-2, neighbours=[(0, 1)])
    assert abs(plain[0] - plain[1]) > 40 and abs(tied[0] - tied[1]) < 0.5
    assert abs(tied[0] + tied[1] - 1) < 0.05 and abs(tied[2] - 0.3) < 0.01
    np.testing.assert_allclose(solve_normal(normal, rhs, smooth=1e-2, neighbours=[]), plain)


def test_prior_fit_with_a_ridge_has_smaller_coefficients(tiny_store, tmp_path):
    from rhosr.prior import fit_prior
    from rhosr.store import DatasetStore

    ids = DatasetStore.open(tiny_store).entry_ids("train")
    options = PriorOptions(("H", "O", "F"), typed=True, bond_positions=(0.25, 0.5, 0.75))
    plain = fit_prior(str(tiny_store), ids, options, progress=False)["options"]
    checkpoint = tmp_path / "fit.npz"
    ridged = fit_prior(str(tiny_store), ids, options, progress=False, ridge=0.1, checkpoint=checkpoint)
    size = [np.abs(np.concatenate([np.ravel(o.coefficients), np.ravel(o.bond_coefficients)])).sum()
            for o in (plain, ridged["options"])]
    assert size[1] < size[0]
    # a checkpoint of another ridge is not resumed
    again = fit_prior(str(tiny_store), ids, options, progress=False, ridge=0.2, checkpoint=checkpoint)
    assert again["resumed"] == 0
    smooth = fit_prior(str(tiny_store), ids, options, progress=False, smooth=1.0)["options"]
    # bond rows are positions x exponents: the steps along the bond shrink
    steps = [np.abs(np.diff(np.reshape(o.bond_coefficients, (-1, 3, 4)), axis=1)).sum()
             for o in (plain, smooth)]
    assert steps[1] < steps[0]
    with pytest.raises(InputError, match="ridge"):
        fit_prior(str(tiny_store), ids, options, progress=False, ridge=-1.0)


def test_prior_fit_prior_cli_ridge_and_tail(tiny_store, tmp_path, run_cli):
    config = tmp_path / "prior.yaml"
    config.write_text(yaml.safe_dump({"model": PRIOR_MODEL, "epochs": 1}))
    out = tmp_path / "fitted.yaml"
    code, stdout, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out,
                                "--no-progress", "--l1-iterations", "0", "--ridge", "0.01")
    assert code == 0, err
    assert "least squares; ridge 0.01" in stdout
    check = next(line for line in stdout.splitlines() if "validation molecules" in line)
    assert "(median), worst" in check and "worse than their SAD:" in check
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out,
                           "--ridge", "-1")
    assert code == 2 and "--ridge and --smooth >= 0" in err
    code, stdout, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out,
                                "--no-progress", "--l1-iterations", "0", "--smooth", "0.1")
    assert code == 0 and "smoothness 0.1" in stdout, err


def test_prior_fit_prior_start_continues_a_fit(tiny_store, tmp_path, run_cli):
    """--start FITTED skips least squares and runs the passes from FITTED's coefficients: one
    pass, then one more from its output, equals two passes in one run (to the 6 digits a config
    keeps). A prior with other terms, or none, is refused."""
    bonded = {**PRIOR_MODEL, "base": {**PRIOR_MODEL["base"], "typed": True, "bond_positions": [0.25, 0.75]}}
    config = tmp_path / "prior.yaml"
    config.write_text(yaml.safe_dump({"model": bonded, "epochs": 1}))

    def fit(out, *extra):
        code, stdout, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", out,
                                    "--no-progress", "--ridge", "1e-5", "--check", "0", *extra)
        assert code == 0, err
        return stdout, TrainConfig.load(out).model_config.base.options

    def gap(a, b):  # the largest coefficient difference
        return max(np.abs(np.array(a.coefficients) - np.array(b.coefficients)).max(),
                   np.abs(np.array(a.bond_coefficients) - np.array(b.bond_coefficients)).max())

    _, two = fit(tmp_path / "two.yaml", "--l1-iterations", "2")
    _, one = fit(tmp_path / "one.yaml", "--l1-iterations", "1")
    stdout, continued = fit(tmp_path / "more.yaml", "--l1-iterations", "1", "--start", tmp_path / "one.yaml")
    assert "1 L1 passes from one.yaml" in stdout and "resumed" not in stdout
    assert continued.kinds == two.kinds and continued.bond_kinds == two.bond_kinds
    # the start's 6-digit rounding moves the L1 weights of points near the floor a little
    assert gap(continued, two) < 1e-4 < 1e-3 < gap(one, two)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"model": {**bonded, "base": {**bonded["base"], "bond_positions": [0.5]}},
                                     "epochs": 1}))
    x = tmp_path / "x.yaml"
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", other, "--out", x,
                           "--no-progress", "--l1-iterations", "1", "--start", tmp_path / "one.yaml")
    assert code == 2 and "other terms" in err
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", x,
                           "--no-progress", "--l1-iterations", "1", "--start", config)
    assert code == 2 and "not a fitted prior" in err


def test_prior_fit_with_bond_length_slopes_starts_from_a_fit_without(tiny_store, tmp_path, run_cli):
    """--start a prior without bond_length_slopes, for a config with them: the length terms start
    at zero, every other coefficient at the start's; the pass fits both and the written config
    has a ``/dL`` row per bond kind."""
    bonded = {**PRIOR_MODEL, "base": {**PRIOR_MODEL["base"], "typed": True, "bond_positions": [0.25, 0.75]}}
    plain, sloped = tmp_path / "plain.yaml", tmp_path / "sloped.yaml"
    plain.write_text(yaml.safe_dump({"model": bonded, "epochs": 1}))
    with_slopes = {**bonded, "base": {**bonded["base"], "bond_length_slopes": True}}
    sloped.write_text(yaml.safe_dump({"model": with_slopes, "epochs": 1}))
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", plain, "--out",
                           tmp_path / "a.yaml", "--no-progress", "--ridge", "1e-5", "--check", "0",
                           "--l1-iterations", "0")
    assert code == 0, err
    code, stdout, err = run_cli("fit-prior", "--store", tiny_store, "--config", sloped, "--out",
                                tmp_path / "b.yaml", "--no-progress", "--ridge", "1e-5", "--check", "0",
                                "--l1-iterations", "1", "--start", tmp_path / "a.yaml")
    assert code == 0, err
    start = TrainConfig.load(tmp_path / "a.yaml").model_config.base.options
    fitted = TrainConfig.load(tmp_path / "b.yaml").model_config.base.options
    assert fitted.bond_length_slopes and not start.bond_length_slopes
    assert set(fitted.bond_kinds) == set(start.bond_kinds) | {k + "/dL" for k in start.bond_kinds}
    slopes = [row for kind, row in zip(fitted.bond_kinds, fitted.bond_coefficients) if kind.endswith("/dL")]
    assert np.abs(np.array(slopes)).max() > 0
    assert set(fitted.bond_stretch_ranges) == set(start.bond_kinds) and not start.bond_stretch_ranges
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", plain, "--out",
                           tmp_path / "c.yaml", "--no-progress", "--l1-iterations", "1", "--start",
                           tmp_path / "b.yaml")
    assert code == 2 and "other terms" in err  # a start with more terms than the config


def test_prior_ridge_benchmark_runs_on_a_store(tiny_store, tmp_path):
    module = benchmark_module("prior_ridge")
    config = tmp_path / "prior.yaml"
    bonded = {**PRIOR_MODEL, "base": {**PRIOR_MODEL["base"], "typed": True, "bond_positions": [0.25, 0.75]}}
    config.write_text(yaml.safe_dump({"model": bonded, "epochs": 1}))
    system = tmp_path / "system.npz"
    args = ["--store", str(tiny_store), "--config", str(config), "--train", "2", "--validation", "1",
            "--test", "1", "--ridges", "0", "0.1", "--system", str(system), "--md", str(tmp_path / "r.md")]
    module.main(args)
    text = (tmp_path / "r.md").read_text()
    assert "| 0 |" in text and "| 0.1 |" in text and "validation (1): mean" in text
    assert system.exists()
    module.main(args)  # the second run reads the normal equations
    assert (tmp_path / "r.md").read_text() == text


def test_prior_heldout_benchmark_scores_a_fitted_config(tiny_store, tmp_path, run_cli):
    config = tmp_path / "prior.yaml"
    config.write_text(yaml.safe_dump({"model": PRIOR_MODEL, "epochs": 1}))
    fitted = tmp_path / "fitted.yaml"
    code, _, err = run_cli("fit-prior", "--store", tiny_store, "--config", config, "--out", fitted,
                           "--no-progress", "--l1-iterations", "0")
    assert code == 0, err
    out = benchmark_module("prior_heldout").main(["--store", str(tiny_store), "--config", str(fitted),
                                                   "--split", "validation", "--md", str(tmp_path / "h.md")])
    assert len(out["ids"]) == 1 and out["prior"][0] < out["sad"][0]
    assert out["three_rings"].tolist() == [0]  # the tiny store's molecules have no 3-ring
    assert "| 1 |" in (tmp_path / "h.md").read_text() and "| 0 | 1 |" in (tmp_path / "h.md").read_text()
    assert out["unseen_kinds"] == [[]]  # an untyped prior has a row for every element
    assert "| none | 1 |" in (tmp_path / "h.md").read_text()
    kinds = benchmark_module("prior_heldout").main(["--store", str(tiny_store), "--config", str(fitted),
                                                    "--split", "validation", "--kinds-only"])
    assert kinds["ids"] == out["ids"] and kinds["unseen_kinds"] == [[]] and "sad" not in kinds


def test_prior_heldout_lists_the_kinds_a_fit_never_saw(water):
    unseen_kinds = benchmark_module("prior_heldout").unseen_kinds
    exponents = PriorOptions().exponents
    seen_h = PriorOptions(typed=True, kinds=("H1",), coefficients=((0.0,) * len(exponents),),
                          bond_positions=(0.5,), bond_exponents=(1.0,))
    assert unseen_kinds(water[0], seen_h) == ["H1-O2", "O2"]
    seen_all = PriorOptions(typed=True, kinds=("H1", "O2"), coefficients=((0.0,) * len(exponents),) * 2,
                            bond_positions=(0.5,), bond_exponents=(1.0,), bond_kinds=("H1-O2",),
                            bond_coefficients=((0.0,),))
    assert unseen_kinds(water[0], seen_all) == []
