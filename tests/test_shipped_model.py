"""The shipped models pinned to measured figures: ``qm9-small``'s Err_rho on the committed QM9
box and how its prediction follows a rotation of the molecule; the default ``qm9-unet``'s Err_rho
on the same box through ``predict``.

The pins were measured on 2026-12-03 with torch 2.13.0+cpu on one thread, by the code of each
test (``OMP_NUM_THREADS=1 pytest -q tests/test_shipped_model.py``). A retrained shipped model
changes them: measure again and update the numbers with the date.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rhosr import err_rho, read_molecule
from rhosr.data import ROTATIONS, rotate_grid
from rhosr.grid import BOHR_ANGSTROM
from rhosr.inference import inverse_rotation, predict_array
from rhosr.molecule import Molecule
from rhosr.predict import load_predictor, predict
from rhosr.sad import sad_density

# QM9 training entry qm9_019434: coarse SAD 49x55x50 and its `fast` label
BOX = Path(__file__).parents[1] / "benchmarks" / "data" / "qm9_box.npz"

BOX_ERR_RHO = 3.677073  # percent, the shipped model on BOX against its float16 label
BOX_ERR_RHO_TOL = 1e-3  # percentage points: float rounding across BLAS builds and thread counts

GRID_ROTATION_SPREAD = 2.6  # percent, water: max Err_rho of pred(rotated), rotated back, vs pred (2.5003)
BOX_ROTATED_ERR_SPREAD = 0.15  # percentage points: max |Err_rho(rotated) - Err_rho|, 24 rotations; 0.134
EXACT_TOL = 1e-6  # relative: float rounding; measured 0 (the 24 rotated predictions are the same arrays)

TURN_DEGREES = (30, 50, 70)  # a rotation that is none of the 24 grid rotations (xyz Euler angles)
TURN_DIPOLE_TOL = 0.025  # e Bohr: |R mu(water) - mu(turned water)|, measured 0.0209 (|mu| = 4.3)
TURN_SAD_DIPOLE_TOL = 0.005  # e Bohr: the same for the SAD input on the fine mesh, measured 0.0024


@pytest.fixture(scope="module")
def shipped():
    return load_predictor("qm9-small")


@pytest.fixture(scope="module")
def water():
    return predict(read_molecule("qm9:3"), "qm9-small", runtime="torch")  # compared with predict_array


@pytest.fixture(scope="module")
def water_averaged(shipped, water):
    net, _ = shipped
    n_electrons, voxel_volume = water.placed.n_valence, water.grid.voxel_volume("fine")
    return predict_array(net, water.sad, n_electrons, voxel_volume, rotations=24)


def _box():
    with np.load(BOX) as data:
        return (data["sad"], data["label"].astype(np.float32), float(data["n_electrons"]),
                float(data["voxel_volume"]))


def test_shipped_model_err_rho_on_committed_box_is_pinned(shipped):
    net, _ = shipped
    sad, label, n_electrons, voxel_volume = _box()
    rho_pred = predict_array(net, sad, n_electrons, voxel_volume)
    assert rho_pred.sum() * voxel_volume == pytest.approx(n_electrons, rel=1e-5)
    measured = err_rho(rho_pred, label, voxel_volume, n_electrons)
    assert measured == pytest.approx(BOX_ERR_RHO, abs=BOX_ERR_RHO_TOL)


@pytest.mark.slow
def test_shipped_model_grid_rotations_follow_within_measured_spread(shipped, water):
    """The network's kernels are learned, not symmetric: it is not exactly equivariant to the 24
    grid rotations (training augments with them). Measured on water: the prediction of a rotated
    input, rotated back, is up to 2.50% (Err_rho, mean 2.13%) from the unrotated prediction (on the
    committed QM9 box: 1.61-1.77%). The identity must give exactly the same density."""
    net, _ = shipped
    n_electrons, voxel_volume = water.placed.n_valence, water.grid.voxel_volume("fine")
    spreads = []
    for perm, signs in ROTATIONS:
        rotated = np.ascontiguousarray(rotate_grid(water.sad, perm, signs))
        rho_rotated = predict_array(net, rotated, n_electrons, voxel_volume)
        rho = rotate_grid(rho_rotated, *inverse_rotation(perm, signs))
        spreads.append(err_rho(rho, water.density, voxel_volume, n_electrons))
    assert spreads[0] == 0.0
    assert max(spreads) <= GRID_ROTATION_SPREAD
    assert min(spreads[1:]) > 0.5  # not equivariant by construction: a test that sees if that changes


@pytest.mark.slow
def test_shipped_model_rotated_box_is_predicted_as_well(shipped):
    """Grid rotations of the committed QM9 box, each against its rotated label: over all 24 the
    error moves by at most 0.134 points (mean 0.040) from the unrotated 3.677%; every third
    rotation is tested (0.100 at most among them) to keep the test short."""
    net, _ = shipped
    sad, label, n_electrons, voxel_volume = _box()
    errors = []
    for perm, signs in ROTATIONS[::3]:
        turned = np.ascontiguousarray(rotate_grid(sad, perm, signs))
        rho_ref = np.ascontiguousarray(rotate_grid(label, perm, signs))
        rho = predict_array(net, turned, n_electrons, voxel_volume)
        errors.append(err_rho(rho, rho_ref, voxel_volume, n_electrons))
    assert errors[0] == pytest.approx(BOX_ERR_RHO, abs=BOX_ERR_RHO_TOL)
    assert max(abs(e - errors[0]) for e in errors) <= BOX_ROTATED_ERR_SPREAD


@pytest.mark.slow
@pytest.mark.parametrize("index", [7, 23])
def test_rotation_average_is_exactly_equivariant_to_grid_rotations(shipped, water, water_averaged, index):
    """Averaging over all 24 grid rotations (``--rotations 24``) makes any network equivariant to
    them: rotating the input rotates the prediction, up to float rounding."""
    net, _ = shipped
    perm, signs = ROTATIONS[index]
    n_electrons, voxel_volume = water.placed.n_valence, water.grid.voxel_volume("fine")
    rho = water_averaged
    rotated = np.ascontiguousarray(rotate_grid(water.sad, perm, signs))
    rho_rotated = predict_array(net, rotated, n_electrons, voxel_volume, rotations=24)
    np.testing.assert_allclose(rho_rotated, rotate_grid(rho, perm, signs), rtol=0, atol=EXACT_TOL * rho.max())


def _dipole(rho: np.ndarray, prediction) -> np.ndarray:
    """First moment of a fine-mesh density (e Bohr) about the atoms' mean position."""
    points = prediction.grid.points("fine").reshape(-1, 3)
    centre = prediction.placed.atoms.get_positions().mean(0) / BOHR_ANGSTROM
    return (rho.reshape(-1, 1) * (points - centre)).sum(0) * prediction.grid.voxel_volume("fine")


