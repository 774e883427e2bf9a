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
