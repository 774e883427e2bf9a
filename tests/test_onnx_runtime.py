"""Prediction with ONNX Runtime: the exported graph equals the PyTorch model, stale or damaged
files are refused or fall back to PyTorch, and the ONNX path never imports PyTorch."""

import shutil
import warnings

import numpy as np
import pytest
from tests.conftest import python_stdout, random_weights

from rhosr.errors import InputError, RhosrWarning

WATER = "3\n\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469\n"
CONFIGS = {
    "srresnet_sad_linear": {"inputs": ["sad"], "trunk": {"name": "srresnet", "num_feat": 4, "num_block": 1,
                                                         "kernel_first": 3, "kernel": 3, "norm": "none"},
                            "base": "sad_linear"},
    "unet_groups_sad_fine": {"inputs": ["sad", {"name": "sad_groups", "groups": [1, 14, 15, 16, 17]}],
                             "trunk": {"name": "unet", "channels": [4, 8], "head_kernel": 1},
                             "base": "sad_fine"},
    "fitted_prior": {"inputs": ["sad"], "trunk": {"name": "srresnet", "num_feat": 4, "num_block": 1,
                                                  "norm": "none"},
                     "base": {"name": "fitted_prior", "elements": ["H", "O"], "exponents": [0.5, 4.0],
                              "coefficients": [[0.01, -0.02], [0.03, 0.01]]}},
    "bonded_prior": {"inputs": ["sad"], "trunk": {"name": "srresnet", "num_feat": 4, "num_block": 1,
                                                  "norm": "none"},
                     "base": {"name": "fitted_prior", "elements": ["H", "O"], "exponents": [0.5, 4.0],
                              "typed": True, "kinds": ["H1", "O2"],
                              "coefficients": [[0.01, -0.02], [0.03, 0.01]],
                              "bond_positions": [0.5], "bond_kinds": ["H1-O2"],
                              "bond_coefficients": [[0.01, -0.01, 0.02, 0.0]]}},
}


def _model_folder(tmp_path, name: str, seed: int = 0):
    from rhosr.checkpoint import save_model
    from rhosr.model import build_model

    folder = tmp_path / name
    model = build_model(CONFIGS[name])
    save_model(folder, random_weights(model, seed).eval(),
               {"grid": {"upscale": 2, "margin_angstrom": 3.0}, "val_err": 50.0})
    return folder


@pytest.fixture
def water(tmp_path):
    from rhosr.molecule import read_molecule

    path = tmp_path / "water.xyz"
    path.write_text(WATER)
    return read_molecule(str(path))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_exported_graph_predicts_what_pytorch_predicts(name, tmp_path, water):
    from rhosr.onnx_export import export_onnx
    from rhosr.predict import predict

    folder = _model_folder(tmp_path, name)
    assert export_onnx(folder) < 1e-5
    fast = predict(water, folder, runtime="onnx")
    slow = predict(water, folder, runtime="torch")
    assert fast.timings["runtime"] == "onnxruntime" and slow.timings["runtime"] == "torch"
    assert fast.density.shape == slow.density.shape
    assert np.abs(fast.density - slow.density).max() <= 1e-5 * slow.density.max()
    assert fast.n_electrons == pytest.approx(8.0, rel=1e-6)
    auto = predict(water, folder)  # auto: the ONNX graph where it can
    assert auto.timings["runtime"] == "onnxruntime"
    assert predict(water, folder, rotations=2).timings["runtime"] == "torch"


def test_weights_changed_after_export_are_refused_or_run_with_pytorch(tmp_path, water):
    from rhosr.onnx_export import export_onnx
    from rhosr.predict import predict

    folder = _model_folder(tmp_path, "srresnet_sad_linear")
    export_onnx(folder)
    other = _model_folder(tmp_path / "other", "srresnet_sad_linear", seed=1)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(InputError, match="exported from other weights"):
        predict(water, folder, runtime="onnx")
    with pytest.warns(RhosrWarning, match="running the model with PyTorch instead"):
        result = predict(water, folder)
    want = predict(water, other, runtime="torch")
    assert result.timings["runtime"] == "torch"
    assert np.array_equal(result.density, want.density)


