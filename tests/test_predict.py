"""Prediction: the CLI and Python entry points, tiled inference, rotation averaging, pictures."""

import numpy as np
import pytest
from tests.conftest import LOCAL_TINY_MODEL as LOCAL
from tests.conftest import random_weights as _random_weights

from rhosr.cli import main
from rhosr.grid import ROTATIONS, rotate_grid
from rhosr.inference import inverse_rotation, predict_array
from rhosr.io import read_cube
from rhosr.model import build_model


def test_predict_cli_writes_cube_that_integrates_to_electron_count(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "new" / "water.cube"  # the folder is made, as for a folder -o
    assert main(["predict", "qm9:3", "-o", str(out), "--model", str(tiny_model_dir), "--png", "--quiet"]) == 0
    cube = read_cube(out)
    assert cube.integral == pytest.approx(8.0, abs=1e-3)
    assert (cube.rho >= 0).all()
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert (tmp_path / "new" / "water_slices.png").stat().st_size > 10_000
    assert "qm9_000003: 3 atoms" in capsys.readouterr().out


def test_predict_reference_may_be_a_flat_npy(tiny_model_dir, tmp_path, capsys):
    """--reference takes a cube or a .npy on the fine mesh, flat in C order as the authors'."""
    out = tmp_path / "water.npy"
    assert main(["predict", "qm9:3", "-o", str(out), "--model", str(tiny_model_dir), "--quiet"]) == 0
    np.save(tmp_path / "ref.npy", np.load(out).ravel())  # the prediction as its own reference
    assert main(["predict", "qm9:3", "-o", str(out), "--model", str(tiny_model_dir), "--quiet",
                 "--reference", str(tmp_path / "ref.npy")]) == 0
    assert "Err_rho model 0.000 %" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", np.zeros(10))
    assert main(["predict", "qm9:3", "-o", str(out), "--model", str(tiny_model_dir), "--quiet",
                 "--reference", str(tmp_path / "bad.npy")]) == 2
    assert "does not fit the mesh" in capsys.readouterr().err


def test_predict_open_shell_needs_spin(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "methyl.cube"
    argv = ["predict", "[CH3]", "-o", str(out), "--model", str(tiny_model_dir), "--quiet"]
    assert main(argv) == 2 and "use --spin 1" in capsys.readouterr().err
    assert main([*argv, "--spin", "1"]) == 0
    assert read_cube(out).integral == pytest.approx(7.0, abs=1e-3)  # total valence density


def test_predict_many_molecules_into_a_folder_with_html(tiny_model_dir, tmp_path):
    assert main(["predict", "qm9:1", "qm9:3", "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir),
                 "--format", "npy", "--html", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "qm9_000001.html", "qm9_000001.npy", "qm9_000003.html", "qm9_000003.npy"]
    assert "plotly" in (tmp_path / "out" / "qm9_000003.html").read_text()[:2_000_000].lower()


def test_predict_batch_writes_each_file_beside_the_next_prediction(tiny_model_dir, tmp_path, capsys,
                                                                   monkeypatch):
    """A batch writes molecule i's cube on a second thread while molecule i+1 is predicted: the
    files equal one-molecule calls', the lines come in order, and a failed write is the
    command's one-line error (no half-written file)."""
    argv = ["--model", str(tiny_model_dir), "--quiet"]
    assert main(["predict", "qm9:1", "qm9:3", "qm9:2", "-o", str(tmp_path / "batch"), *argv]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "written in" in ln]
    assert [ln.split(":")[0] for ln in lines] == ["qm9_000001", "qm9_000003", "qm9_000002"]
    assert main(["predict", "qm9:3", "-o", str(tmp_path / "one.cube"), *argv]) == 0
    assert (tmp_path / "one.cube").read_bytes() == (tmp_path / "batch" / "qm9_000003.cube").read_bytes()

    import rhosr.io

    def broken(path, atoms, rho):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rhosr.io, "write_density", broken)
    assert main(["predict", "qm9:1", "qm9:3", "-o", str(tmp_path / "full"), *argv]) != 0
    assert "No space left on device" in capsys.readouterr().err
    assert not any((tmp_path / "full").glob("*.cube"))


def test_predict_batch_computes_the_next_inputs_beside_the_network(tiny_model_dir, tmp_path, monkeypatch):
    """In a batch every molecule's inputs are computed ahead on the preparing thread (none on
    the main one), and the files equal one-molecule calls' (checked above for the cube)."""
    import threading

    import rhosr.predict

    threads = []
    build = rhosr.predict.Prepared.build

    def spy(self, net, base_only=False):
        if self.inputs is None:
            threads.append(threading.current_thread() is threading.main_thread())
        return build(self, net, base_only)

    monkeypatch.setattr(rhosr.predict.Prepared, "build", spy)
    argv = ["--model", str(tiny_model_dir), "--quiet", "--format", "npy"]
    assert main(["predict", "qm9:1", "qm9:3", "qm9:2", "-o", str(tmp_path / "batch"), *argv]) == 0
    assert threads == [False, False, False]
    assert main(["predict", "qm9:2", "-o", str(tmp_path / "one.npy"), *argv]) == 0
    assert threads[-1] is True  # one molecule: computed in turn
    assert np.array_equal(np.load(tmp_path / "one.npy"), np.load(tmp_path / "batch" / "qm9_000002.npy"))


def test_predict_density_python_api(tiny_model_dir):
    from ase.build import molecule

    import rhosr

    density, grid = rhosr.predict_density(molecule("CH4"), model=tiny_model_dir)
    assert density.shape == grid.fine_mesh
    assert density.sum() * grid.voxel_volume("fine") == pytest.approx(8.0, rel=1e-5)


@pytest.mark.filterwarnings("ignore::rhosr.errors.RhosrWarning")  # small tiles on purpose
@pytest.mark.parametrize("tile", [5, 8, 13])
def test_tiled_inference_equals_whole_box(tile):
    model = _random_weights(build_model(LOCAL)).eval()
    coarse = np.random.default_rng(1).random((17, 14, 20)).astype(np.float32)
    whole = predict_array(model, coarse, 10.0, 0.01)
    tiled = predict_array(model, coarse, 10.0, 0.01, tile=tile)
    assert np.abs(tiled - whole).max() <= 1e-5 * np.abs(whole).max()


def test_instance_norm_model_refuses_tiles():
    from rhosr.errors import InputError

    model = build_model({"num_feat": 4, "kernel_first": 3, "kernel": 3, "num_block": 1}).eval()
    with pytest.raises(InputError, match="instance norm"):
        predict_array(model, np.ones((12, 12, 12), np.float32), 8.0, 0.01, tile=6)


@pytest.mark.parametrize("index", range(24))
def test_inverse_rotation_undoes_each_rotation(index):
    perm, signs = ROTATIONS[index]
    a = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    assert np.array_equal(rotate_grid(rotate_grid(a, perm, signs), *inverse_rotation(perm, signs)), a)


def test_rotation_average_of_an_equivariant_model_changes_nothing():
    """A 1x1x1 model is exactly rotation-equivariant, so averaging must return its own output."""
    one_by_one = {"num_feat": 2, "kernel_first": 1, "kernel": 1, "num_block": 1, "norm": "none"}
    model = _random_weights(build_model(one_by_one)).eval()
    coarse = np.random.default_rng(2).random((6, 7, 8)).astype(np.float32)
    one = predict_array(model, coarse, 5.0, 0.02)
    avg = predict_array(model, coarse, 5.0, 0.02, rotations=24)
    np.testing.assert_allclose(avg, one, rtol=1e-4, atol=1e-6 * one.max())


@pytest.mark.parametrize("argv, message", [
    (["qm9:3", "-o", "x.cube", "--model", "no-such-model"], "no such model folder or shipped model"),
    (["qm9:1", "qm9:3", "-o", "x.cube"], "need an output folder"),
    (["qm9:3", "-o", "x.cube", "--device", "cuda"], "no CUDA device"),
    (["qm9:3", "-o", "x.cube", "--rotations", "30"], "--rotations must be <= 24"),
    (["qm9:3", "-o", "x.cube", "--max-memory", "-1"], "--max-memory must be > 0"),
    (["qm9:3", "-o", "x.cube", "--tile", "0"], "tile must be >= 1"),
    (["nonsense_mol_file.xyz", "-o", "x.cube"], "error"),
    (["qm9:3", "-o", "afile/x.cube"], "afile is not a folder"),
])
def test_bad_predict_input_is_one_line_error(argv, message, tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    if "--model" not in argv:
        argv = [*argv, "--model", str(tiny_model_dir)]
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("rhosr predict: error:")
    assert not (tmp_path / "x.cube").exists()


@pytest.mark.filterwarnings("ignore::rhosr.errors.RhosrWarning")  # small tiles on purpose
def test_memory_bound_picks_tiles_with_the_same_result(tiny_model_dir):
    from rhosr.molecule import read_molecule
    from rhosr.predict import predict

    mol = read_molecule("qm9:3")
    whole = predict(mol, tiny_model_dir)
    tiled = predict(mol, tiny_model_dir, max_memory_gb=0.02)
    assert whole.timings["tile"] is None and tiled.timings["tile"] is not None
    assert np.abs(tiled.density - whole.density).max() <= 1e-5 * whole.density.max()


@pytest.mark.filterwarnings("ignore::rhosr.errors.RhosrWarning")  # small tiles on purpose
def test_default_memory_budget_tiles_only_what_would_not_fit(tiny_model_dir, monkeypatch):
    import rhosr.predict
    from rhosr.molecule import read_molecule
    from rhosr.predict import default_memory_budget_gb, predict

    assert default_memory_budget_gb() > 0.1  # half of what this machine has free
    mol = read_molecule("qm9:3")
    whole = predict(mol, tiny_model_dir)
    monkeypatch.setattr(rhosr.predict, "default_memory_budget_gb", lambda: 0.02)  # a small machine
    auto = predict(mol, tiny_model_dir)
    assert whole.timings["tile"] is None and auto.timings["tile"] is not None
    assert np.abs(auto.density - whole.density).max() <= 1e-5 * whole.density.max()


def test_shipped_model_loads_offline_and_predicts_water(monkeypatch):
    """The default model ships inside the package: no network, no download, a sane density."""
    import socket

    from rhosr.molecule import read_molecule
    from rhosr.predict import DEFAULT_MODEL, load_predictor, predict, shipped_models

    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert DEFAULT_MODEL in shipped_models()
    model, meta = load_predictor()
    assert meta["val_err"] < 14.0 and "test" in meta
    result = predict(read_molecule("qm9:3"))
    assert result.n_electrons == pytest.approx(8.0, rel=1e-5)
    assert np.isfinite(result.density).all() and result.density.min() >= 0


def test_predict_warns_about_elements_the_model_never_or_rarely_saw(tmp_path, capsys):
    from rhosr.checkpoint import save_model

    folder = tmp_path / "model"
    save_model(folder, _random_weights(build_model(LOCAL)), {
        "input": "sad", "grid": {"upscale": 2, "margin_angstrom": 4.0}, "val_err": 50.0,
        "train_entries": 40, "train_elements": {"C": 3, "H": 40, "O": 30}})
    args = ["-o", str(tmp_path / "out"), "--model", str(folder), "--quiet"]
    assert main(["predict", "qm9:1", "qm9:2", "qm9:3", *args]) == 0  # CH4, NH3, H2O
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "rhosr predict: warning: qm9_000001: C in 3 of its 40 training molecules only: "
        "expect larger errors around those atoms",
        "rhosr predict: warning: qm9_000002: N never in the model's training molecules "
        "(it saw C, H, O): expect larger errors around those atoms",
    ]
    assert len(list((tmp_path / "out").iterdir())) == 3  # a caveat, not an error


def test_shipped_model_records_its_training_elements():
    from rhosr.predict import element_caveat, load_predictor

    _, meta = load_predictor()
    assert set(meta["train_elements"]) == {"C", "F", "H", "N", "O"}  # QM9's elements
    assert element_caveat(meta, ["C", "H", "O"]) is None
    assert "S never" in element_caveat(meta, ["C", "S"])


def test_prediction_does_not_import_lightning():
    """Lightning costs seconds to import and prediction does not need it."""
    from tests.conftest import python_stdout

    code = ("import sys; from rhosr.molecule import read_molecule; from rhosr.predict import predict; "
            "predict(read_molecule('qm9:3'), runtime='torch'); print('lightning' in sys.modules)")
    assert python_stdout(code) == "False"


def test_tiles_much_smaller_than_their_halo_warn_about_the_cost():
    from rhosr.errors import RhosrWarning
    from rhosr.inference import tiling_overhead

    model = _random_weights(build_model(LOCAL)).eval()
    coarse = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)
    assert tiling_overhead(model, coarse.shape, 6) < tiling_overhead(model, coarse.shape, 2)
    with pytest.warns(RhosrWarning, match="the work of one whole-box pass"):
        small = predict_array(model, coarse, 5.0, 0.02, tile=2)
    whole = predict_array(model, coarse, 5.0, 0.02)
    np.testing.assert_allclose(small, whole, rtol=1e-5, atol=1e-6 * whole.max())
