"""The dataset store: atomic entries, crops, re-gridding from the density matrix, inspection."""

import json

import numpy as np
import pytest

from rhosr.config import get_preset
from rhosr.dft import density_on_mesh
from rhosr.errors import InputError
from rhosr.grid import BOHR_ANGSTROM, Grid
from rhosr.labelling import LabelSettings, label_item, pending, run_labelling
from rhosr.molecule import Molecule
from rhosr.sources import read_source
from rhosr.store import DatasetStore, Entry


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    """Two tiny QM9 molecules labelled in-process with the tiny preset."""
    path = tmp_path_factory.mktemp("store") / "qm9.zarr"
    preset = get_preset("tiny")
    store = DatasetStore.create(path, preset.to_dict(), atrocious=True)
    items = read_source("qm9:1-3", "train") + read_source("qm9:1-3", "test")
    summary = run_labelling(items, LabelSettings(str(path), preset, atrocious=True), workers=0)
    assert summary.failed == 0
    return store


def test_entries_complete_and_integrate(labelled_store):
    ids = labelled_store.entry_ids()
    assert ids == sorted(ids) and len(ids) >= 1
    for entry_id in ids:
        entry = labelled_store.read_entry(entry_id, ("sad", "label", "sad_atrocious", "dm"))
        grid = Grid.from_dict(entry.meta["grid"])
        n_e = entry.meta["n_electrons"]
        assert entry.label.shape == grid.fine_mesh and entry.sad.shape == grid.coarse_mesh
        assert entry.label.sum() * grid.voxel_volume("fine") == pytest.approx(n_e, rel=1e-6)
        assert entry.sad.sum() * grid.voxel_volume("coarse") == pytest.approx(n_e, rel=1e-4)
        assert entry.sad_atrocious.shape == grid.coarse_mesh
        for key in ("energy", "homo", "lumo", "scf_cycles", "preset", "versions", "basis"):
            assert key in entry.meta


def test_splits_are_kept_apart(labelled_store):
    train, test = labelled_store.entry_ids("train"), labelled_store.entry_ids("test")
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(labelled_store.entry_ids())


def test_regrid_from_density_matrix_gives_stored_label(labelled_store):
    entry_id = labelled_store.entry_ids()[0]
    entry = labelled_store.read_entry(entry_id, ("label", "dm"))
    grid = Grid.from_dict(entry.meta["grid"])
    from ase import Atoms

    positions = np.array(entry.meta["positions_bohr"]) * BOHR_ANGSTROM
    mol = Molecule(Atoms(entry.meta["symbols"], positions), entry.meta["charge"], entry.meta["spin"])
    rho = density_on_mesh(mol, grid, entry.dm, entry.meta["preset"]["density_eval"])
    np.testing.assert_allclose(rho, entry.label, rtol=1e-6, atol=1e-9)  # stored as float32


def test_random_crop_matches_whole_arrays_with_wrap(labelled_store):
    entry_id = labelled_store.entry_ids()[0]
    entry = labelled_store.read_entry(entry_id)
    mesh = entry.sad.shape
    start = (mesh[0] - 3, 1, mesh[2] - 1)  # wraps on x and z
    sad, label = labelled_store.read_crop(entry_id, start, (8, 8, 8))
    expect_sad = np.roll(entry.sad, [-s for s in start], axis=(0, 1, 2))[:8, :8, :8]
    expect_label = np.roll(entry.label, [-2 * s for s in start], axis=(0, 1, 2))[:16, :16, :16]
    np.testing.assert_array_equal(sad, expect_sad.astype(np.float32))
    np.testing.assert_array_equal(label, expect_label.astype(np.float32))


def test_partial_write_is_invisible_and_cleaned(labelled_store, tmp_path):
    store = DatasetStore.create(tmp_path / "s", get_preset("tiny").to_dict())
    stale = store.path / ".tmp" / "x.notahost.1.abc"
    stale.mkdir()
    dead = store.path / ".tmp" / f"y.{__import__('socket').gethostname()}.999999999.abc"
    dead.mkdir()
    assert store.entry_ids() == []
    assert store.cleanup_stale() == 1 and stale.exists() and not dead.exists()


