"""The whole single-molecule path through the real CLI, in a temporary folder."""

import os
import stat
import subprocess
import sys

import pytest

from rhosr.io import read_cube


def test_sad_dft_error_end_to_end(tmp_path, run_cli, water_xyz):
    sad, ref = tmp_path / "sad.cube", tmp_path / "labels" / "ref.cube"  # labels/: made by dft
    code, _, err = run_cli("sad", water_xyz, "-o", sad, "--mesh", "fine")
    assert code == 0 and "SAD built" in err
    code, out, err = run_cli("dft", water_xyz, "-o", ref, "--preset", "tiny", "--json",
                             tmp_path / "summaries" / "s.json")
    assert (tmp_path / "summaries" / "s.json").exists()
    assert code == 0 and "E = " in out and "SCF cycle" in err
    assert read_cube(ref).integral == pytest.approx(8, rel=1e-5)
    code, out, _ = run_cli("error", sad, ref)
    assert code == 0
    value = float(out.split("=")[1].split("%")[0])
    assert 8 < value < 25  # the SAD is a rough guess: the paper's QM9 mean is 13.9%
    code, out, _ = run_cli("error", ref, ref)
    assert float(out.split("=")[1].split("%")[0]) == 0.0


@pytest.mark.parametrize("argv, message", [
    (["dft", "{xyz}", "-o", "ref.txt", "--preset", "tiny"], "unknown output format"),
    (["dft", "{xyz}", "-o", "afile/ref.cube", "--preset", "tiny"], "afile is not a folder"),
    (["dft", "{xyz}", "-o", "ref.cube", "--json", "afile/s.json", "--preset", "tiny"], "is not a folder"),
    (["sad", "{xyz}", "-o", "sad.dat"], "unknown output format"),
    (["dft", "{xyz}", "-o", "ref.cube", "--save-dm", "dm.txt", "--preset", "tiny"], "unknown output format"),
    (["scf", "{xyz}", "--guess", "minao", "--preset", "tiny", "--json", "afile/s.json"], "is not a folder"),
    (["onestep", "{xyz}", "--preset", "tiny", "--molden", "afile/o.molden"], "is not a folder"),
    (["dft", "{xyz}", "-o", "ref.cube", "--json", "afolder", "--preset", "tiny"], "--json afolder: is a"),
    (["scf", "{xyz}", "--guess", "minao", "--preset", "tiny", "--json", "afolder"], "is a folder"),
    (["onestep", "{xyz}", "--sad", "--preset", "tiny", "--json", "afolder"], "is a folder"),
    (["predict", "{xyz}", "-o", "name.txt"], "-o name.txt: unknown output format"),
    (["predict", "{xyz}", "{xyz}", "-o", "afile"], "exists and is not a folder"),
    (["train", "--store", "st", "--config", "tiny", "--out", "afile"], "--out afile: exists and is not"),
])
def test_bad_output_path_fails_before_any_work(argv, message, tmp_path, run_cli, water_xyz, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "afolder").mkdir()
    before = set(tmp_path.iterdir())
    code, out, err = run_cli(*[a.format(xyz=water_xyz) for a in argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert "SCF" not in err + out and set(tmp_path.iterdir()) == before  # nothing run, nothing written


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
@pytest.mark.parametrize("argv", [
    ["dft", "{xyz}", "-o", "/proc/x.cube", "--preset", "tiny"],
    ["dft", "{xyz}", "-o", "ref.cube", "--json", "/proc/x.json", "--preset", "tiny"],
    ["dft", "{xyz}", "-o", "ref.cube", "--save-dm", "/proc/dm.npy", "--preset", "tiny"],
    ["sad", "{xyz}", "-o", "/proc/x.cube"],
    ["scf", "{xyz}", "--guess", "minao", "--preset", "tiny", "--json", "/proc/x.json"],
    ["onestep", "{xyz}", "--sad", "--preset", "tiny", "--molden", "/proc/x.molden"],
    ["predict", "{xyz}", "-o", "/proc/x.cube"],
    ["predict", "{xyz}", "{xyz}", "-o", "/proc/preds"],
    ["evaluate", "--cubes", ".", ".", "-o", "/proc/report"],
    ["train", "--store", "st", "--config", "tiny", "--out", "/proc/run"],
    ["label", "{xyz}", "--store", "/proc/store", "--workers", "0"],
])
def test_unwritable_output_fails_before_any_work(argv, tmp_path, run_cli, water_xyz, monkeypatch):
    """A location that cannot be written (here /proc, which even root cannot write in) is a
    one-line error before the SCF, the prediction or the training, not a traceback after it."""
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    code, out, err = run_cli(*[a.format(xyz=water_xyz) for a in argv])
    assert code == 2 and "cannot write in /proc" in err and len(err.strip().splitlines()) == 1, err
    assert "SCF" not in err + out and set(tmp_path.iterdir()) == before


def test_store_export_checks_its_output_first(tiny_store, run_cli, tmp_path):
    from rhosr.store import DatasetStore

    entry_id = DatasetStore.open(tiny_store).entry_ids("train")[0]
    (tmp_path / "y.cube").mkdir()
    for output, message in ((tmp_path / "x.txt", "unknown output format"),
                            (tmp_path / "y.cube", "is a folder"), ("/proc/x.cube", "cannot write in /proc")):
        code, _, err = run_cli("store", "export", tiny_store, entry_id, "-o", output)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(umask, tmp_path, run_cli, water_xyz):
    """Outputs get 0o666 & ~umask (0644 or 0600), as any new file does, not the temporary file's 0600."""
    from rhosr.checkpoint import save_model
    from rhosr.model import build_model

    old = os.umask(umask)
    try:
        assert run_cli("sad", water_xyz, "-o", tmp_path / "out" / "sad.cube")[0] == 0
        assert run_cli("predict", water_xyz, "-o", tmp_path / "preds", "--format", "npy", "--quiet")[0] == 0
        save_model(tmp_path / "model", build_model({"num_feat": 2, "num_block": 1}),
                   {"grid": {"upscale": 2, "margin_angstrom": 4.0}})  # a run's best/
    finally:
        os.umask(old)
    for path in (tmp_path / "out" / "sad.cube", tmp_path / "preds" / "water.npy",
                 tmp_path / "model" / "model.safetensors", tmp_path / "model" / "model.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, oct(path.stat().st_mode)


@pytest.mark.parametrize("argv, message", [
    (["dft", "{xyz}", "-o", "d.cube", "--preset", "tiny", "--smearing", "-1"], "--smearing must be"),
    (["label", "{xyz}", "--store", "st", "--threads-per-worker", "-2"], "--threads-per-worker must be >= 1"),
    (["train", "--store", "st", "--config", "tiny", "--devices", "0"], "--devices must be >= 1"),
    (["train", "--store", "st", "--config", "tiny", "--num-nodes", "0"], "--num-nodes must be >= 1"),
    (["train", "--store", "st", "--config", "tiny", "--max-steps", "0"], "--max-steps must be >= 1"),
    (["error", "{xyz}", "{xyz}", "--electrons", "-1"], "--electrons must be > 0"),
])
def test_out_of_range_numbers_are_one_line_errors(argv, message, tmp_path, run_cli, water_xyz, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "error":  # two real densities, so only the option is wrong
        run_cli("sad", water_xyz, "-o", tmp_path / "w.cube")
        argv = [a.replace("{xyz}", str(tmp_path / "w.cube")) for a in argv]
    code, _, err = run_cli(*[a.format(xyz=water_xyz) for a in argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_error_rejects_different_meshes(tmp_path, run_cli, water_xyz):
    coarse, fine = tmp_path / "c.cube", tmp_path / "f.cube"
    run_cli("sad", water_xyz, "-o", coarse)
    run_cli("sad", water_xyz, "-o", fine, "--mesh", "fine")
    code, _, err = run_cli("error", coarse, fine)
    assert code == 2 and "meshes differ" in err and len(err.strip().splitlines()) == 1


def test_error_reads_npy_arrays_3d_or_flat(tmp_path, run_cli, water_xyz):
    """.npy densities (ours, or flat in C order like the authors' rho_22.npy) against a cube."""
    import numpy as np

    cube, npy = tmp_path / "sad.cube", tmp_path / "sad.npy"
    run_cli("sad", water_xyz, "-o", cube, "--mesh", "fine")
    run_cli("sad", water_xyz, "-o", npy, "--mesh", "fine")
    rho = np.load(npy)
    np.save(tmp_path / "flat.npy", rho.ravel())
    np.save(tmp_path / "half.npy", 0.5 * rho)  # Err_rho of half the density: 50%
    cases = [(npy, cube, []), (tmp_path / "flat.npy", cube, []),
             (tmp_path / "half.npy", tmp_path / "flat.npy", ["--molecule", water_xyz]),
             (tmp_path / "half.npy", npy, [])]
    values, outs = [], []
    for a, b, extra in cases:
        code, out, err = run_cli("error", a, b, *extra)
        assert code == 0, err
        values.append(float(out.split("=")[1].split("%")[0]))
        outs.append(out)
    assert values[:2] == [0.0, 0.0]
    assert values[2] == pytest.approx(50.0, abs=0.01) and "N_e = 8;" in outs[2]  # from --molecule
    assert values[3] == pytest.approx(50.0, abs=0.01) and "normalised by the sum" in outs[3]
    code, _, err = run_cli("error", tmp_path / "flat.npy", tmp_path / "flat.npy")
    assert code == 2 and "pass --molecule" in err
    code, _, err = run_cli("error", tmp_path / "flat.npy", npy, "--molecule", "qm9:5")
    assert code == 2 and "neither the fine" in err


def test_sad_upscale_4_coarse_mesh(tmp_path, run_cli, water_xyz):
    out = tmp_path / "sad4.cube"
    assert run_cli("sad", water_xyz, "-o", out, "--upscale", "4")[0] == 0
    assert read_cube(out).voxel_volume == pytest.approx((4 * 0.15708) ** 3, rel=1e-3)


def test_console_script_help_explains_units():
    result = subprocess.run([sys.executable, "-m", "rhosr.cli", "dft", "--help"],
                            capture_output=True, text=True, check=True)
    assert "e/Bohr^3" in result.stdout and "--preset" in result.stdout


def test_python_dash_m_rhosr_is_the_console_script():
    result = subprocess.run([sys.executable, "-m", "rhosr", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("rhosr ")


def test_no_command_prints_help(run_cli):
    code, out, _ = run_cli()
    assert code == 2 and "COMMAND" in out