def test_shipped_model_off_grid_rotation_within_measured_tolerance(water):
    """Water turned by a rotation that is not a grid rotation gets a new box and a new SAD; its
    predicted density must be the turned prediction. The meshes differ, so compare the first
    moment of the electron density (grid-free): the model's moves by 0.021 e Bohr (0.5% of it),
    the SAD's by 0.002 (the mesh alone)."""
    rotation = Rotation.from_euler("xyz", TURN_DEGREES, degrees=True)
    turned = water.placed.atoms.copy()
    turned.set_positions(rotation.apply(turned.get_positions() - turned.get_positions().mean(0)))
    other = predict(Molecule(turned, name="turned water"), "qm9-small")
    assert other.grid.fine_mesh != water.grid.fine_mesh  # a new box, not a grid rotation
    moment = rotation.as_matrix() @ _dipole(water.density, water)
    assert np.linalg.norm(moment - _dipole(other.density, other)) <= TURN_DIPOLE_TOL
    sad = rotation.as_matrix() @ _dipole(sad_density(water.placed, water.grid, "fine"), water)
    sad_other = _dipole(sad_density(other.placed, other.grid, "fine"), other)
    assert np.linalg.norm(sad - sad_other) <= TURN_SAD_DIPOLE_TOL


DEFAULT_BOX_ERR_RHO = 1.686573  # percent: qm9-unet on BOX's molecule (qm9:19434) through predict()


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_default_model_err_rho_on_committed_box_is_pinned(runtime):
    """The default model, as ``rhosr predict`` runs it (inputs, fitted prior, network), on the
    committed box's molecule against its label: pinned on 2026-12-05 (torch 2.13.0+cpu, one
    thread; both runtimes gave the same value)."""
    from rhosr.predict import DEFAULT_MODEL

    assert DEFAULT_MODEL == "qm9-unet"
    _, label, n_electrons, voxel_volume = _box()
    result = predict(read_molecule("qm9:19434"), DEFAULT_MODEL, runtime=runtime)
    assert result.density.shape == label.shape
    err = err_rho(result.density, label, voxel_volume, n_electrons)
    assert err == pytest.approx(DEFAULT_BOX_ERR_RHO, abs=BOX_ERR_RHO_TOL)


def test_base_only_is_the_default_models_fitted_prior_rescaled(tmp_path, run_cli, tiny_model_dir):
    """``--base-only``: the fitted prior through the ReLU, rescaled to N_e (what evaluate reports
    as the base's error), no network; a model whose base is not a fine-mesh density refuses."""
    from rhosr.predict import DEFAULT_MODEL, load_predictor, model_folder
    from rhosr.prior import prior_density, rescaled

    mol = read_molecule("qm9:19434")
    result = predict(mol, DEFAULT_MODEL, base_only=True)
    assert result.timings["runtime"] == "base" and result.sad is None  # no network input built
    options = load_predictor(model_folder(DEFAULT_MODEL), runtime="torch")[0].config.base.options
    expected = rescaled(prior_density(result.placed, result.grid, "fine", options), mol.n_valence,
                        result.grid.voxel_volume("fine"))
    np.testing.assert_allclose(result.density, expected, rtol=1e-5, atol=1e-6 * float(expected.max()))
    _, label, n_electrons, voxel_volume = _box()
    assert abs(err_rho(result.density, label, voxel_volume, n_electrons) - DEFAULT_BOX_ERR_RHO) < 0.05
    code, _, err = run_cli("predict", "qm9:1", "-o", tmp_path / "a.cube", "--base-only", "--model",
                           tiny_model_dir)
    assert code == 2 and "--base-only needs a model whose base is a fine-mesh density" in err
    assert not (tmp_path / "a.cube").exists()
    code, _, err = run_cli("predict", "qm9:1", "-o", tmp_path / "a.cube", "--base-only", "--tile", "8")
    assert code == 2 and "do not apply" in err
