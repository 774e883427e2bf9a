"""Damaged store entries are detected, never used; concurrent label runs are safe.

Damage is made by hand on copies of real tiny-preset stores: a label chunk deleted or cut in
half, an entry ``zarr.json`` deleted or half-written, a stray file in ``entries/``.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rhosr.config import get_preset
from rhosr.errors import InputError
from rhosr.grid import Grid
from rhosr.labelling import LabelSettings, label_item, run_labelling
from rhosr.sources import read_source
from rhosr.store import DatasetStore

H2 = "2\n\nH 0 0 0\nH 0 0 0.74\n"
WATER = "3\n\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469\n"
HF = "2\n\nH 0 0 0\nF 0 0 0.92\n"
HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def store_copy(tiny_store, tmp_path):
    """A copy of the session's tiny store (train: water, hf; validation: h2o_bent)."""
    shutil.copytree(tiny_store, tmp_path / "store")
    return DatasetStore.open(tmp_path / "store")


@pytest.fixture(scope="module")
def h2_water_store(tmp_path_factory):
    """H2 and water labelled with the tiny preset, and their source folder."""
    root = tmp_path_factory.mktemp("h2_water")
    source = root / "mols"
    source.mkdir()
    (source / "h2.xyz").write_text(H2)
    (source / "water.xyz").write_text(WATER)
    preset = get_preset("tiny")
    store = DatasetStore.create(root / "store", preset.to_dict(), margin_angstrom=3.0)
    summary = run_labelling(read_source(str(source)), LabelSettings(str(store.path), preset,
                                                                    margin_angstrom=3.0), 0)
    assert summary.done == 2
    return root


@pytest.fixture
def h2_water(h2_water_store, tmp_path):
    shutil.copytree(h2_water_store, tmp_path, dirs_exist_ok=True)
    return tmp_path / "mols", DatasetStore.open(tmp_path / "store")


def _label_chunk(store, entry_id, key="c/0/0/0"):
    return store.path / "entries" / entry_id / "label" / key


def _remove_chunk(store, entry_id):
    _label_chunk(store, entry_id).unlink()


def _truncate_chunk(store, entry_id):
    path = _label_chunk(store, entry_id)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _label_electrons(store, entry_id):
    entry = store.read_entry(entry_id, ("label",))
    return entry.label.sum() * Grid.from_dict(entry.meta["grid"]).voxel_volume("fine")


# -- detection --------------------------------------------------------------------------------
@pytest.mark.parametrize("damage, words", [(_remove_chunk, "label chunk c/0/0/0 is missing"),
                                           (_truncate_chunk, "label chunk c/0/0/0 has")])
def test_read_entry_damaged_chunk_is_an_error_not_zeros(store_copy, damage, words):
    from rhosr.integrity import DamagedEntryError

    damage(store_copy, "water")
    with pytest.raises(DamagedEntryError, match=words) as info:
        store_copy.read_entry("water")
    assert info.value.entry_id == "water"
    with pytest.raises(DamagedEntryError, match="water"):
        store_copy.read_crop("water", (0, 0, 0), (4, 4, 4))
    assert words in store_copy.check("water")
    assert store_copy.check("hf") is None
    assert _label_electrons(store_copy, "hf") == pytest.approx(8.0, rel=1e-6)  # GTH valence electrons


def test_read_crop_away_from_the_damage_still_reads(store_copy):
    entry = store_copy.read_entry("water")
    _remove_chunk(store_copy, "water")
    mesh = entry.sad.shape
    start = tuple(n - 2 for n in mesh)
    assert min(2 * n - 4 for n in mesh) >= 32  # the crop reads fine chunk c/1/1/1 only, not c/0/0/0
    sad, label = store_copy.read_crop("water", start, (2, 2, 2))
    np.testing.assert_array_equal(label, entry.label[-4:, -4:, -4:].astype(np.float32))


def test_entry_metadata_damage_and_stray_file_do_not_stop_the_store(store_copy):
    from rhosr.integrity import DamagedEntryError

    (store_copy.path / "entries" / "water" / "zarr.json").unlink()
    half = store_copy.path / "entries" / "hf" / "zarr.json"
    half.write_text(half.read_text()[:200])
    (store_copy.path / "entries" / "notes.txt").write_text("a stray file\n")
    ids, damaged = store_copy.scan()
    assert ids == ["h2o_bent"] and store_copy.entry_ids("validation") == ["h2o_bent"]
    assert store_copy.entry_ids("train") == []
    assert "no zarr.json" in damaged["water"] and "half-written" in damaged["hf"]
    assert "stray file" in damaged["notes.txt"]
    with pytest.raises(DamagedEntryError, match="entry hf is damaged"):
        store_copy.read_entry("hf")


