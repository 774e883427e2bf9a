import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def water_xyz(tmp_path):
    path = tmp_path / "water.xyz"
    path.write_text(
        "3\nwater\nO 0.000 0.000 0.117\nH 0.000 0.757 -0.469\nH 0.000 -0.757 -0.469\n"
    )
    return path


@pytest.fixture
def run_cli(capsys):
    """Run the rhosr CLI in-process; return (exit code, stdout, stderr)."""
    from rhosr.cli import main

    def _run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


TINY_TRAINING_MOLECULES = {
    "train": {"water": "3\n\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469\n",
              "hf": "2\n\nH 0 0 0\nF 0 0 0.92\n"},
    "validation": {"h2o_bent": "3\n\nO 0 0 0.1\nH 0 0.78 -0.47\nH 0 -0.74 -0.49\n"},
}


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A real store: two tiny training molecules and one validation molecule, tiny preset."""
    from rhosr.config import get_preset
    from rhosr.labelling import LabelSettings, run_labelling
    from rhosr.sources import read_source
    from rhosr.store import DatasetStore

    root = tmp_path_factory.mktemp("tiny_store")
    preset = get_preset("tiny")
    margin = 3.0  # Angstrom: smaller boxes keep the training tests fast (2.0 makes water SCF unstable)
    store = DatasetStore.create(root / "store", preset.to_dict(), margin_angstrom=margin)
    for split, molecules in TINY_TRAINING_MOLECULES.items():
        folder = root / split
        folder.mkdir()
        for name, text in molecules.items():
            (folder / f"{name}.xyz").write_text(text)
        settings = LabelSettings(str(store.path), preset, margin_angstrom=margin)
        summary = run_labelling(read_source(str(folder), split), settings, 0)
        assert summary.failed == 0
    return store.path


def benchmark_module(name: str):
    """The script ``benchmarks/NAME.py`` imported as module ``NAME`` (registered in
    ``sys.modules``: dataclasses look their module up)."""
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def python_stdout(code: str) -> str:
    """Run ``code`` in a fresh Python process (nothing imported yet); its stdout, stripped."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def random_weights(model, seed=0):
    """Give a model random weights (an untrained network whose output is not just its input)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def _local_tiny_model():
    from rhosr.model import model_config

    return model_config({"num_feat": 4, "kernel_first": 3, "kernel": 3, "num_block": 2, "num_up": 1,
                         "norm": "none", "residual_sad": True})


LOCAL_TINY_MODEL = _local_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained local (norm: none) tiny model saved as a model folder."""
    from rhosr.checkpoint import save_model
    from rhosr.model import build_model

    folder = tmp_path_factory.mktemp("model")
    save_model(folder, random_weights(build_model(LOCAL_TINY_MODEL)),
               {"input": "sad", "grid": {"upscale": 2, "margin_angstrom": 4.0}, "val_err": 50.0})
    return folder
