"""Training: the loss falls, SIGKILL + resume restores optimizer and scheduler, DDP on CPU,
checkpoints load without executing code and give identical outputs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rhosr.checkpoint import load_model
from rhosr.errors import InputError
from rhosr.train import TrainConfig, lr_factor, train

TINY_MODEL = {"num_feat": 4, "kernel_first": 3, "kernel": 3, "num_block": 1, "num_up": 1}


def _metrics(run_dir):
    from rhosr.run_metrics import read_metrics

    return read_metrics(run_dir / "logs")


@pytest.mark.slow
def test_tiny_model_loss_falls_5x(tiny_store, tmp_path):
    cfg = TrainConfig(model=TINY_MODEL, lr=3e-3, epochs=150, augment=True, log_every_n_steps=1,
                      checkpoint_every_n_steps=1000)
    result = train(str(tiny_store), cfg, tmp_path / "run", progress=False)
    assert result["global_step"] == 300
    errs = [float(r["train_err"]) for r in _metrics(tmp_path / "run") if r.get("train_err")]
    first, last = sum(errs[:10]) / 10, sum(errs[-10:]) / 10
    assert first / last >= 5, (first, last)
    assert (tmp_path / "run" / "learning_curve.png").stat().st_size > 0
    model, meta = load_model(tmp_path / "run" / "best")
    assert meta["val_err"] < errs[0] and meta["grid"]["upscale"] == 2
    assert meta["train_entries"] == 2 and meta["validation"]["n"] == 1  # what the run saw
    assert meta["train_elements"] == {"F": 1, "H": 2, "O": 1}  # water and HF


def test_save_load_identical_outputs(tmp_path):
    from rhosr.checkpoint import save_model
    from rhosr.model import build_model

    model = build_model(TINY_MODEL).eval()
    save_model(tmp_path / "m", model, {"input": "sad", "grid": {"upscale": 2}})
    loaded, meta = load_model(tmp_path / "m")
    x = torch.rand(1, 1, 6, 5, 4)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["model"] == {"inputs": [{"name": "sad"}], "base": {"name": "none"},
                             "trunk": {"name": "srresnet", **TINY_MODEL, "norm": "instance"}}


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 10, 110, 1e-5) == 1e-5
    assert lr_factor(10, 10, 110, 1e-5) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 1e-5) == pytest.approx(0.5)
    assert lr_factor(110, 10, 110, 1e-5) == pytest.approx(0.0)


def test_config_files_load_and_refuse_unknown_keys(tmp_path):
    from rhosr.train import CONFIG_FOLDER

    shipped = sorted(p.stem for p in CONFIG_FOLDER.glob("*.yaml"))
    assert {"paper_qm9", "paper_x4", "cpu_small", "qm9_small", "tiny"} <= set(shipped)
    for name in shipped:  # every config in the package loads
        TrainConfig.load(name)
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 3\n")
    with pytest.raises(InputError, match="unknown keys"):
        TrainConfig.load(str(bad))
    bad.write_text("epochs: 5\nval_every_n_epochs: 2\n")
    with pytest.raises(InputError, match="multiple of val_every_n_epochs"):
        TrainConfig.load(str(bad))
    bad.write_text("model: {norm: batch}\n")
    with pytest.raises(InputError, match="norm must be one of"):
        TrainConfig.load(str(bad))


def _train_cmd(store, out, *extra):
    return [sys.executable, "-m", "rhosr.cli", "train", "--store", str(store), "--config", "tiny",
            "--out", str(out), "--no-progress", *extra]


@pytest.mark.slow
def test_sigkill_then_resume_restores_optimizer_and_scheduler(tiny_store, tmp_path):
    import yaml

    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_MODEL, "epochs": 1000, "checkpoint_every_n_steps": 5,
                                      "log_every_n_steps": 1}))
    out = tmp_path / "run"
    cmd = _train_cmd(tiny_store, out)
    cmd[cmd.index("tiny")] = str(config)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    step = 0
    while time.time() < deadline and step < 10:
        time.sleep(0.5)
        if last.exists():
            try:
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            except Exception:
                step = 0  # being written
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = torch.load(last, map_location="cpu", weights_only=True)
    assert killed["global_step"] >= 10
    assert killed["optimizer_states"][0]["state"]  # Adam moments were saved
    result = subprocess.run(cmd + ["--resume", "--max-steps", str(killed["global_step"] + 6)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == killed["global_step"] + 6
    assert resumed["lr_schedulers"][0]["last_epoch"] == resumed["global_step"]
    steps = sorted({int(r["step"]) for r in _metrics(out) if r.get("train_err")})
    assert steps[-1] == resumed["global_step"] - 1
    assert steps[0] == 0  # the segment before the kill is kept (Lightning's logger deletes it)
    assert len(steps) == len(set(steps)) and list(steps) == list(range(steps[0], steps[-1] + 1))


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny_store, tmp_path):
    """Two gloo ranks split the two training molecules: one step per rank per epoch."""
    import yaml

    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_MODEL, "epochs": 3}))
    cmd = _train_cmd(tiny_store, tmp_path / "ddp", "--devices", "2", "--strategy", "ddp",
                     "--accelerator", "cpu")
    cmd[cmd.index("tiny")] = str(config)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained to step 3") == 2  # both ranks
    assert (tmp_path / "ddp" / "best" / "model.safetensors").exists()


def test_train_cli_errors_are_one_line(tmp_path, run_cli, tiny_store):
    from rhosr.config import get_preset
    from rhosr.store import DatasetStore

    empty = DatasetStore.create(tmp_path / "empty", get_preset("tiny").to_dict()).path
    code, _, err = run_cli("train", "--store", empty, "--config", "tiny", "--out", tmp_path / "r")
    assert code == 2 and "needs train and validation entries" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("train", "--store", tiny_store, "--config", "nope", "--out", tmp_path / "r")
    assert code == 2 and "no such config" in err
    (tmp_path / "notes.yaml").write_text("just some text\n")
    code, _, err = run_cli("train", "--store", tiny_store, "--config", tmp_path / "notes.yaml",
                           "--out", tmp_path / "r")
    assert code == 2 and "a training config is a YAML mapping" in err
    code, _, err = run_cli("train", "--store", tiny_store, "--config", "tiny", "--out", tmp_path / "r2",
                           "--resume")
    assert code == 2 and "nothing to resume" in err


def test_training_never_reads_test_entries(tiny_store):
    from rhosr.data import DensityDataset

    with pytest.raises(ValueError, match="never 'test'"):
        DensityDataset(str(tiny_store), "test")


def test_read_metrics_merges_resumed_segments_once(tmp_path):
    """A segment's rows at or after the next segment's first step were replayed: counted once."""
    from rhosr.render import plot_learning_curve
    from rhosr.run_metrics import keep_metrics_history, read_metrics

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.csv").write_text("step,train_err\n0,9\n1,8\n2,7\n3,6.5\n")
    assert keep_metrics_history(logs).name == "metrics-000.csv"
    (logs / "metrics.csv").write_text("step,train_err,val_err\n2,7.1,\n3,6.4,\n4,6,5.5\n")
    rows = read_metrics(logs)
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [r["train_err"] for r in rows[2:4]] == ["7.1", "6.4"]  # the resumed segment's values
    assert plot_learning_curve(logs, tmp_path / "curve.png") and (tmp_path / "curve.png").stat().st_size > 0


def test_training_and_validation_sets_are_frozen_per_run(tiny_store, tmp_path):
    """A run keeps the train and validation ids it started with; a best from another set is not kept."""
    from rhosr.best_model import BestModelExporter, validation_fingerprint
    from rhosr.store import DatasetStore
    from rhosr.train import TrainConfig, frozen_split_ids, make_loaders

    store = DatasetStore.open(tiny_store)
    for split in ("train", "validation"):
        first = frozen_split_ids(tmp_path, store, split)
        assert first == store.entry_ids(split) and first
        (tmp_path / f"{split}_ids.json").write_text(json.dumps(first[:1]))  # as if the store grew since
        assert frozen_split_ids(tmp_path, store, split) == first[:1]
    train_loader, val_loader = make_loaders(
        str(tiny_store), TrainConfig.load("tiny"), frozen_split_ids(tmp_path, store, "validation"),
        frozen_split_ids(tmp_path, store, "train"))
    assert len(train_loader.dataset) == 1 and len(val_loader.dataset) == 1
    (tmp_path / "validation_ids.json").write_text(json.dumps(["not-in-store"]))
    with pytest.raises(InputError, match="not in the store"):
        frozen_split_ids(tmp_path, store, "validation")

    cfg = TrainConfig.load("tiny")
    old = BestModelExporter(tmp_path / "best", cfg, {}, str(tiny_store), ["a", "b"])
    old.best = 1.5
    same = BestModelExporter(tmp_path / "best", cfg, {}, str(tiny_store), ["b", "a"])
    same.load_state_dict(old.state_dict())
    assert same.best == 1.5 and same.validation == validation_fingerprint(["a", "b"])
    other = BestModelExporter(tmp_path / "best", cfg, {}, str(tiny_store), ["a", "b", "c"])
    other.load_state_dict(old.state_dict())
    assert other.best == float("inf")
    other.load_state_dict({"best": 0.5})  # a checkpoint from before validation sets were recorded
    assert other.best == float("inf")


def test_init_takes_a_shipped_model_by_name(tmp_path, run_cli, tiny_store):
    from rhosr.checkpoint import load_weights_into
    from rhosr.model import build_model
    from rhosr.predict import load_predictor

    shipped, meta = load_predictor("qm9-small")
    model = build_model(meta["model"])
    load_weights_into(model, "qm9-small")
    for key, value in shipped.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    code, out, err = run_cli("train", "--store", tiny_store, "--config", "qm9_small_restart", "--init",
                             "qm9-small", "--out", tmp_path / "ft", "--max-steps", "2", "--no-progress")
    assert code == 0, err
    assert "trained to step 2" in out
    code, _, err = run_cli("train", "--store", tiny_store, "--config", "tiny", "--init", "no-such-model",
                           "--out", tmp_path / "bad")
    assert code == 2 and "no such model folder or shipped model (shipped: qm9-small, qm9-unet)" in err


def test_training_module_resumes_weights_saved_before_the_composition():
    """A Lightning checkpoint of an older run holds ``model.conv_first.weight`` (the SRResNet's
    keys at the top); the module loads it into its trunk, so ``--resume`` of such a run works."""
    from tests.conftest import random_weights

    from rhosr.model import SRResNet3D, SRResNetOptions
    from rhosr.train import DensityModule

    old = random_weights(SRResNet3D(SRResNetOptions(**{**TINY_MODEL, "norm": "instance"})))
    module = DensityModule({"model": TINY_MODEL})
    module.load_state_dict({f"model.{k}": v for k, v in old.state_dict().items()})
    for key, value in old.state_dict().items():
        assert torch.equal(module.model.trunk.state_dict()[key], value)


def _tree(folder):
    """Every file under ``folder`` with its bytes (to show that nothing was written)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_refuses_a_changed_config_before_writing(tmp_path, run_cli, tiny_store):
    """A different lr or model is refused with every changed key named, and config.yaml is kept."""
    import yaml

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read: the config check comes first")
    (run / "logs").mkdir()
    (run / "logs" / "metrics.csv").write_text("step,train_err\n0,9\n")
    (run / "config.yaml").write_text(yaml.safe_dump(TrainConfig.load("tiny").to_dict(), sort_keys=False))
    before = _tree(run)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**TrainConfig.load("tiny").to_dict(), "lr": 0.01, "seed": 3,
                                       "model": {**TINY_MODEL, "num_feat": 8}, "num_workers": 2}))
    code, _, err = run_cli("train", "--store", tiny_store, "--config", changed, "--out", run, "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "lr 0.003 -> 0.01" in err and "model.trunk.num_feat 4 -> 8" in err and "seed 0 -> 3" in err
    assert "num_workers" not in err.split("only")[0]  # a safe key is not reported as a change
    assert _tree(run) == before  # nothing moved or written


def test_resume_config_changes_lists_only_unsafe_keys():
    from rhosr.train import RESUME_SAFE_KEYS, resume_config_changes

    old = TrainConfig.load("tiny").to_dict()
    safe = {**old, **{k: 7 for k in RESUME_SAFE_KEYS}, "epochs": 2, "val_every_n_epochs": 1}
    assert resume_config_changes(old, safe) == []
    default_norm = {**TINY_MODEL, "norm": "instance"}
    assert resume_config_changes(old, {**old, "model": default_norm}) == []
    assert resume_config_changes(old, {**old, "betas": [0.9, 0.999], "precision": "bf16-mixed"}) == [
        "betas [0.9, 0.99] -> [0.9, 0.999]", "precision '32-true' -> 'bf16-mixed'"]


def _draws(cfg, tiny_store, epochs=3):
    """The SAD tensors the training loader yields over ``epochs`` epochs (what the model sees)."""
    from rhosr.train import make_loaders

    loader, _ = make_loaders(str(tiny_store), cfg)
    out = []
    for epoch in range(epochs):
        getattr(loader.sampler, "set_epoch", lambda e: None)(epoch)  # as Lightning does
        out += [(batch["id"][0], batch["inputs"]) for batch in loader]
    return out


def test_seed_reaches_the_training_draws(tiny_store):
    """Two seeds augment and shuffle differently; one seed draws the same whatever torch's global state."""
    torch.manual_seed(1)
    first = _draws(TrainConfig(model=TINY_MODEL, seed=0), tiny_store)
    torch.manual_seed(2)  # the global generator plays no part
    again = _draws(TrainConfig(model=TINY_MODEL, seed=0), tiny_store)
    other = _draws(TrainConfig(model=TINY_MODEL, seed=1), tiny_store)
    assert [i for i, _ in first] == [i for i, _ in again]
    assert all(a.shape == b.shape and torch.equal(a, b) for (_, a), (_, b) in zip(first, again))
    same = sum(i == j and a.shape == b.shape and torch.equal(a, b) for (i, a), (j, b) in zip(first, other))
    assert same <= 1, f"{same} of {len(first)} samples drawn alike with seeds 0 and 1"


@pytest.mark.slow
def test_resumed_run_trains_on_what_the_uninterrupted_run_did(tiny_store, tmp_path):
    """Stopped mid-epoch at step 3 and resumed (with a data worker, a safe change), the run has the
    uninterrupted run's learning rates and losses at every step: same samples, same rotations."""
    config = dict(model=TINY_MODEL, epochs=10, checkpoint_every_n_steps=2, log_every_n_steps=1)
    train(str(tiny_store), TrainConfig(**config), tmp_path / "whole", max_steps=7, progress=False)
    train(str(tiny_store), TrainConfig(**config), tmp_path / "cut", max_steps=3, progress=False)
    train(str(tiny_store), TrainConfig(**config, num_workers=1), tmp_path / "cut", resume=True, max_steps=7,
          progress=False)

    def per_step(run):
        rows = [r for r in _metrics(run) if r.get("train_err")]
        return [(int(r["step"]), float(r["lr"]), float(r["train_err"])) for r in rows]

    assert [s for s, _, _ in per_step(tmp_path / "cut")] == list(range(7))
    assert per_step(tmp_path / "cut") == per_step(tmp_path / "whole")
    for run in ("whole", "cut"):  # one checkpoint, no last-v1.ckpt or logs/checkpoints beside it
        assert [p.name for p in (tmp_path / run).rglob("*.ckpt")] == ["last.ckpt"]

    last = tmp_path / "whole" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["rhosr_world_size"] == 1
    torch.save({**ckpt, "rhosr_world_size": 2}, last)  # as if trained with --devices 2
    with pytest.raises(InputError, match="trained on 2 process"):
        train(str(tiny_store), TrainConfig(**config), tmp_path / "whole", resume=True, max_steps=9,
              progress=False)


def test_second_train_on_a_claimed_run_folder_is_refused(tiny_store, tmp_path, run_cli):
    """While one process holds a run folder's claim, another `rhosr train` on it is a one-line error."""
    from rhosr.claims import claim

    with claim(tmp_path, ".run.train"):
        code, _, err = run_cli("train", "--store", tiny_store, "--config", "tiny", "--out", tmp_path / "run",
                               "--max-steps", "1", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "another rhosr train is writing this run folder" in err
    assert not (tmp_path / "run").exists()


def test_train_config_that_is_a_folder_or_bad_yaml_is_one_line(tmp_path, run_cli, tiny_store):
    (tmp_path / "bad.yaml").write_text("lr: [1,\n  epochs: 2\n")
    for config in (tmp_path, tmp_path / "bad.yaml"):
        code, _, err = run_cli("train", "--store", tiny_store, "--config", config, "--out", tmp_path / "r")
        assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_train_devices_that_the_machine_lacks_are_refused(tmp_path, run_cli, tiny_store):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for flags in (("--devices", "-1"), ("--accelerator", "gpu")):
        code, _, err = run_cli("train", "--store", tiny_store, "--config", "tiny", "--out", tmp_path / "r",
                               *flags)
        assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_ema_weights_are_validated_exported_and_resumed(tiny_store, tmp_path):
    """With ema_decay the exported best model and the checkpoint's weights are the moving
    average (the raw weights travel beside them), and a run cut at step 3 and resumed ends with
    the uninterrupted run's averaged weights."""
    from rhosr.checkpoint import load_model

    config = dict(model=TINY_MODEL, epochs=7, checkpoint_every_n_steps=2, log_every_n_steps=1, lr=0.01,
                  ema_decay=0.5)
    train(str(tiny_store), TrainConfig(**config), tmp_path / "whole", max_steps=7, progress=False)
    train(str(tiny_store), TrainConfig(**config), tmp_path / "cut", max_steps=3, progress=False)
    train(str(tiny_store), TrainConfig(**config), tmp_path / "cut", resume=True, max_steps=7, progress=False)
    states = {}
    for run in ("whole", "cut"):
        ckpt = torch.load(tmp_path / run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        states[run] = ckpt
        averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
        assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)
    for key, value in states["whole"]["state_dict"].items():
        torch.testing.assert_close(states["cut"]["state_dict"][key], value)
    once = dict(config, epochs=2, val_every_n_epochs=2)  # one validation, at the end: the export
    train(str(tiny_store), TrainConfig(**once), tmp_path / "once", progress=False)
    model, _ = load_model(tmp_path / "once" / "best")
    ckpt = torch.load(tmp_path / "once" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ckpt["state_dict"][f"model.{key}"])
    with pytest.raises(InputError, match="ema_decay"):
        TrainConfig(ema_decay=1.5)


def test_huber_objective_is_l1_for_large_errors_and_quadratic_for_small_ones(tiny_store, tmp_path):
    from rhosr.train import density_loss, objective_loss

    label = torch.zeros(1, 1, 4, 4, 4)
    volume, n_e = torch.tensor([0.5], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    large = label + 0.1  # every voxel off by 0.1 > delta: L1 less delta/2 per voxel
    l1 = density_loss(large, label, volume, n_e)
    huber = objective_loss(large, label, volume, n_e, delta=1e-3)
    assert huber.item() == pytest.approx(l1.item() - 64 * 0.5e-3 * 0.5 / 2.0, rel=1e-5)
    small = label + 1e-4  # below delta: 0.5 d^2 / delta, ten times less than the L1 here
    assert objective_loss(small, label, volume, n_e, delta=1e-3).item() == pytest.approx(
        density_loss(small, label, volume, n_e).item() / 20, rel=1e-4)
    assert objective_loss(large, label, volume, n_e, delta=None) == l1
    with pytest.raises(InputError, match="loss_delta"):
        TrainConfig(loss_delta=-1.0)
    config = TrainConfig(model=TINY_MODEL, lr=3e-3, epochs=2, loss_delta=1e-3, log_every_n_steps=1)
    train(str(tiny_store), config, tmp_path / "run", progress=False)
    errs = [float(r["train_err"]) for r in _metrics(tmp_path / "run") if r.get("train_err")]
    assert len(errs) == 4 and all(1.0 < e < 200 for e in errs)  # Err_rho in percent, not the Huber
