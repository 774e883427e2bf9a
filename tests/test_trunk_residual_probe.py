"""The trunk-residual probe (benchmarks/trunk_residual_probe.py): its objective scores an
all-zero trunk at exactly 1.0 (MSE) and at the base's own error (L1), and the output scale
enters the prediction."""

import pytest
import torch
from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def probe():
    return benchmark_module("trunk_residual_probe")


def _net_and_batch(output_scale=1e-3):
    from rhosr.model import build_model

    torch.manual_seed(0)
    net = build_model({"inputs": ["sad"], "trunk": {"name": "unet", "channels": [4, 8]}, "base": "sad_fine",
                       "output_scale": output_scale})
    inputs = torch.rand(1, 1, 6, 6, 6) * 0.1
    base = torch.rand(1, 1, 12, 12, 12) * 0.1
    label = base + 1e-3 * torch.randn_like(base)
    dv = torch.tensor([0.05], dtype=torch.float64)
    n_e = label.sum(dim=(1, 2, 3, 4)).double() * dv
    return net, {"inputs": inputs, "fine": base, "label": label, "n_electrons": n_e, "voxel_volume": dv}


def test_zero_trunk_scores_one_and_the_base_error(probe):
    net, batch = _net_and_batch()  # a base other than none starts the trunk at zero
    obj, err, prior = probe.step_terms(net, batch, "mse")
    assert float(obj) == pytest.approx(1.0)
    assert err == pytest.approx(prior) and prior > 0
    obj, err, prior = probe.step_terms(net, batch, "l1")
    assert float(obj) == pytest.approx(prior)


def test_output_scale_enters_the_prediction(probe):
    objectives = []
    for scale in (1e-6, 1.0):
        net, batch = _net_and_batch(scale)
        torch.nn.init.normal_(net.trunk.conv_last.weight, std=0.1)
        objectives.append(float(probe.step_terms(net, batch, "mse")[0]))
    small, large = objectives
    assert small == pytest.approx(1.0, abs=1e-2)
    assert large > 10 * small


def test_an_explicit_target_replaces_the_residual(probe):
    """``--target prior-terms`` hands step_terms its own target: an all-zero trunk still scores 1.0
    against it, and a trunk equal to it scores 0."""
    net, batch = _net_and_batch()
    batch["target"] = 1e-3 * torch.ones_like(batch["fine"])
    assert float(probe.step_terms(net, batch, "mse")[0]) == pytest.approx(1.0)
    net.scale_output = lambda out: batch["target"]
    assert float(probe.step_terms(net, batch, "mse")[0]) == pytest.approx(0.0)
