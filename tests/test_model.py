"""The model as inputs + trunk + base: shapes, normalisation, the paper's parameter count and
outputs, periodic shift equivariance, locality, save/load identity per trunk and base, strict
configs."""

import pytest
import torch
from tests.conftest import random_weights

from rhosr.errors import InputError
from rhosr.model import ModelConfig, build_model, count_parameters, model_config, normalize, pixel_shuffle_3d

TINY = {"num_feat": 4, "kernel_first": 3, "kernel": 3, "num_block": 2, "num_up": 1}  # the old flat form
PAPER = {"num_feat": 32, "kernel_first": 5, "kernel": 5, "num_block": 32, "num_up": 1}
TINY_UNET = {"name": "unet", "channels": [4, 6, 8], "blocks": 1, "kernel": 3}

# One model of each trunk and base (and both SAD inputs), new config form.
COMPOSITIONS = {
    "srresnet-none": {"trunk": {"name": "srresnet", **TINY}, "base": "none"},
    "srresnet-local-sad_linear": {"trunk": {"name": "srresnet", **TINY, "norm": "none"},
                                  "base": "sad_linear"},
    "srresnet-instance-sad_fine": {"trunk": {"name": "srresnet", **TINY}, "base": "sad_fine",
                                   "inputs": ["sad", {"name": "sad_elements", "elements": ["H", "O"]}]},
    "unet-none": {"trunk": TINY_UNET, "base": "none"},
    "unet-sad_linear-x4": {"trunk": {**TINY_UNET, "num_up": 2}, "base": "sad_linear"},
    "unet-head1-sad_linear": {"trunk": {**TINY_UNET, "head_kernel": 1}, "base": "sad_linear"},
    "unet-sad_fine": {"trunk": TINY_UNET, "base": "sad_fine", "inputs": ["sad_atrocious", {
        "name": "sad_elements", "elements": ["H", "C", "N", "O", "F"]}]},
    "unet-cbrt-sad_fine": {"trunk": TINY_UNET, "base": "sad_fine", "input_transform": "cbrt",
                           "inputs": ["sad", {"name": "sad_elements", "elements": ["H", "C"]}]},
    "srresnet-local-cbrt-sad_linear": {"trunk": {"name": "srresnet", **TINY, "norm": "none"},
                                       "base": "sad_linear", "input_transform": "cbrt"},
}