def test_old_entries_without_checksums_still_verify(store_copy):
    """Entries written before the integrity record: presence, shape, decoding, electron count."""
    from rhosr.integrity import INTEGRITY_KEY, DamagedEntryError

    for entry_id in ("water", "hf"):
        meta_path = store_copy.path / "entries" / entry_id / "zarr.json"
        meta = json.loads(meta_path.read_text())
        del meta["attributes"][INTEGRITY_KEY]
        meta_path.write_text(json.dumps(meta))
    assert store_copy.check("water", deep=True) is None
    _truncate_chunk(store_copy, "water")
    assert store_copy.check("water") is None  # no recorded size: the quick check cannot tell
    assert "label cannot be decoded" in store_copy.check("water", deep=True)
    with pytest.raises(DamagedEntryError, match="label cannot be read"):
        store_copy.read_entry("water")
    _remove_chunk(store_copy, "hf")
    assert "label chunk c/0/0/0 is missing" in store_copy.check("hf")


def test_verify_finds_a_flipped_bit(store_copy):
    path = _label_chunk(store_copy, "water")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    assert store_copy.check("water") is None  # same size: only reading the values tells
    assert "label cannot be decoded" in store_copy.check("water", deep=True)
    assert store_copy.verify() == {"water": store_copy.check("water", deep=True)}


# -- the commands -----------------------------------------------------------------------------
def _damage_three_ways(store):
    _remove_chunk(store, "water")
    half = store.path / "entries" / "hf" / "zarr.json"
    half.write_text(half.read_text()[:200])
    (store.path / "entries" / "notes.txt").write_text("a stray file\n")


def test_store_info_reports_damaged_entries(store_copy, run_cli):
    _damage_three_ways(store_copy)
    code, out, _ = run_cli("store", "info", store_copy.path, "--json")
    info = json.loads(out)
    assert code == 0 and info["entries"] == 1 and info["per_split"]["train"] == 0
    assert set(info["damaged"]) == {"water", "hf", "notes.txt"}
    code, out, _ = run_cli("store", "info", store_copy.path)
    assert code == 0 and "damaged    3" in out
    assert "damaged water: label chunk c/0/0/0 is missing" in out


def test_store_verify_repair_then_label_relabels(h2_water, run_cli):
    source, store = h2_water
    _truncate_chunk(store, "h2")
    code, out, _ = run_cli("store", "verify", store.path)
    assert code == 1 and "damaged h2: label chunk c/0/0/0 has" in out and "1 damaged" in out
    assert store.has("h2")  # verify alone changes nothing
    code, out, _ = run_cli("store", "verify", store.path, "--repair")
    assert code == 0 and "moved to quarantine" in out
    assert not store.has("h2") and len(list((store.path / "quarantine").glob("h2.*.json"))) == 1
    code, _, err = run_cli("label", source, "--store", store.path, "--preset", "tiny", "--margin", "3",
                           "--workers", "0")
    assert code == 0 and "done 1, failed 0, skipped 1" in err
    assert store.check("h2", deep=True) is None
    assert _label_electrons(store, "h2") == pytest.approx(2.0, rel=1e-6)
    code, out, _ = run_cli("store", "verify", store.path)
    assert code == 0 and "verified 2 entries" in out and "0 damaged" in out


def test_label_relabels_a_damaged_entry_instead_of_skipping_it(h2_water, run_cli):
    source, store = h2_water
    _remove_chunk(store, "h2")
    code, _, err = run_cli("label", source, "--store", store.path, "--preset", "tiny", "--margin", "3",
                           "--workers", "0")
    assert code == 0 and "relabelling damaged entry h2" in err and "done 1, failed 0" in err
    assert store.check("h2", deep=True) is None
    assert len(list((store.path / "quarantine").glob("h2.*.json"))) == 1  # moved, not deleted