def test_damaged_graph_is_a_one_line_error(tmp_path, water):
    from rhosr.onnx_export import export_onnx
    from rhosr.predict import predict

    folder = _model_folder(tmp_path, "srresnet_sad_linear")
    export_onnx(folder)
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable rhosr ONNX model") as err:
        predict(water, folder, runtime="onnx")
    assert "\n" not in str(err.value)


def test_options_the_graph_cannot_do_are_refused_with_onnx(tmp_path, water):
    from rhosr.predict import predict

    with pytest.raises(InputError, match="--tile and --rotations need --runtime torch"):
        predict(water, runtime="onnx", tile=8)
    with pytest.raises(InputError, match="runs on the CPU"):
        predict(water, runtime="onnx", device="cuda")
    folder = _model_folder(tmp_path, "srresnet_sad_linear")  # never exported
    with pytest.raises(InputError, match="no model.onnx"):
        predict(water, folder, runtime="onnx")
    with pytest.raises(InputError, match="more than"):
        predict(water, runtime="onnx", max_memory_gb=1e-6)


def test_a_box_too_large_for_the_budget_runs_tiled_with_pytorch(tmp_path, water):
    from rhosr.grid import place_in_box
    from rhosr.onnx_export import export_onnx
    from rhosr.predict import predict

    folder = _model_folder(tmp_path, "srresnet_sad_linear")
    export_onnx(folder)
    whole = predict(water, folder)
    _, grid = place_in_box(water, 2, 3.0)
    forward_gb = load_onnx(folder).bytes_per_voxel * np.prod(grid.coarse_mesh) / 1e9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RhosrWarning)  # small tiles cost many whole-box passes
        small = predict(water, folder, max_memory_gb=0.6 * forward_gb)
    assert small.timings["runtime"] == "torch" and small.timings["tile"] is not None
    assert np.abs(small.density - whole.density).max() <= 1e-5 * whole.density.max()


def load_onnx(folder):
    from rhosr.onnx_runtime import load_onnx_model

    return load_onnx_model(folder)


def test_shipped_model_has_a_current_graph():
    """Shipping new weights without re-exporting would silently cost 1.5 s a call."""
    from rhosr.onnx_runtime import load_onnx_model
    from rhosr.predict import model_folder, shipped_models

    for name in shipped_models():
        assert load_onnx_model(model_folder(name)).upscale == 2


def test_predict_cli_with_onnx_never_imports_torch(tmp_path):
    code = ("import sys; from rhosr.cli import main; "
            f"code = main(['predict', 'qm9:3', '-o', {str(tmp_path / 'w.cube')!r}, '--quiet']); "
            "print(code, 'torch' in sys.modules, 'pyscf' in sys.modules)")
    assert python_stdout(code).split()[-3:] == ["0", "False", "False"]
    assert (tmp_path / "w.cube").stat().st_size > 0


def test_importing_pyscf_after_rhosr_imports_torch_first():
    """Both bring an OpenMP runtime; torch's must be loaded first (tests/test_threads.py)."""
    code = ("import sys, rhosr; assert 'torch' not in sys.modules; import pyscf; "
            "print('torch' in sys.modules)")
    assert python_stdout(code) == "True"


def test_export_onnx_command(tmp_path, run_cli):
    folder = _model_folder(tmp_path, "srresnet_sad_linear")
    code, out, _ = run_cli("export-onnx", folder)
    assert code == 0 and "model.onnx: written" in out and (folder / "model.onnx").exists()
    code, _, err = run_cli("export-onnx", tmp_path / "nowhere")
    assert code == 2 and err.count("\n") == 1 and "no such model folder" in err


