"""The 3D SRResNet: shapes, normalisation, parameter count, periodic equivariance."""

import pytest
import torch
from tests.conftest import random_weights

from rhosr.model import ModelConfig, build_model, count_parameters, normalize, pixel_shuffle_3d

TINY = ModelConfig(num_feat=4, kernel_first=3, kernel=3, num_block=2, num_up=1)


def _inputs(shape=(1, 1, 6, 7, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("num_up", [1, 2])
def test_output_shape_x2_x4(num_up):
    model = build_model(ModelConfig(4, 3, 3, 1, num_up)).double()
    out = model(_inputs())
    assert out.shape == (1, 1, 6 * 2**num_up, 7 * 2**num_up, 8 * 2**num_up)


def test_output_integrates_to_electron_count():
    model = build_model(TINY).double()
    out = model(_inputs((2, 1, 6, 7, 8)), torch.tensor([8.0, 10.0]), torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(out.sum(dim=(1, 2, 3, 4)) * torch.tensor([0.1, 0.2], dtype=out.dtype),
                               torch.tensor([8.0, 10.0], dtype=out.dtype))
    assert out.min() >= 0


def test_paper_config_parameter_count():
    assert count_parameters(build_model(ModelConfig(32, 5, 5, 32, 1))) == 9_354_403  # paper: ~9.35 M


def test_all_zero_input_gives_finite_output():
    model = build_model(TINY).double()
    out = model(torch.zeros(1, 1, 6, 6, 6, dtype=torch.float64), torch.tensor([8.0]), torch.tensor([0.1]))
    assert torch.isfinite(out).all()
    assert float(out.detach().sum()) * 0.1 == pytest.approx(8.0)
    zero = normalize(torch.zeros(1, 1, 2, 2, 2), torch.tensor([4.0]), torch.tensor([0.5]))
    assert torch.isfinite(zero).all() and float(zero.sum()) * 0.5 == pytest.approx(4.0)


@pytest.mark.parametrize("options", [{}, {"norm": "none", "residual_sad": True}])
def test_periodic_shift_equivariance(options):
    """Shifting the input by whole coarse voxels shifts the output by the matching fine voxels."""
    import dataclasses

    model = random_weights(build_model(dataclasses.replace(TINY, **options))).double().eval()
    x = _inputs()
    shift = (2, -3, 5)
    out = model(x)
    out_shifted = model(torch.roll(x, shift, dims=(2, 3, 4)))
    torch.testing.assert_close(out_shifted, torch.roll(out, tuple(2 * s for s in shift), dims=(2, 3, 4)),
                               rtol=1e-12, atol=1e-12)


def test_pixel_shuffle_3d_places_channels():
    x = torch.arange(8.0).view(1, 8, 1, 1, 1)
    out = pixel_shuffle_3d(x)
    assert out.shape == (1, 1, 2, 2, 2)
    assert out[0, 0, 1, 0, 1] == 5  # channel i*4 + j*2 + k


def test_unknown_config_keys_refused():
    from rhosr.errors import InputError

    with pytest.raises(InputError, match="unknown keys"):
        build_model({"num_feat": 4, "width": 3})


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

    model = build_model(ModelConfig(4, 3, 3, 1, 1, norm="none", residual_sad=True)).double()
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
    trained = random_weights(build_model(ModelConfig(**small)), seed=3)
    wide = build_model(ModelConfig(**{**small, "num_feat": 8}))
    wide.load_state_dict(widen_state(trained.state_dict(), wide.state_dict()))
    x = torch.rand(1, 1, 6, 7, 5)
    with torch.no_grad():
        assert torch.allclose(wide(x), trained(x), rtol=1e-5, atol=1e-6)
    wide(x).sum().backward()
    assert wide.conv_last.weight.grad[:, 4:].abs().sum() > 0  # the added features reach the output
    deeper = build_model(ModelConfig(**{**small, "num_block": 3}))
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
