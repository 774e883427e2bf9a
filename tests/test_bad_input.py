"""Bad numbers and damaged files through the real CLI: one line ``rhosr CMD: error: ...``, exit
code 2, before any work, nothing written."""

import numpy as np
import pytest

from rhosr.io import write_density

WATER = "3\nwater\nO 0.000 0.000 0.117\nH 0.000 0.757 -0.469\nH 0.000 -0.757 -0.469\n"
TINY_MODEL = "model: {num_feat: 4, kernel_first: 3, kernel: 3, num_block: 1, num_up: 1}\nepochs: 2\n"
BAD_CONFIG_KEYS = {
    "lr0": "lr: 0", "lrnan": "lr: .nan", "lrinf": "lr: .inf", "lrtext": "lr: fast",
    "epochs0": "epochs: 0", "epochs_float": "epochs: 2.5", "batch0": "batch_size: 0",
    "accumulate0": "accumulate_grad_batches: 0", "warmup_factor0": "warmup_factor: 0",
    "warmup_long": "warmup_epochs: 5", "betas": "betas: [1.5, 0.9]", "crop": "crop: -4",
    "workers": "num_workers: -1", "seed": "seed: -1", "precision": "precision: 33",
    "augment": "augment: sometimes", "log0": "log_every_n_steps: 0",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and damaged inputs in their own folder (the commands run in an empty one)."""
    from ase import Atoms

    d = tmp_path_factory.mktemp("inputs")
    (d / "water.xyz").write_text(WATER)
    (d / "nan.xyz").write_text(WATER.replace("O 0.000", "O nan"))
    (d / "far.xyz").write_text("2\nfar\nH 0 0 0\nH 1e6 0 0\n")
    atoms = Atoms("H2", [(1.0, 1.0, 1.0), (1.0, 1.0, 1.74)], cell=[2.0, 2.0, 2.74], pbc=True)
    rho = np.random.default_rng(0).random((4, 4, 6))
    write_density(d / "good.cube", atoms, rho)
    lines = (d / "good.cube").read_text().splitlines(keepends=True)
    head, data = lines[:8], lines[8:]

    def cube(name, header=head, values=data):
        (d / name).write_text("".join(header + values))

    cube("trunc.cube", values=data[: len(data) // 2])
    cube("nan.cube", values=["nan\n"] + data[1:])  # ASE writes one value per line
    cube("inf.cube", values=data[:5] + ["-inf\n"] + data[6:])
    cube("zero_count.cube", header=head[:3] + ["    0    0.5   0.0   0.0\n"] + head[4:])
    cube("flat_voxel.cube", header=head[:3] + ["    4    0.0   0.0   0.0\n"] + head[4:])
    cube("nan_atom.cube", header=head[:6] + ["    1    0.0   nan   1.0   1.0\n"] + head[7:])
    cube("orbital.cube", header=head[:2] + ["   -2    0.0   0.0   0.0\n"] + head[3:])
    np.save(d / "nan.npy", np.full((4, 4, 6), np.nan))
    np.save(d / "plane.npy", rho[0])
    np.save(d / "int.npy", (rho * 10).astype(int))
    np.save(d / "empty.npy", np.zeros((0, 4, 4)))
    np.save(d / "good.npy", rho)
    (d / "trunc.npy").write_bytes((d / "good.npy").read_bytes()[:200])
    for name, line in BAD_CONFIG_KEYS.items():
        (d / f"{name}.yaml").write_text(TINY_MODEL + line + "\n")
    return {"d": str(d), "water": str(d / "water.xyz")}


W = "{water}"
BAD = [
    # numbers: the box
    (["sad", W, "-o", "s.cube", "--margin", "-1"], "margin must be >= 2"),
    (["sad", W, "-o", "s.cube", "--margin", "nan"], "margin must be a finite number"),
    (["sad", W, "-o", "s.cube", "--margin", "inf"], "margin must be a finite number"),
    (["sad", W, "-o", "s.cube", "--margin", "0.5"], "margin must be >= 2"),
    (["sad", W, "-o", "s.cube", "--margin", "1e5"], "at most 1000 Angstrom per axis"),
    (["sad", "{d}/far.xyz", "-o", "s.cube"], "at most 1000 Angstrom per axis"),
    (["dft", W, "-o", "d.cube", "--preset", "tiny", "--margin", "nan"], "margin must be a finite"),
    (["onestep", W, "--sad", "--preset", "tiny", "--margin", "nan"], "margin must be a finite"),
    (["scf", W, "--guess", "minao", "--preset", "tiny", "--margin", "-4"], "margin must be >= 2"),
    (["label", "{d}", "--store", "st", "--workers", "0", "--margin", "nan"], "margin must be a finite"),
    (["error", "{d}/good.npy", "{d}/good.npy", "--molecule", W, "--margin", "inf"], "margin must be a"),
    # numbers: the molecule
    (["sad", "{d}/nan.xyz", "-o", "s.cube"], "positions are not finite"),
    (["sad", W, "-o", "s.cube", "--charge", "-100"], "in 40 GTH-TZV2P orbitals"),
    (["dft", W, "-o", "d.cube", "--preset", "tiny", "--charge", "-80"], "in 40 GTH-TZV2P orbitals"),
    (["scf", W, "--guess", "minao", "--preset", "tiny", "--charge", "-80"], "in 40 GTH-TZV2P orbitals"),
    (["predict", W, "-o", "p.cube", "--charge", "-200"], "in 40 GTH-TZV2P orbitals"),
    (["sad", W, "-o", "s.cube", "--charge", "100"], "leaves -92 valence electrons"),
    (["sad", W, "-o", "s.cube", "--spin", "-1"], "cannot have spin"),
    # numbers: flags
    (["dft", W, "-o", "d.cube", "--preset", "tiny", "--smearing", "inf"], "--smearing must be a finite"),
    (["dft", W, "-o", "d.cube", "--preset", "tiny", "--smearing", "nan"], "--smearing must be a finite"),
    (["error", "{d}/good.cube", "{d}/good.cube", "--electrons", "inf"], "--electrons must be a finite"),
    (["predict", W, "-o", "p.cube", "--tile", "0"], "--tile must be >= 1"),
    (["predict", W, "-o", "p.cube", "--rotations", "25"], "--rotations must be <= 24"),
    (["predict", W, "-o", "p.cube", "--max-memory", "inf"], "--max-memory must be a finite"),
    (["predict", W, "-o", "p.cube", "--max-memory", "nan"], "--max-memory must be a finite"),
    (["evaluate", "--store", "st", "--rotations", "0", "-o", "rep"], "--rotations must be >= 1"),
    (["evaluate", "--store", "st", "--tile", "-2", "-o", "rep"], "--tile must be >= 1"),
    (["train", "--store", "st", "--config", "tiny", "--devices", "many"], "--devices must be"),
    (["train", "--store", "st", "--config", "tiny", "--accelerator", "abc"], "--accelerator must be one of"),
    (["train", "--store", "st", "--config", "tiny", "--strategy", "ddpp"], "--strategy must be auto or"),
    # numbers: the training config
    (["train", "--store", "st", "--config", "{d}/lr0.yaml"], "lr must be > 0"),
    (["train", "--store", "st", "--config", "{d}/lrnan.yaml"], "lr must be a finite number"),
    (["train", "--store", "st", "--config", "{d}/lrinf.yaml"], "lr must be a finite number"),
    (["train", "--store", "st", "--config", "{d}/lrtext.yaml"], "lr must be a number"),
    (["train", "--store", "st", "--config", "{d}/epochs0.yaml"], "epochs must be >= 1"),
    (["train", "--store", "st", "--config", "{d}/epochs_float.yaml"], "epochs must be an integer"),
    (["train", "--store", "st", "--config", "{d}/batch0.yaml"], "batch_size must be >= 1"),
    (["train", "--store", "st", "--config", "{d}/accumulate0.yaml"], "accumulate_grad_batches must be >= 1"),
    (["train", "--store", "st", "--config", "{d}/warmup_factor0.yaml"], "warmup_factor must be > 0"),
    (["train", "--store", "st", "--config", "{d}/warmup_long.yaml"], "warmup_epochs must be <= 2"),
    (["train", "--store", "st", "--config", "{d}/betas.yaml"], "betas must be <= 0.999999"),
    (["train", "--store", "st", "--config", "{d}/crop.yaml"], "crop must be >= 1"),
    (["train", "--store", "st", "--config", "{d}/workers.yaml"], "num_workers must be >= 0"),
    (["train", "--store", "st", "--config", "{d}/seed.yaml"], "seed must be >= 0"),
    (["train", "--store", "st", "--config", "{d}/precision.yaml"], "precision must be one of"),
    (["train", "--store", "st", "--config", "{d}/augment.yaml"], "augment must be true or false"),
    (["train", "--store", "st", "--config", "{d}/log0.yaml"], "log_every_n_steps must be >= 1"),
    # files: cube and .npy, in every command that reads them
    (["error", "{d}/trunc.cube", "{d}/good.cube"], "truncated: the header announces 4 x 4 x 6 = 96"),
    (["error", "{d}/good.cube", "{d}/nan.cube"], "nan.cube: holds 1 NaN or infinite values"),
    (["error", "{d}/inf.cube", "{d}/good.cube"], "inf.cube: holds 1 NaN or infinite values"),
    (["error", "{d}/zero_count.cube", "{d}/good.cube"], "axis x has 0 points"),
    (["error", "{d}/flat_voxel.cube", "{d}/good.cube"], "not an orthorhombic, axis-aligned mesh"),
    (["error", "{d}/nan_atom.cube", "{d}/good.cube"], "nan_atom.cube: line 7"),
    (["error", "{d}/orbital.cube", "{d}/good.cube"], "orbital cube"),
    (["error", "{d}/water.xyz", "{d}/good.cube"], "water.xyz: not a readable cube file"),
    (["error", "{d}/nan.npy", "{d}/good.cube"], "nan.npy: holds 96 NaN or infinite values"),
    (["error", "{d}/plane.npy", "{d}/good.cube"], "a density must be a 3D (x, y, z) or flat float"),
    (["error", "{d}/int.npy", "{d}/good.cube"], "a density must be a 3D (x, y, z) or flat float"),
    (["error", "{d}/empty.npy", "{d}/good.cube"], "empty.npy: holds an empty array"),
    (["error", "{d}/trunc.npy", "{d}/good.cube"], "trunc.npy: truncated"),
    (["predict", W, "-o", "p.cube", "--reference", "{d}/nan.cube"], "nan.cube: holds 1 NaN"),
    (["predict", W, "-o", "p.cube", "--reference", "{d}/trunc.npy"], "trunc.npy: truncated"),
    (["onestep", W, "--preset", "tiny", "--density", "{d}/trunc.cube"], "trunc.cube: truncated"),
    (["onestep", W, "--preset", "tiny", "--density", "{d}/nan.npy"], "nan.npy: holds 96 NaN"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[f"{a[0]}-{m[:28]}" for a, m in BAD])
def test_cli_bad_input_is_one_line_error_before_any_work(argv, message, files, tmp_path, run_cli,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*[a.format(**files) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"rhosr {argv[0]}: error: "), err
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made


@pytest.mark.parametrize("argv, job", [
    (["dft", W, "-o", "d.cube", "--preset", "tiny", "-q"], "DFT of water (3 atoms, box"),
    (["scf", W, "--guess", "minao", "--preset", "tiny", "--quiet"], "DFT of water (3 atoms, box"),
    (["onestep", W, "--sad", "--preset", "tiny", "--quiet"], "DFT of water (3 atoms, box"),
    (["predict", W, "-o", "p.cube", "--quiet"], "the prediction of water (fine mesh"),
    (["sad", W, "-o", "s.cube"], "the SAD of water on the coarse mesh"),
])
def test_cli_job_too_big_for_memory_is_refused_with_its_estimate(argv, job, files, tmp_path, run_cli,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rhosr.memory.available_bytes", lambda: 100_000)  # 0.1 MB
    code, out, err = run_cli(*[a.format(**files) for a in argv])
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"rhosr {argv[0]}: error: {job}"), err
    assert "needs about" in last and "GB of memory, 0.0001 GB available" in last
    assert "SCF cycle" not in err and list(tmp_path.iterdir()) == []


def test_dft_memory_estimate_matches_measured_peak():
    """Within a factor 1.5 of the measured growth of peak memory (see BYTES_PER_AO_PAIR)."""
    from ase import Atoms

    from rhosr.dft.cell import estimate_memory_bytes
    from rhosr.grid import place_in_box
    from rhosr.molecule import Molecule

    water = Molecule(Atoms("OH2", [(0, 0, 0.117), (0, 0.757, -0.469), (0, -0.757, -0.469)]), name="w")
    placed, grid = place_in_box(water, 2, 8.0)
    assert 157e6 / 1.5 < estimate_memory_bytes(placed, grid, 100.0) < 157e6 * 1.5


def test_box_must_hold_the_molecule(tmp_path, run_cli, files):
    """A reference cube whose atoms lie outside its own box is refused by evaluate --cubes."""
    from ase import Atoms

    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir(), ref.mkdir()
    atoms = Atoms("H2", [(1.0, 1.0, 1.0), (1.0, 1.0, 3.5)], cell=[2.0, 2.0, 2.74], pbc=True)
    rho = np.full((4, 4, 6), 0.01)
    write_density(ref / "h2.cube", atoms, rho)
    write_density(pred / "h2.cube", atoms, rho)
    code, _, err = run_cli("evaluate", "--cubes", pred, ref)
    assert code == 2 and "lies outside the box" in err and len(err.strip().splitlines()) == 1


def test_read_cube_puts_atoms_in_the_box_frame(tmp_path):
    """A cube with a non-zero origin (other programs write them) gives atoms relative to the
    mesh corner, where rhosr's grids start."""
    from ase import Atoms

    from rhosr.io import read_cube

    path = tmp_path / "x.cube"
    write_density(path, Atoms("H", [(1.0, 1.0, 1.0)], cell=[2.0, 2.0, 2.0], pbc=True), np.ones((4, 4, 4)))
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "    1    1.000000    2.000000    3.000000\n"  # origin in Bohr
    path.write_text("".join(lines))
    expected = np.array([1.0, 1.0, 1.0]) - np.array([1.0, 2.0, 3.0]) * 0.529177210903
    assert np.allclose(read_cube(path).atoms.get_positions()[0], expected, atol=1e-5)


def test_prediction_too_big_for_the_gpu_is_refused_with_its_estimate(monkeypatch, tiny_model_dir):
    """On a GPU the forward pass must fit in its free memory (no CUDA needed: the free memory
    is stubbed); the CPU keeps the whole-box arrays."""
    from ase import Atoms

    from rhosr.errors import InputError
    from rhosr.grid import place_in_box
    from rhosr.molecule import Molecule
    from rhosr.predict import _check_memory, load_predictor

    net, _ = load_predictor(tiny_model_dir, "cpu")
    water = Molecule(Atoms("OH2", [(0, 0, 0.117), (0, 0.757, -0.469), (0, -0.757, -0.469)]), name="w")
    _, grid = place_in_box(water)
    monkeypatch.setattr("rhosr.memory.gpu_available_bytes", lambda device: 1000)
    with pytest.raises(InputError, match=r"needs about .* GB of GPU memory, 1e-06 GB free on the GPU; "
                                         "--max-memory GB picks tiles"):
        _check_memory(net, water, grid, None, "cuda")
    monkeypatch.setattr("rhosr.memory.gpu_available_bytes", lambda device: 10**12)
    _check_memory(net, water, grid, None, "cuda")  # fits


def test_error_refuses_a_negative_density(tmp_path, run_cli, water_xyz):
    """A cube of negative values is not a density: `rhosr error` says so instead of a number."""
    from ase.io.cube import read_cube_data, write_cube

    assert run_cli("sad", water_xyz, "-o", tmp_path / "a.cube")[0] == 0
    rho, atoms = read_cube_data(str(tmp_path / "a.cube"))
    with open(tmp_path / "neg.cube", "w") as fh:
        write_cube(fh, atoms, data=-rho)
    code, _, err = run_cli("error", tmp_path / "neg.cube", tmp_path / "a.cube")
    assert code == 2 and "not a density" in err, err