def test_cube_root_inputs_export_and_run_in_onnx_runtime_as_in_pytorch(tmp_path):
    """A model with ``input_transform: cbrt`` and an ``output_scale`` exports (checked against
    PyTorch by the export) and predicts the same density in both runtimes."""
    import numpy as np
    from tests.conftest import random_weights

    from rhosr.checkpoint import save_model
    from rhosr.model import build_model
    from rhosr.molecule import read_molecule
    from rhosr.onnx_export import export_onnx
    from rhosr.predict import predict

    config = {"trunk": {"name": "unet", "channels": [4, 6], "blocks": 1}, "base": "sad_fine",
              "input_transform": "cbrt", "output_scale": 0.01,
              "inputs": ["sad", {"name": "sad_elements", "elements": ["H", "O"]}]}
    save_model(tmp_path / "m", random_weights(build_model(config), seed=1),
               {"grid": {"upscale": 2, "margin_angstrom": 4.0}})
    assert export_onnx(tmp_path / "m") < 1e-5
    water = read_molecule("qm9:3")
    onnx = predict(water, str(tmp_path / "m"), runtime="onnx").density
    torch_density = predict(water, str(tmp_path / "m"), runtime="torch").density
    assert np.abs(onnx - torch_density).max() <= 1e-5 * torch_density.max()


def test_pixel_shuffle_exports_as_a_transposed_convolution_to_the_bit(tmp_path):
    """In an ONNX graph the 3D pixel shuffle is a grouped transposed convolution with 0/1
    weights (ONNX Runtime's 8-axis transpose is slower); it must give PyTorch's values exactly."""
    import onnx
    import onnxruntime as ort
    import torch

    from rhosr.layers import pixel_shuffle_3d

    class Shuffle(torch.nn.Module):
        def forward(self, x):
            return pixel_shuffle_3d(x, 2)

    x = torch.randn(1, 3 * 8, 5, 4, 7)
    path = tmp_path / "shuffle.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Shuffle(), (x,), str(path), input_names=["x"],
                          dynamic_axes={"x": {2: "X", 3: "Y", 4: "Z"}}, opset_version=17, dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "ConvTranspose" in ops and "Transpose" not in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((5, 4, 7), (6, 3, 2)):
        x = torch.randn(1, 3 * 8, *shape)
        np.testing.assert_array_equal(session.run(None, {"x": x.numpy()})[0], Shuffle()(x).numpy())


def test_threads_flag_sets_the_networks_threads_and_not_the_density(tmp_path, run_cli, monkeypatch):
    """``--threads N``: ONNX Runtime's intra-op threads (default: every CPU, or OMP_NUM_THREADS),
    for one molecule and a batch; the density does not depend on it; 0 is a one-line error."""
    import rhosr.predict
    from rhosr.onnx_export import export_onnx
    from rhosr.onnx_runtime import default_threads, load_onnx_model

    folder = _model_folder(tmp_path, "unet_groups_sad_fine")
    export_onnx(folder)
    assert load_onnx_model(folder, threads=1).session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    asked = []
    real = rhosr.predict.load_predictor

    def recording(*a, **k):
        asked.append(a[3] if len(a) > 3 else k.get("onnx_threads"))
        return real(*a, **k)

    monkeypatch.setattr(rhosr.predict, "load_predictor", recording)
    (tmp_path / "w.xyz").write_text(WATER)
    code, _, _ = run_cli("predict", tmp_path / "w.xyz", tmp_path / "w.xyz", "-o", tmp_path / "batch",
                         "--model", folder, "--quiet", "--threads", "2")
    assert code == 0 and set(asked) == {2}
    asked.clear()
    code, _, _ = run_cli("predict", tmp_path / "w.xyz", "-o", tmp_path / "one.cube", "--model", folder,
                         "--quiet")
    assert code == 0 and set(asked) == {None}  # the default
    asked.clear()
    code, _, _ = run_cli("predict", tmp_path / "w.xyz", "-o", tmp_path / "one1.cube", "--model", folder,
                         "--quiet", "--threads", "1")
    assert code == 0 and set(asked) == {1}
    from rhosr.io import read_density_file

    a, b = (read_density_file(tmp_path / name).rho for name in ("one.cube", "one1.cube"))
    assert np.abs(a - b).max() <= 1e-5 * a.max()
    code, _, err = run_cli("predict", tmp_path / "w.xyz", "-o", tmp_path / "bad.cube", "--model", folder,
                           "--threads", "0")
    assert code == 2 and err.count("\n") == 1 and "--threads" in err and not (tmp_path / "bad.cube").exists()