def test_duplicate_write_is_refused(labelled_store):
    entry_id = labelled_store.entry_ids()[0]
    entry = labelled_store.read_entry(entry_id)
    assert labelled_store.write_entry(Entry(entry.meta, sad=entry.sad, label=entry.label)) is False


def test_store_settings_must_match(labelled_store):
    with pytest.raises(InputError, match="preset"):
        DatasetStore.create(labelled_store.path, get_preset("fast").to_dict(), atrocious=True)
    with pytest.raises(InputError, match="not a rhosr dataset store"):
        DatasetStore.open(labelled_store.path / "entries")


def test_failures_recorded_and_skipped(tmp_path):
    (tmp_path / "mols").mkdir()
    (tmp_path / "mols" / "h.xyz").write_text("1\n\nH 0 0 0\n")  # odd electrons, spin 0
    preset = get_preset("tiny")
    store = DatasetStore.create(tmp_path / "s", preset.to_dict())
    items = read_source(str(tmp_path / "mols"))
    result = label_item(items[0], LabelSettings(str(store.path), preset))
    assert not result["ok"] and "spin" in result["reason"]
    assert "spin" in store.failures()["h"]["reason"]
    assert pending(items, store) == [] and pending(items, store, retry_failed=True) == items


def test_store_cli_info_and_export(labelled_store, run_cli, tmp_path):
    code, out, _ = run_cli("store", "info", labelled_store.path, "--json")
    info = json.loads(out)
    assert code == 0 and info["entries"] == len(labelled_store.entry_ids()) and info["disk_bytes"] > 0
    entry_id = labelled_store.entry_ids()[0]
    code, out, _ = run_cli("store", "export", labelled_store.path, entry_id, "-o", tmp_path / "x.cube")
    assert code == 0 and (tmp_path / "x.cube").exists()
    code, _, err = run_cli("store", "export", labelled_store.path, "nope", "-o", tmp_path / "y.cube")
    assert code == 2 and "no complete entry" in err


def test_qm9_split_is_committed_and_disjoint():
    from rhosr.qm9 import load_split

    split = load_split()
    assert len(split["test"]) == 10_000 and len(split["validation"]) == 1_000
    sets = [set(v.tolist()) for v in split.values()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(map(len, sets)) == 130_831


def test_sources_trajectory_and_database(tmp_path, water_xyz):
    import ase.db
    import ase.io

    frames = [ase.io.read(water_xyz)] * 3
    ase.io.write(tmp_path / "traj.xyz", frames)
    ids = [i.id for i in read_source(str(tmp_path / "traj.xyz"))]
    assert ids == ["traj_00000", "traj_00001", "traj_00002"]
    db = ase.db.connect(str(tmp_path / "m.db"))
    db.write(frames[0], total_charge=1, spin=1)
    items = read_source(str(tmp_path / "m.db"), split="validation")
    assert items[0].charge == 1 and items[0].spin == 1 and items[0].split == "validation"
    with pytest.raises(InputError, match="QM9 ranges"):
        read_source("qm9:a-b")


def test_store_accepts_preset_with_new_documentation(tmp_path):
    preset = get_preset("tiny").to_dict()
    DatasetStore.create(tmp_path / "s", preset)
    reopened = DatasetStore.create(tmp_path / "s", {**preset, "label_error_vs_paper": "re-measured"})
    assert reopened.meta["preset"]["name"] == "tiny"


def test_store_accepts_fast_labels_after_scf_convergence_change(tmp_path):
    fast = get_preset("fast").to_dict()
    # a store made by ``fast`` before its SCF settings changed (no scf_* keys, conv_tol 1e-9)
    before = {k: v for k, v in fast.items() if not k.startswith("scf_") or k == "scf_ke_cutoff"}
    DatasetStore.create(tmp_path / "s", {**before, "conv_tol": 1e-9})
    assert DatasetStore.create(tmp_path / "s", fast).meta["preset"]["conv_tol"] == 1e-9
    with pytest.raises(InputError, match="preset"):  # a different SCF mesh is another recipe
        DatasetStore.create(tmp_path / "s", {**fast, "scf_ke_cutoff": 50.0})
