"""The labelling command: a real two-worker Dask LocalCluster, and SIGKILL then resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rhosr.grid import Grid
from rhosr.store import DatasetStore

TINY_MOLECULES = {
    "h2": "2\n\nH 0 0 0\nH 0 0 0.74\n",
    "hf": "2\n\nH 0 0 0\nF 0 0 0.92\n",
    "water": "3\n\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469\n",
    "nh3": "4\n\nN 0 0 0.1\nH 0 0.94 -0.27\nH 0.81 -0.47 -0.27\nH -0.81 -0.47 -0.27\n",
    "ch4": "5\n\nC 0 0 0\nH 0.63 0.63 0.63\nH -0.63 -0.63 0.63\nH -0.63 0.63 -0.63\nH 0.63 -0.63 -0.63\n",
    "lih": "2\n\nLi 0 0 0\nH 0 0 1.6\n",
}


@pytest.fixture
def molecules(tmp_path):
    folder = tmp_path / "mols"
    folder.mkdir()
    for name, text in TINY_MOLECULES.items():
        (folder / f"{name}.xyz").write_text(text)
    return folder


def _label_cmd(source, store, workers):
    return [sys.executable, "-m", "rhosr.cli", "label", str(source), "--store", str(store),
            "--preset", "tiny", "--workers", str(workers), "--threads-per-worker", "1"]


def _assert_complete_and_sound(store_path, expected_ids):
    store = DatasetStore.open(store_path)
    ids = store.entry_ids()
    assert ids == sorted(expected_ids)  # every entry, none duplicated
    for entry_id in ids:
        entry = store.read_entry(entry_id)
        grid = Grid.from_dict(entry.meta["grid"])
        n = entry.label.sum() * grid.voxel_volume("fine")
        assert n == pytest.approx(entry.meta["n_electrons"], rel=1e-6)  # not corrupt
        assert np.all(np.isfinite(entry.sad))


@pytest.mark.slow
def test_dask_local_cluster_two_workers(molecules, tmp_path):
    store = tmp_path / "store"
    result = subprocess.run(_label_cmd(molecules, store, 2), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "on 2 worker(s)" in result.stderr and "done 6, failed 0" in result.stderr
    _assert_complete_and_sound(store, TINY_MOLECULES)


@pytest.mark.slow
def test_sigkill_then_resume(molecules, tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(_label_cmd(molecules, store, 0), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    entries = store / "entries"
    while time.time() < deadline and not (entries.exists() and len(list(entries.iterdir())) >= 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job, as a crashed node would
    proc.wait()
    done_before = len(list(entries.iterdir()))
    assert 2 <= done_before < len(TINY_MOLECULES), "kill came too late to test resuming"
    result = subprocess.run(_label_cmd(molecules, store, 0), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{done_before} already in the store" in result.stderr
    _assert_complete_and_sound(store, TINY_MOLECULES)
    assert not any((store / ".tmp").iterdir())  # the killed writer's temporary was cleaned


@pytest.mark.slow
def test_existing_scheduler_path(molecules, tmp_path):
    """--scheduler: a cluster started elsewhere (here a LocalCluster in this process)."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        store = tmp_path / "store"
        cmd = _label_cmd(molecules, store, 1)[:-4] + ["--scheduler", cluster.scheduler_address,
                                                     "--threads-per-worker", "1", "--limit", "2"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    _assert_complete_and_sound(store, sorted(TINY_MOLECULES)[:2])


DEADLY_LABELLING = Path(__file__).parent / "helpers" / "label_with_a_deadly_molecule.py"


@pytest.mark.slow
def test_worker_death_is_a_recorded_failure_not_a_crash(tmp_path):
    """A molecule that kills its worker is recorded as failed; the others are labelled."""
    source = tmp_path / "mols"
    source.mkdir()
    for name in ("h2", "water"):
        (source / f"{name}.xyz").write_text(TINY_MOLECULES[name])
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a native crash prints its stack
    result = subprocess.run([sys.executable, str(DEADLY_LABELLING), str(source), str(store), "water"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["done"], summary["failed"]) == (1, 1), result.stderr
    _assert_complete_and_sound(store, ["h2"])
    assert "KilledWorker" in DatasetStore.open(store).failures()["water"]["reason"]


def test_unreadable_file_is_a_recorded_failure_and_the_rest_is_labelled(tmp_path, run_cli):
    source = tmp_path / "mols"
    source.mkdir()
    (source / "water.xyz").write_text(TINY_MOLECULES["water"])
    (source / "junk.xyz").write_text("not a structure\n")
    (source / "xx.xyz").write_text("1\n\nXx 0 0 0\n")
    code, _, err = run_cli("label", source, "--store", tmp_path / "store", "--preset", "tiny",
                           "--workers", "0")
    assert code == 1 and "done 1, failed 2" in err  # 1: some molecules failed
    store = DatasetStore.open(tmp_path / "store")
    assert store.entry_ids() == ["water"]
    failures = store.failures()
    assert set(failures) == {"junk", "xx"}
    assert all("cannot read structure" in f["reason"] for f in failures.values())


def test_bad_scheduler_address_is_a_one_line_error(molecules, tmp_path, run_cli):
    code, _, err = run_cli("label", molecules, "--store", tmp_path / "store", "--preset", "tiny",
                           "--scheduler", "no-port-here")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("rhosr label: error: --scheduler no-port-here: cannot connect")


def test_label_a_source_without_molecules_is_an_error(tmp_path, run_cli):
    code, _, err = run_cli("label", "qm9:999999999", "--store", tmp_path / "s", "--preset", "tiny",
                           "--workers", "0")
    assert code == 2 and "no molecules" in err.splitlines()[-1], err
    assert not (tmp_path / "s").exists()
