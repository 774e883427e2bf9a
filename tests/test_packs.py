"""Packs: pack -> unpack round trip on a real tiny store, resumable, and refusals of bad packs."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest

from rhosr.grid import Grid
from rhosr.metrics import err_rho
from rhosr.packs import (
    PACK_FORMAT,
    PROBE_STRIDE,
    make_record,
    orbitals_from_dm,
    parse_record,
    read_pack,
    write_pack,
)
from rhosr.store import DatasetStore

ROUND_TRIP_PERCENT = 1e-4
"""Largest Err_rho (percent) of a rebuilt label from the stored one (issue H, point 3)."""


@pytest.fixture(scope="module")
def pack_file(tiny_store, tmp_path_factory):
    """A pack of the whole tiny store (3 molecules, tiny preset), written by the CLI."""
    from rhosr.cli import main

    path = tmp_path_factory.mktemp("pack") / "tiny.tar"
    assert main(["store", "pack", str(tiny_store), "-o", str(path)]) == 0
    return path


def _rewrite(src, dst, manifest_edit=None, record_edit=None):
    """Copy a pack, changing its manifest and/or one record (checksums kept consistent)."""
    with tarfile.open(src) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    manifest = json.loads(members.pop("manifest.json"))
    if record_edit is not None:
        entry_id, data = record_edit(members)
        members[f"molecules/{entry_id}.npz"] = data
        for mol in manifest["molecules"]:
            if mol["id"] == entry_id:
                mol["bytes"], mol["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    if manifest_edit is not None:
        manifest_edit(manifest)
    with tarfile.open(dst, "w") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


def _assert_refused(run_cli, pack, store, *words):
    code, _, err = run_cli("store", "unpack", pack, "--store", store, "--workers", "0")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rhosr store: error:"), err
    for word in words:
        assert word in lines[0], err
    assert not (store / "entries").exists() or not any((store / "entries").iterdir())


def test_orbitals_from_dm_rebuilds_a_low_rank_matrix():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(30, 4))
    for dm, rank in ((2.0 * c @ c.T, 4), (c @ c.T + c[:, :3] @ c[:, :3].T, 4)):  # closed, open shell
        vectors, weights = orbitals_from_dm(dm)
        assert len(weights) == rank
        np.testing.assert_allclose((vectors * weights) @ vectors.T, dm, atol=1e-12)


def test_pack_unpack_round_trip_equals_store(tiny_store, pack_file, tmp_path, run_cli):
    code, _, err = run_cli("store", "unpack", pack_file, "--store", tmp_path / "rebuilt", "--workers", "0")
    assert code == 0, err
    original, rebuilt = DatasetStore.open(tiny_store), DatasetStore.open(tmp_path / "rebuilt")
    assert rebuilt.entry_ids() == original.entry_ids()
    assert rebuilt.info()["per_split"] == original.info()["per_split"]
    assert rebuilt.meta["preset"] == original.meta["preset"]
    assert rebuilt.meta["margin_angstrom"] == original.meta["margin_angstrom"]
    for entry_id in original.entry_ids():
        a = original.read_entry(entry_id, ("sad", "label", "dm"))
        b = rebuilt.read_entry(entry_id, ("sad", "label", "dm"))
        grid = Grid.from_dict(a.meta["grid"])
        n_e = a.meta["n_electrons"]
        assert err_rho(b.label, a.label, grid.voxel_volume(), n_e) < ROUND_TRIP_PERCENT
        assert b.label.sum() * grid.voxel_volume() == pytest.approx(n_e, rel=1e-6)
        np.testing.assert_array_equal(b.sad, a.sad)
        np.testing.assert_allclose(b.dm, a.dm, atol=1e-6)
        store_keys = ("unpacked", "integrity")  # the rebuild's own; integrity: the store's CRCs
        assert {k: v for k, v in b.meta.items() if k not in store_keys} == {
            k: v for k, v in a.meta.items() if k not in store_keys}


def test_pack_is_deterministic_and_verifiable(tiny_store, pack_file, tmp_path, run_cli):
    code, _, err = run_cli("store", "pack", tiny_store, "-o", tmp_path / "again.tar")
    assert code == 0, err
    assert (tmp_path / "again.tar").read_bytes() == pack_file.read_bytes()
    pack = read_pack(pack_file)
    assert pack.manifest["rhosr_pack"] == PACK_FORMAT
    assert set(pack.manifest["basis"]["data"]) == {"F", "H", "O"}
    assert list(pack.records) == DatasetStore.open(tiny_store).entry_ids()


def test_pack_split_limit_and_shards(tiny_store, tmp_path, run_cli):
    code, _, err = run_cli("store", "pack", tiny_store, "-o", tmp_path / "train.tar", "--split", "train",
                           "--limit", "1")
    assert code == 0, err
    assert len(read_pack(tmp_path / "train.tar").records) == 1
    ids = DatasetStore.open(tiny_store).entry_ids()
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps(ids[1:]))
    code, _, err = run_cli("store", "pack", tiny_store, "-o", tmp_path / "ids.tar", "--ids", ids_file)
    assert code == 0, err
    assert list(read_pack(tmp_path / "ids.tar").records) == ids[1:]
    ids_file.write_text(json.dumps(["nope"]))
    code, _, err = run_cli("store", "pack", tiny_store, "-o", tmp_path / "x.tar", "--ids", ids_file)
    assert code == 2 and "nope" in err and not (tmp_path / "x.tar").exists(), err
    code, _, err = run_cli("store", "pack", tiny_store, "-o", tmp_path / "shards", "--shard-mb", "0.001")
    assert code == 0, err
    shards = sorted((tmp_path / "shards").glob("part-*.tar"))
    assert len(shards) == 3
    (tmp_path / "shards" / ".packing-x").mkdir()  # a crashed packer's staging folder is not read
    (tmp_path / "shards" / ".packing-x" / "part-0000.tar").write_text("partial")
    code, _, err = run_cli("store", "unpack", tmp_path / "shards", "--store", tmp_path / "s",
                           "--workers", "0")
    assert code == 0, err
    assert DatasetStore.open(tmp_path / "s").entry_ids() == DatasetStore.open(tiny_store).entry_ids()


def test_unpack_resumes_after_interrupt_and_is_idempotent(pack_file, tmp_path, run_cli, monkeypatch):
    import rhosr.packs

    rebuild = rhosr.packs.rebuild_entry
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return rebuild(*args, **kwargs)

    monkeypatch.setattr(rhosr.packs, "rebuild_entry", interrupted)
    store = tmp_path / "store"
    code, _, _ = run_cli("store", "unpack", pack_file, "--store", store, "--workers", "0")
    assert code == 130
    assert len(DatasetStore.open(store).entry_ids()) == 1
    assert not any((store / ".tmp").iterdir())
    monkeypatch.setattr(rhosr.packs, "rebuild_entry", rebuild)
    code, _, err = run_cli("store", "unpack", pack_file, "--store", store, "--workers", "0")
    assert code == 0 and "1 already in the store" in err and "rebuilt 2" in err, err
    first = store / "entries" / DatasetStore.open(store).entry_ids()[0] / "zarr.json"
    stamp = first.stat().st_mtime_ns
    code, _, err = run_cli("store", "unpack", pack_file, "--store", store, "--workers", "0")
    assert code == 0 and "3 already in the store" in err, err
    assert first.stat().st_mtime_ns == stamp
    assert len(DatasetStore.open(store).entry_ids()) == 3


def test_unpack_truncated_pack_names_the_molecule(pack_file, tmp_path, run_cli):
    with tarfile.open(pack_file) as tar:
        last = [m for m in tar.getmembers() if m.name.startswith("molecules/")][-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(pack_file.read_bytes()[: last.offset_data + last.size // 2])
    _assert_refused(run_cli, cut, tmp_path / "store", last.name.split("/")[1][:-4], "truncated")


def test_unpack_tampered_record_fails_its_checksum(pack_file, tmp_path, run_cli):
    with tarfile.open(pack_file) as tar:
        member = [m for m in tar.getmembers() if m.name.startswith("molecules/")][0]
    data = bytearray(pack_file.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    _assert_refused(run_cli, bad, tmp_path / "store", member.name.split("/")[1][:-4], "checksum")


def test_unpack_refuses_a_newer_format(pack_file, tmp_path, run_cli):
    newer = _rewrite(pack_file, tmp_path / "newer.tar",
                     manifest_edit=lambda m: m.update(rhosr_pack=PACK_FORMAT + 1))
    _assert_refused(run_cli, newer, tmp_path / "store", "newer", "upgrade rhosr")


def test_unpack_refuses_mixed_presets(tiny_store, pack_file, tmp_path, run_cli):
    def relabel(members):
        name = sorted(members)[0]
        record = parse_record(members[name])
        record.meta["preset"] = {**record.meta["preset"], "name": "fast", "scf_ke_cutoff": 100.0}
        from rhosr.store import Entry

        entry = Entry(record.meta, label=np.zeros((8, 8, 8)), dm=record.density_matrix())
        return record.id, make_record(entry)

    mixed = _rewrite(pack_file, tmp_path / "mixed.tar", record_edit=relabel)
    first_id = DatasetStore.open(tiny_store).entry_ids()[0]
    _assert_refused(run_cli, mixed, tmp_path / "store", first_id, "mixed presets")
    wider = _rewrite(pack_file, tmp_path / "wider.tar",
                     manifest_edit=lambda m: m["store"].update(margin_angstrom=4))
    code, _, err = run_cli("store", "unpack", pack_file, wider, "--store", tmp_path / "store",
                           "--workers", "0")
    assert code == 2 and "wider.tar: molecule" in err and "mixed presets" in err, err
    assert not (tmp_path / "store").exists()
    from rhosr.config import get_preset

    other = DatasetStore.create(tmp_path / "fast_store", get_preset("fast").to_dict(), margin_angstrom=3.0)
    _assert_refused(run_cli, pack_file, other.path, "preset")


def test_unpack_not_a_pack_is_a_one_line_error(tmp_path, run_cli, water_xyz):
    _assert_refused(run_cli, water_xyz, tmp_path / "store", "not a rhosr pack")
    _assert_refused(run_cli, tmp_path / "missing.tar", tmp_path / "store", "no such pack")


@pytest.mark.slow
def test_unpack_on_dask_workers(tiny_store, pack_file, tmp_path, run_cli):
    code, _, err = run_cli("store", "unpack", pack_file, "--store", tmp_path / "d", "--workers", "2",
                           "--threads-per-worker", "1")
    assert code == 0, err
    assert DatasetStore.open(tmp_path / "d").entry_ids() == DatasetStore.open(tiny_store).entry_ids()


@pytest.mark.parametrize("argv, message", [
    (("pack", "STORE", "-o", "OUT/p.tar", "--limit", "0"), "--limit must be >= 1"),
    (("pack", "STORE", "-o", "OUT/p", "--shard-mb", "0"), "--shard-mb must be > 0"),
    (("pack", "STORE", "-o", "OUT/p.tar", "--split", "test"), "no entries to pack in split 'test'"),
    (("unpack", "PACK", "--store", "OUT/s", "--workers", "-1"), "--workers must be >= 0"),
])
def test_store_pack_options_out_of_range_are_one_line_errors(argv, message, tiny_store, pack_file, tmp_path,
                                                             run_cli):
    names = {"STORE": str(tiny_store), "PACK": str(pack_file)}
    argv = [names.get(a, a.replace("OUT", str(tmp_path))) for a in argv]
    code, _, err = run_cli("store", *argv)
    assert code == 2 and err.strip() == f"rhosr store: error: {err.strip().split('error: ', 1)[1]}", err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())



def _copies(pack_file, dst, n):
    """A pack with ``n`` renamed copies of each molecule of ``pack_file`` (more work to kill)."""
    from rhosr.store import Entry

    records = read_pack(pack_file).records
    copies = []
    for entry_id, data in records.items():
        record = parse_record(data)
        label = np.zeros(Grid.from_dict(record.meta["grid"]).fine_mesh)
        label[::PROBE_STRIDE, ::PROBE_STRIDE, ::PROBE_STRIDE] = record.label_probe
        for k in range(n):
            entry = Entry({**record.meta, "id": f"{entry_id}_{k}"}, label=label, dm=record.density_matrix())
            copies.append((entry.id, record.meta["split"], make_record(entry)))
    store_meta = {"preset": parse_record(next(iter(records.values()))).meta["preset"],
                  **read_pack(pack_file).manifest["store"]}
    write_pack(dst, store_meta, copies, ["H", "O", "F"])
    return dst


@pytest.mark.slow
def test_unpack_sigkill_then_resume(pack_file, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    pack = _copies(pack_file, tmp_path / "copies.tar", 2)
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "rhosr.cli", "store", "unpack", str(pack), "--store", str(store),
           "--workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    entries = store / "entries"
    deadline = time.time() + 120
    while time.time() < deadline and not (entries.exists() and len(list(entries.iterdir())) >= 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(entries.iterdir()))
    assert 2 <= done_before < 6, "kill came too late to test resuming"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{done_before} already in the store" in result.stderr
    assert len(DatasetStore.open(store).entry_ids()) == 6
    assert not any((store / ".tmp").iterdir())  # the killed writer's temporary was cleaned


def test_committed_packs_verify():
    """Every pack committed under data/packs reads back with its checksums (a Git LFS pointer or a
    half-copied shard would fail here), and all of one folder share a preset."""
    from pathlib import Path

    from rhosr.packs import read_packs

    root = Path(__file__).resolve().parents[1] / "data" / "packs"
    folders = sorted({p.parents[1] for p in root.glob("*/*/*.tar")})
    if not folders:
        pytest.skip("no packs committed under data/packs")
    for folder in folders:
        packs = read_packs([folder])
        assert sum(len(p.records) for p in packs) == sum(len(p.manifest["molecules"]) for p in packs)


def test_unpack_rebuilds_a_damaged_entry(pack_file, tmp_path, run_cli):
    """A damaged entry is not counted as unpacked: unpack moves it to quarantine/ and rebuilds it."""
    store_path = tmp_path / "store"
    assert run_cli("store", "unpack", pack_file, "--store", store_path, "--workers", "0")[0] == 0
    store = DatasetStore.open(store_path)
    entry_id = store.entry_ids()[0]
    before = store.read_entry(entry_id, ("label",)).label
    (store.entry_dir(entry_id) / "label" / "c" / "0" / "0" / "0").unlink()  # a lost chunk
    assert store.check(entry_id) is not None
    code, _, err = run_cli("store", "unpack", pack_file, "--store", store_path, "--workers", "0")
    assert code == 0, err
    assert store.check(entry_id) is None
    assert np.array_equal(store.read_entry(entry_id, ("label",)).label, before)
    assert any(p.name.startswith(entry_id) for p in (store_path / "quarantine").iterdir())
