"""The accuracy ablation harness (benchmarks/accuracy_ablation.py): every variant is a valid
training config, the fixed id lists are the store's, and a tiny run goes end to end."""

import json

import pytest
from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def ablation():
    return benchmark_module("accuracy_ablation")


def test_ablation_variants_are_training_configs(ablation):
    from rhosr.bases import PriorOptions
    from rhosr.train import TrainConfig

    assert {"shipped", "unet", "sad_fine", "sad_elements", "fitted_prior", "recipe"} <= set(ablation.VARIANTS)
    for name, (description, config) in ablation.VARIANTS.items():
        config = json.loads(json.dumps(config))
        if config["model"]["base"] == "fitted_prior":  # coefficients come from the fit
            options = PriorOptions()
            zeros = [[0.0] * len(options.exponents)] * len(options.elements)
            config["model"]["base"] = {"name": "fitted_prior", "coefficients": zeros}
        cfg = TrainConfig.from_dict({**config, "epochs": 4, "val_every_n_epochs": 1})
        assert description and cfg.model_config.in_channels >= 1, name


def test_ablation_runs_a_variant_end_to_end(ablation, tiny_store, tmp_path, monkeypatch):
    """The shipped variant on the tiny store, a 2-second budget: planned, trained, summarised
    and tabulated; a second call reads the result instead of training again."""
    monkeypatch.setattr(ablation, "IDS", tmp_path / "ids")
    monkeypatch.setattr(ablation, "RESULTS", tmp_path / "table.md")
    monkeypatch.setattr(ablation, "STEPS_PER_EPOCH", 1)
    train_ids, val_ids = ablation.fixed_ids(str(tiny_store), 2)
    assert len(train_ids) == 2 and len(val_ids) == 1
    result = ablation.run_variant("shipped", str(tiny_store), tmp_path / "runs", 2.0, 1, train_ids, val_ids)
    assert result["steps"] >= 4 and result["parameters"] == 36_905
    assert result["best_val_err"] > 0 and result["cpu_s"] > 0
    assert ablation.run_variant("shipped", str(tiny_store), tmp_path / "runs", 2.0, 1, train_ids,
                                val_ids) == result
    ablation.write_table(tmp_path / "runs", 2, 1, 2.0, 1)
    assert "| shipped |" in (tmp_path / "table.md").read_text()


def test_ablation_best_combines_the_levers_that_helped(ablation, tmp_path):
    errors = {"shipped": 6.0, "unet": 5.0, "sad_fine": 5.5, "fitted_prior": 5.2, "bonded_prior": 5.3,
              "sad_elements": 5.8, "recipe": 6.5, "ema": 5.9}
    for name, err in errors.items():
        config = json.loads(json.dumps(ablation.VARIANTS[name][1]))
        if name in ("fitted_prior", "bonded_prior"):
            config["model"]["base"] = {"name": "fitted_prior", "coefficients": [[0.1] * 8] * 5}
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps({"best_val_err": err, "config": config}))
    description, config = ablation.best_variant(tmp_path)
    assert config["model"]["trunk"]["name"] == "unet"
    assert config["model"]["base"]["name"] == "fitted_prior" and config["model"]["base"]["coefficients"]
    assert config["model"]["inputs"][1]["name"] == "sad_groups"
    assert config["lr"] == ablation.SHIPPED_RECIPE["lr"] and config["ema_decay"] == 0.995  # recipe lost
    assert "U-Net" in description and "recipe" not in description
    (tmp_path / "ema" / "result.json").unlink()
    with pytest.raises(SystemExit, match="ema has not finished"):
        ablation.best_variant(tmp_path)
    description, config = ablation.best_variant(tmp_path, without=("ema",))  # left out, and said so
    assert "ema_decay" not in config and "ema left out" in description


def test_ablation_best_unet_adds_the_trunk_only_when_it_did_not_help_alone(ablation, tmp_path):
    errors = {"shipped": 6.0, "unet": 6.5, "sad_fine": 5.5, "fitted_prior": 5.7, "bonded_prior": 5.8,
              "sad_elements": 6.2, "recipe": 6.5, "ema": 5.9}
    for name, err in errors.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(
            json.dumps({"best_val_err": err, "config": ablation.VARIANTS[name][1]}))
    _, best = ablation.best_variant(tmp_path)
    description, with_unet = ablation.best_variant(tmp_path, unet=True)
    assert best["model"]["trunk"]["name"] == "srresnet" and with_unet["model"]["trunk"]["name"] == "unet"
    assert best["model"]["base"] == with_unet["model"]["base"] == "sad_fine"
    assert "did not help" in description
    (tmp_path / "unet" / "result.json").write_text(json.dumps({"best_val_err": 5.0, "config": {}}))
    with pytest.raises(SystemExit, match="best has it already"):
        ablation.best_variant(tmp_path, unet=True)