def test_evaluate_skips_damaged_entries_by_name(store_copy, tiny_model_dir, run_cli, tmp_path):
    _remove_chunk(store_copy, "water")
    code, out, err = run_cli("evaluate", "--store", store_copy.path, "--split", "train",
                             "--model", tiny_model_dir, "-o", tmp_path / "report")
    assert code == 0 and out.startswith("1 molecules")
    assert "warning: skipping damaged entry water: label chunk c/0/0/0 is missing" in err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [m["id"] for m in report["molecules"]] == ["hf"]
    assert "water" in report["context"]["skipped_damaged"]


def test_training_data_skips_damaged_entries_and_refuses_later_damage(store_copy):
    from rhosr.data import DensityDataset
    from rhosr.integrity import DamagedEntryError

    _remove_chunk(store_copy, "water")
    with pytest.warns(UserWarning, match="skipping damaged entry water: label chunk"):
        data = DensityDataset(str(store_copy.path), "train", ids=["hf", "water"])
    assert data.ids == ["hf"] and set(data.damaged) == {"water"}
    assert data[0]["id"] == "hf"
    _truncate_chunk(store_copy, "hf")  # damaged while training runs
    with pytest.raises(DamagedEntryError, match="entry hf is damaged"):
        data[0]


def test_store_export_refuses_damaged_entries_and_paths(store_copy, run_cli, tmp_path):
    _remove_chunk(store_copy, "water")
    code, _, err = run_cli("store", "export", store_copy.path, "water", "-o", tmp_path / "w.cube")
    assert code == 2 and not (tmp_path / "w.cube").exists()
    assert err.strip() == err.strip().splitlines()[0]  # one line
    assert "error: entry water is damaged: label chunk c/0/0/0 is missing" in err
    for not_an_id in (store_copy.path / "entries" / "hf", "../store/entries/hf", ".."):
        code, _, err = run_cli("store", "export", store_copy.path, not_an_id, "-o", tmp_path / "x.cube")
        assert code == 2 and "not an entry id" in err and not (tmp_path / "x.cube").exists()


# -- concurrency ------------------------------------------------------------------------------
def test_store_creation_is_atomic_when_two_runs_meet(tmp_path, monkeypatch):
    """Two creators reach the write at the same moment: exactly one creates the store."""
    import zarr

    barrier = threading.Barrier(2, timeout=30)
    original = zarr.open_group
    first_write = threading.local()

    def open_group(store, *args, **kwargs):
        if kwargs.get("mode") == "w" and not getattr(first_write, "done", False):
            first_write.done = True
            barrier.wait()
        return original(store, *args, **kwargs)

    monkeypatch.setattr(zarr, "open_group", open_group)
    outcomes = {}

    def create(name):
        try:
            DatasetStore.create(tmp_path / "store", get_preset(name).to_dict())
            outcomes[name] = "created"
        except InputError as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=create, args=(name,)) for name in ("tiny", "fast")]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert sorted(outcomes.values()).count("created") == 1, outcomes
    winner = next(name for name, outcome in outcomes.items() if outcome == "created")
    loser = next(outcome for outcome in outcomes.values() if outcome != "created")
    assert "store was made with preset" in loser
    assert DatasetStore.open(tmp_path / "store").meta["preset"]["name"] == winner
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no temporary left behind