def _inputs(shape=(1, 1, 6, 7, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64)


def _batch(config, shape=(6, 7, 8), batch=1, seed=0):
    """Random inputs and, when the base reads one, a fine array, for a model config."""
    x = _inputs((batch, config.in_channels, *shape), seed)
    fine = _inputs((batch, 1, *(config.upscale * n for n in shape)), seed + 1) if config.needs_fine else None
    return x, fine


@pytest.mark.parametrize("name", COMPOSITIONS)
@pytest.mark.parametrize("shape", [(6, 7, 8), (5, 9, 3)])
def test_model_output_shape_any_box(name, shape):
    config = model_config(COMPOSITIONS[name])
    model = random_weights(build_model(config)).double()
    x, fine = _batch(config, shape, batch=2)
    out = model(x, fine=fine)
    assert out.shape == (2, 1, *(config.upscale * n for n in shape))
    assert out.min() >= 0


def test_model_output_integrates_to_electron_count():
    model = build_model(TINY).double()
    out = model(_inputs((2, 1, 6, 7, 8)), torch.tensor([8.0, 10.0]), torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(out.sum(dim=(1, 2, 3, 4)) * torch.tensor([0.1, 0.2], dtype=out.dtype),
                               torch.tensor([8.0, 10.0], dtype=out.dtype))
    assert out.min() >= 0


def test_model_paper_config_parameter_count():
    assert count_parameters(build_model(PAPER)) == 9_354_403  # paper: ~9.35 M
    assert count_parameters(build_model({"trunk": {"name": "srresnet", **PAPER}})) == 9_354_403


def _fingerprint(t) -> float:
    flat = t.double().flatten()
    return float(flat @ torch.cos(torch.arange(flat.numel(), dtype=torch.float64)))


@pytest.mark.slow
def test_model_paper_outputs_unchanged():
    """The paper's SRResNet, seeded, on a seeded input: pinned from the code before the model
    became a composition (2026-12-03, torch 2.13.0+cpu); the composition must not move it. The
    tolerance is float32 convolution rounding across CPUs (another machine of the same kind gave
    a fingerprint 4e-6 relative away); a change of the network moves it by far more."""
    g = torch.Generator().manual_seed(0)
    torch.rand(1, 1, 10, 11, 12, generator=g)  # the input of the shipped-model check below
    torch.manual_seed(1)
    paper = build_model(PAPER).eval()
    with torch.no_grad():
        for p in paper.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
        out = paper(torch.rand(1, 1, 8, 9, 10, generator=g), torch.tensor([8.0]), torch.tensor([0.01]))
    assert _fingerprint(out) == pytest.approx(-15.48621242084066, rel=2e-5)
    assert float(out.max()) == pytest.approx(1.040812373161316, rel=2e-5)


def test_model_shipped_outputs_unchanged():
    """qm9-small on a seeded input: pinned from the code before the composition (2026-12-03)."""
    from rhosr.predict import load_predictor

    net, _ = load_predictor("qm9-small")
    x = torch.rand(1, 1, 10, 11, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x, torch.tensor([8.0]), torch.tensor([0.01]))
    assert _fingerprint(out) == pytest.approx(-0.51053349918063, rel=1e-6)
    assert float(out.max()) == pytest.approx(0.14416347444057465, rel=1e-6)


def test_model_all_zero_input_gives_finite_output():
    model = build_model(TINY).double()
    out = model(torch.zeros(1, 1, 6, 6, 6, dtype=torch.float64), torch.tensor([8.0]), torch.tensor([0.1]))
    assert torch.isfinite(out).all()
    assert float(out.detach().sum()) * 0.1 == pytest.approx(8.0)
    zero = normalize(torch.zeros(1, 1, 2, 2, 2), torch.tensor([4.0]), torch.tensor([0.5]))
    assert torch.isfinite(zero).all() and float(zero.sum()) * 0.5 == pytest.approx(4.0)


@pytest.mark.parametrize("name, shape, shift", [
    ("srresnet-none", (6, 7, 8), (2, -3, 5)),
    ("srresnet-local-sad_linear", (6, 7, 8), (2, -3, 5)),
    ("srresnet-instance-sad_fine", (6, 7, 8), (1, 4, -1)),
    ("unet-none", (8, 12, 4), (4, -8, 4)),  # 3 levels: shifts and sizes by multiples of 4
    ("unet-sad_fine", (8, 4, 12), (-4, 4, 8)),
])
def test_model_periodic_shift_equivariance(name, shape, shift):
    """Shifting the input by whole coarse voxels shifts the output by the matching fine voxels."""
    config = model_config(COMPOSITIONS[name])
    model = random_weights(build_model(config)).double().eval()
    x, fine = _batch(config, shape)
    up = config.upscale
    out = model(x, fine=fine)
    rolled = None if fine is None else torch.roll(fine, tuple(up * s for s in shift), dims=(2, 3, 4))
    out_shifted = model(torch.roll(x, shift, dims=(2, 3, 4)), fine=rolled)
    torch.testing.assert_close(out_shifted, torch.roll(out, tuple(up * s for s in shift), dims=(2, 3, 4)),
                               rtol=1e-12, atol=1e-12)


def test_model_unet_is_not_shift_equivariant_by_one_voxel():
    """Why the U-Net says it is not local: its stride-2 layers sample every second point."""
    config = model_config(COMPOSITIONS["unet-none"])
    model = random_weights(build_model(config)).double().eval()
    x, _ = _batch(config, (8, 8, 8))
    shifted = model(torch.roll(x, 1, dims=2))
    assert not torch.allclose(shifted, torch.roll(model(x), 2, dims=2), atol=1e-6)
    assert not config.local and model_config(COMPOSITIONS["srresnet-local-sad_linear"]).local


def test_model_local_output_ignores_inputs_beyond_its_halo():
    config = model_config({"trunk": {"name": "srresnet", **TINY, "num_block": 1, "norm": "none"},
                           "base": "sad_linear"})
    model = random_weights(build_model(config)).double().eval()
    n = 2 * config.halo + 3
    x = _inputs((1, 1, n, n, n))
    far = x.clone()
    sel = [i for i in range(n) if min(i, n - i) > config.halo]
    far[0, 0, sel] += 1.0  # every plane farther than the halo from x = 0 (periodic distance)
    with torch.no_grad():
        a, b = model(x), model(far)
    torch.testing.assert_close(a[..., 0, :, :], b[..., 0, :, :], rtol=0, atol=1e-12)
    assert not torch.allclose(a, b)
    near = x.clone()
    near[0, 0, 1] += 1.0  # inside the halo: it does reach fine point 0
    with torch.no_grad():
        assert not torch.allclose(model(near)[..., 0, :, :], a[..., 0, :, :])


@pytest.mark.parametrize("name", COMPOSITIONS)
def test_model_save_load_identity(name, tmp_path):
    from rhosr.checkpoint import load_model, save_model

    config = model_config(COMPOSITIONS[name])
    model = random_weights(build_model(config), seed=5).eval()
    save_model(tmp_path / "m", model, {"grid": {"upscale": config.upscale}})
    loaded, meta = load_model(tmp_path / "m")
    assert loaded.config == config and meta["model"] == config.to_dict()
    x, fine = _batch(config)
    x, fine = x.float(), None if fine is None else fine.float()
    with torch.no_grad():
        assert torch.equal(model(x, fine=fine), loaded(x, fine=fine))


def test_model_cbrt_input_transform_feeds_the_trunk_the_cube_root_and_the_base_the_density():
    plain = random_weights(build_model(COMPOSITIONS["srresnet-local-sad_linear"]), seed=3).eval()
    config = model_config(COMPOSITIONS["srresnet-local-cbrt-sad_linear"])
    cbrt = build_model(config).eval()
    cbrt.load_state_dict(plain.state_dict())
    x = _inputs()
    with torch.no_grad():
        x = x.float()
        expected = torch.relu(plain.trunk(x ** (1 / 3)) + plain.base(x, None, 1))
        torch.testing.assert_close(cbrt(x), expected)
        assert not torch.allclose(cbrt(x), plain(x))
    assert "cbrt of sad" in config.describe()
    assert "input_transform" not in model_config(COMPOSITIONS["srresnet-local-sad_linear"]).to_dict()


def test_model_output_scale_multiplies_the_trunk_before_the_base_and_round_trips():
    plain = random_weights(build_model(COMPOSITIONS["srresnet-local-sad_linear"]), seed=3).eval()
    config = model_config({**COMPOSITIONS["srresnet-local-sad_linear"], "output_scale": 1e-3})
    scaled = build_model(config).eval()
    scaled.load_state_dict(plain.state_dict())
    x = _inputs().float()
    with torch.no_grad():
        expected = torch.relu(1e-3 * plain.trunk(x) + plain.base(x, None, 1))
        torch.testing.assert_close(scaled(x), expected)
        assert not torch.allclose(scaled(x), plain(x))
    assert config.to_dict()["output_scale"] == 1e-3
    assert model_config(config.to_dict()) == config
    assert "x 0.001" in config.describe()
    assert "output_scale" not in model_config(COMPOSITIONS["srresnet-local-sad_linear"]).to_dict()


def test_model_old_flat_form_is_an_srresnet_with_its_base():
    old = model_config({**TINY, "norm": "none", "residual_sad": True}, "sad_atrocious")
    assert old.trunk.name == "srresnet" and old.base.name == "sad_linear"
    assert [p.name for p in old.inputs] == ["sad_atrocious"]
    assert model_config(old.to_dict()) == old
    assert model_config(TINY).base.name == "none"
    assert ModelConfig().to_dict()["trunk"] == {"name": "srresnet", **PAPER, "norm": "instance"}


def test_model_old_weights_load_into_the_composition():
    """Weights saved before the composition (SRResNet keys at the top) load into its trunk."""
    from rhosr.model import SRResNet3D, SRResNetOptions

    old = random_weights(SRResNet3D(SRResNetOptions(**TINY)))
    model = build_model(TINY)
    model.load_state_dict(old.state_dict())
    for key, value in old.state_dict().items():
        assert torch.equal(model.state_dict()[f"trunk.{key}"], value)


@pytest.mark.parametrize("config, message", [
    ({"num_feat": 4, "width": 3}, "unknown keys width"),
    ({"num_feat": 10**6}, "num_feat must be from 1 to 1024"),
    ({"num_block": -1}, "num_block must be from 0"),
    ({"kernel": 4}, "kernel must be an odd number"),
    ({"num_up": 3}, "num_up must be from 1 to 2"),
    ({"num_feat": "8"}, "num_feat: must be an integer"),
    ({"residual_sad": "yes"}, "residual_sad must be true or false"),
    ({"num_feat": 1024, "num_block": 1000, "kernel": 15}, "parameters"),  # ~ 28 TB
    ({"trunk": "resnet50"}, "unknown trunk 'resnet50'; choose from srresnet, unet"),
    ({"trunk": {"name": "unet", "channels": [16] * 9}}, "unet levels"),
    ({"trunk": {"name": "unet", "channels": [0, 4]}}, "unet channels must be from 1"),
    ({"trunk": {"name": "unet", "blocks": 10**9}}, "unet blocks must be from 0 to 64"),
    ({"trunk": {"name": "unet", "channels": 16}}, "channels: must be a list"),
    ({"trunk": {"num_feat": 4}}, "a mapping with a name"),
    ({"trunk": "srresnet", "num_feat": 4}, "unknown keys num_feat"),
    ({"base": "prior"}, "unknown base 'prior'"),
    ({"base": "none", "input_transform": "log"}, "input_transform must be one of none, cbrt"),
    ({"base": "none", "input_transform": 3}, "input_transform must be one of none, cbrt"),
    ({"base": "none", "output_scale": 0}, "output_scale must be a number"),
    ({"base": "none", "output_scale": "1e-3"}, "output_scale must be a number"),
    ({"base": "none", "output_scale": True}, "output_scale must be a number"),
    ({"inputs": []}, "non-empty list"),
    ({"inputs": ["sad", "sad"]}, "listed twice"),
    ({"inputs": ["density"]}, "unknown input 'density'"),
    ({"inputs": [{"name": "sad_elements"}]}, "needs a list of 1 to 118 elements"),
    ({"inputs": [{"name": "sad_elements", "elements": ["H", "Xx"]}]}, "'Xx' in elements"),
    ({"inputs": [{"name": "sad_elements", "elements": ["H"]}], "base": "sad_linear"},
     "the first input must be sad or sad_atrocious"),
])
def test_model_bad_config_is_one_line_error_before_any_work(config, message):
    with pytest.raises(InputError) as info:
        build_model(config)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_model_import_needs_no_pyscf_nor_ase():
    """``import rhosr.model`` (what the GPU machine runs) loads neither PySCF nor ASE."""
    import subprocess
    import sys

    code = ("import sys, rhosr.model, rhosr.checkpoint; "
            "bad = [m for m in ('pyscf', 'ase') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_pixel_shuffle_3d_places_channels():
    x = torch.arange(8.0).view(1, 8, 1, 1, 1)
    out = pixel_shuffle_3d(x)
    assert out.shape == (1, 1, 2, 2, 2)
    assert out[0, 0, 1, 0, 1] == 5  # channel i*4 + j*2 + k


def test_circular_pad_gradient_equals_pytorch():
    import torch.nn.functional as F

    from rhosr.model import circular_pad

    x = torch.rand(2, 3, 5, 6, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: circular_pad(t, 2), (x,))
    g = torch.rand(2, 3, 9, 10, 8, dtype=torch.float64)
    (ours,) = torch.autograd.grad(circular_pad(x, 2), x, g)
    (theirs,) = torch.autograd.grad(F.pad(x, (2,) * 6, mode="circular"), x, g)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-14)


@pytest.mark.parametrize("channels", [(1, 4), (4, 1), (1, 1)])
def test_single_channel_convolution_is_exact(channels):
    """Inference runs single-channel convolutions as GEMMs; they equal oneDNN's convolution."""
    import rhosr.model as m

    conv = m.PeriodicConv3d(*channels, 3).double()
    x = torch.rand(2, channels[0], 7, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        ours = conv(x)
        theirs = torch.nn.Conv3d.forward(conv, m.circular_pad(x, 1))
        direct = m._conv_one_channel_side(conv, m.circular_pad(x, 1))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-13)
    torch.testing.assert_close(direct, theirs, rtol=0, atol=1e-13)


def test_residual_sad_model_starts_from_the_interpolated_sad():
    from rhosr.model import upsample_linear

    model = build_model({**TINY, "num_block": 1, "norm": "none", "residual_sad": True}).double()
    x = _inputs()
    torch.testing.assert_close(model(x), upsample_linear(x), rtol=0, atol=0)
    fine = upsample_linear(x)
    assert torch.equal(fine[..., ::2, ::2, ::2], x)  # fine point 2i is coarse point i
    torch.testing.assert_close(fine[:, :, 1, 0, 0], 0.5 * (x[:, :, 0, 0, 0] + x[:, :, 1, 0, 0]))
    torch.testing.assert_close(fine[:, :, -1, 0, 0], 0.5 * (x[:, :, -1, 0, 0] + x[:, :, 0, 0, 0]))  # wraps


@pytest.mark.parametrize("n_x", [9, 12, 17])
def test_cpu_slab_convolution_is_exact(n_x):
    import rhosr.model as m

    conv = m.PeriodicConv3d(3, 4, 3).double()
    x = torch.rand(1, 3, n_x, 6, 5, dtype=torch.float64)
    whole = torch.nn.Conv3d.forward(conv, m.circular_pad(x, 1))
    for slabs in (2, 3):
        sliced = m._conv_in_slabs(conv, m.circular_pad(x, 1), slabs)
        torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-13)


@pytest.mark.parametrize("num_up", [1, 2])
def test_widening_a_trained_model_keeps_its_output_and_lets_new_channels_learn(num_up):
    from rhosr.checkpoint import widen_state
    from rhosr.errors import InputError

    small = dict(num_feat=4, kernel_first=3, kernel=3, num_block=2, num_up=num_up, norm="none",
                 residual_sad=True)
    trained = random_weights(build_model(small), seed=3)
    wide = build_model({**small, "num_feat": 8})
    wide.load_state_dict(widen_state(trained.state_dict(), wide.state_dict()))
    x = torch.rand(1, 1, 6, 7, 5)
    with torch.no_grad():
        assert torch.allclose(wide(x), trained(x), rtol=1e-5, atol=1e-6)
    wide(x).sum().backward()
    assert wide.trunk.conv_last.weight.grad[:, 4:].abs().sum() > 0  # the added features reach the output
    deeper = build_model({**small, "num_block": 3})
    with pytest.raises(InputError):
        widen_state(trained.state_dict(), deeper.state_dict())


def test_gpu_benchmark_script_runs_where_pyscf_is_missing(tmp_path):
    """benchmarks/gpu_paper_model.py is meant for the GPU machine (torch, no PySCF): it must run
    there first time. Here on the CPU with PySCF hidden, a tiny model, two steps."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_paper_model.py"
    code = (
        "import sys, runpy; sys.modules['pyscf'] = None; "
        f"sys.argv = ['x', '--device', 'cpu', '--config', 'tiny', '--steps', '2', '--warmup', '1', "
        f"'--infer', '1', '--precision', 'fp32', '--md', {str(tmp_path / 'r.md')!r}]; "
        f"runpy.run_path({str(script)!r}, run_name='__main__'); "
        "assert 'pyscf.lib' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["parameters"] > 0 and report["train_seconds_per_step"] > 0
    assert (tmp_path / "r.md").read_text().startswith("# Paper-size model on a GPU")
