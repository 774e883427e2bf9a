"""The GPU training script (benchmarks/gpu_train.py) on the CPU: it builds its data from the
committed packs alone (labels rendered without PySCF match the packed probe points), trains, and
writes a model folder that the package loads and that predicts what the training saw."""

import json

import numpy as np
import pytest
from tests.conftest import benchmark_module

PACKS = benchmark_module("gpu_train").ROOT / "data" / "packs" / "qm9_fast"


@pytest.fixture(scope="module")
def gpu_train():
    return benchmark_module("gpu_train")


def test_labels_from_packs_match_their_probes(gpu_train):
    from rhosr.checkpoint import read_description

    ids = json.loads((gpu_train.RUN_IDS / "validation_ids.json").read_text())[:2]
    records, basis = gpu_train.load_records(PACKS, ids)
    gpu_train._init_worker(read_description(gpu_train.ROOT / "src/rhosr/pretrained/qm9-unet").model.to_dict(),
                           basis)
    for entry_id, record in zip(ids, records):
        item = gpu_train.prepare(record)
        assert item["id"] == entry_id
        assert item["probe_diff"] < gpu_train.LABEL_TOLERANCE_PERCENT  # the rendering is the labeller's
        assert item["label"].shape == item["fine"].shape
        assert item["inputs"].shape[0] == 6  # the SAD and one channel per element
        n_e = item["label"].sum() * item["voxel_volume"]
        assert n_e == pytest.approx(item["n_electrons"], rel=1e-3)


def test_trains_and_writes_a_model_folder(gpu_train, tmp_path):
    from rhosr.checkpoint import load_model

    out = tmp_path / "run"
    result = gpu_train.main(["--train", "2", "--validation", "1", "--steps", "3", "--warmup", "1",
                             "--every", "0", "--device", "cpu", "--precision", "fp32", "--workers", "1",
                             "--set", "ema_decay=0.5", "--set", "model.trunk.channels=[8,16]",
                             "--out", str(out)])
    assert result["steps"] == 3 and len(result["curve"]) == 4
    assert result["curve"][0]["val_err"] == pytest.approx(result["base_only_val_err"], rel=1e-6)
    model, meta = load_model(out)
    assert meta["model"]["trunk"]["channels"] == [8, 16]
    assert meta["train_entries"] == 2 and meta["step"] == result["best_step"]
    assert json.loads((out / "log.json").read_text())["best_val_err"] == pytest.approx(meta["val_err"])
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())


def test_config_changes_are_dotted_yaml(gpu_train):
    changed = gpu_train.with_changes({"lr": 1e-3, "model": {"trunk": {"blocks": 1}}},
                                     ["lr=5e-4", "model.trunk.blocks=2"])
    assert changed == {"lr": 5e-4, "model": {"trunk": {"blocks": 2}}}