def _label_together(tmp_path, source, presets):
    """Start one ``rhosr label`` per preset, meeting at the store's creation; their results."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(HELPERS / "label_together.py"), str(barrier),
                               str(len(presets)), "label", str(source), "--store", str(tmp_path / "store"),
                               "--preset", preset, "--workers", "0", "--margin", "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for preset in presets]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errs)]


@pytest.mark.slow
def test_label_runs_with_different_presets_cannot_share_a_new_store(tmp_path):
    source = tmp_path / "mols"
    source.mkdir()
    (source / "h2.xyz").write_text(H2)
    results = _label_together(tmp_path, source, ["tiny", "fast"])
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(err for code, err in results if code == 2)
    assert err.strip().splitlines()[-1].startswith("rhosr label: error: ")
    assert "store was made with preset" in err and "Traceback" not in err
    store = DatasetStore.open(tmp_path / "store")
    assert store.entry_ids() == ["h2"]
    assert store.entry_meta("h2")["preset"]["name"] == store.meta["preset"]["name"]


@pytest.mark.slow
def test_label_runs_side_by_side_compute_each_molecule_once(tmp_path):
    source = tmp_path / "mols"
    source.mkdir()
    for name, text in (("h2", H2), ("h2_long", H2.replace("0.74", "0.80")), ("hf", HF)):
        (source / f"{name}.xyz").write_text(text)
    results = _label_together(tmp_path, source, ["tiny", "tiny"])
    assert [code for code, _ in results] == [0, 0], results
    counts = [err.split("done ")[-1].split(" in ")[0] for _, err in results]  # "D, failed 0, skipped S"
    done = [int(c.split(",")[0]) for c in counts]
    skipped = [int(c.split("skipped ")[1]) for c in counts]
    assert sum(done) == 3, results  # each molecule computed (and reported done) by one run only
    assert [d + s for d, s in zip(done, skipped)] == [3, 3], results  # the rest: claimed or written
    store = DatasetStore.open(tmp_path / "store")
    assert store.entry_ids() == ["h2", "h2_long", "hf"]
    assert store.verify() == {} and not list((store.path / "claims").iterdir())


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_claim(store, entry_id, host, pid, age_s=0.0):
    folder = store.path / "claims"
    folder.mkdir(exist_ok=True)
    path = folder / f"{entry_id}.json"
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "old", "time": "then"}))
    if age_s:
        past = time.time() - age_s
        os.utime(path, (past, past))
    return path


def test_stale_claim_of_a_dead_pid_is_cleared(tmp_path):
    (tmp_path / "mols").mkdir()
    (tmp_path / "mols" / "h2.xyz").write_text(H2)
    preset = get_preset("tiny")
    store = DatasetStore.create(tmp_path / "store", preset.to_dict(), margin_angstrom=3.0)
    path = _write_claim(store, "h2", socket.gethostname(), _dead_pid())
    settings = LabelSettings(str(store.path), preset, margin_angstrom=3.0)
    result = label_item(read_source(str(tmp_path / "mols"))[0], settings)
    assert result["status"] == "done", result
    assert store.check("h2", deep=True) is None and not path.exists()


def test_live_claim_is_respected_and_old_claims_of_other_hosts_expire(tmp_path):
    from rhosr.claims import STALE_S, ClaimedElsewhere, claim

    (tmp_path / "mols").mkdir()
    (tmp_path / "mols" / "h2.xyz").write_text(H2)
    preset = get_preset("tiny")
    store = DatasetStore.create(tmp_path / "store", preset.to_dict())
    item = read_source(str(tmp_path / "mols"))[0]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_claim(store, "h2", socket.gethostname(), sleeper.pid)
        result = label_item(item, LabelSettings(str(store.path), preset))
        assert result["status"] == "skipped" and f"PID {sleeper.pid}" in result["reason"]
        assert not store.has("h2")
    finally:
        sleeper.kill()
        sleeper.wait()
    _write_claim(store, "h2", "another-host", 1, age_s=60)  # another host's claim, recent: held
    with pytest.raises(ClaimedElsewhere, match="another-host PID 1"):
        claim(store.path / "claims", "h2")
    _write_claim(store, "h2", "another-host", 1, age_s=STALE_S + 60)  # no heartbeat for too long
    with claim(store.path / "claims", "h2") as held:
        assert json.loads(held.path.read_text())["host"] == socket.gethostname()
    assert not held.path.exists()  # released


def test_claim_heartbeat_keeps_a_long_claim_fresh(tmp_path, monkeypatch):
    import rhosr.claims as claims

    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    with claims.claim(tmp_path, "mol") as held:
        past = time.time() - 2 * claims.STALE_S
        os.utime(held.path, (past, past))  # as if the holder had been silent for too long
        deadline = time.time() + 10
        while held.path.stat().st_mtime < past + 1 and time.time() < deadline:
            time.sleep(0.05)
        assert claims.stale_reason(held.path, claims.read_claim(held.path)) is None
        with pytest.raises(claims.ClaimedElsewhere):
            claims.claim(tmp_path, "mol")


def test_export_refuses_an_entry_with_a_missing_array(store_copy, tmp_path, run_cli):
    """An entry whose density matrix is gone is damaged: export names it instead of writing its label."""
    import shutil

    shutil.rmtree(store_copy.path / "entries" / "water" / "dm")
    code, _, err = run_cli("store", "export", store_copy.path, "water", "-o", tmp_path / "x.cube")
    assert code == 2 and "water" in err and "damaged" in err, err
    assert not (tmp_path / "x.cube").exists()
