"""Adversarial sweep: every rhosr command tried as a careless or hostile user would.

A data-driven list of attempts. Each attempt has a name, the point of the issue
"Trustworthy by default" it probes (1 damaged stores, 2 concurrent labelling, 3 resume,
4 output locations, 5 numbers, 6 files read, ``kill`` kills and reruns, ``-`` plain use),
a setup that makes its files in its own scratch folder, the ``rhosr`` command line (run as
``python -m rhosr`` in a subprocess with a timeout, umask 022 and an address-space limit) and
the expected outcome:

* ``error``: exit code 2 and a last stderr line ``rhosr CMD: error: ...``;
* ``ok``: exit code 0 and a check of the result (a density integrates to N_e, a file exists
  with mode 0644, an entry was not recomputed, ...).

Scenario attempts (SIGKILL mid-way and rerun, two runs at once) run their own processes.

Each attempt is classified as one of: ``error`` (a one-line error), ``ok`` (clean success),
``traceback`` (a Traceback on stderr, or killed by a signal: segfault), ``silent_wrong``
(exit 0 where an error was expected, or a check failed), ``work_lost`` (completed entries or
steps redone or gone), ``refused`` (a one-line error where success was expected), ``untidy``
(another non-zero exit without traceback), ``timeout``. An attempt passes when its class is
the expected one (``error`` or ``ok``).

Shared inputs (a tiny store labelled by ``rhosr label`` with ``--preset tiny``, a tiny
training run by ``rhosr train``, DFT and SAD cubes of H2) are built once per scratch folder,
only those the selected attempts need, and reused by later runs with the same ``--scratch``.

Run: ``python benchmarks/adversarial_sweep.py [--only PATTERN] [--workers 2]``; writes
``results/adversarial_sweep.md`` and ``results/adversarial_sweep.json`` (not with ``--only``
unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import multiprocessing
import os
import pickle
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ERROR_LINE = re.compile(r"^rhosr( [\w-]+)*: error: ")
# bytes of address space per rhosr process: an unchecked huge box fails, not the machine
MEMORY_LIMIT = 8 << 30
CLASSES = ("error", "ok", "traceback", "silent_wrong", "work_lost", "refused", "untidy", "timeout")
POINTS = {"1": "damaged store data", "2": "concurrent label", "3": "train --resume / seed",
          "4": "output locations", "5": "numbers checked", "6": "files read validated",
          "kill": "SIGKILL and rerun", "-": "plain use"}

# ---------------------------------------------------------------------------------------------
# running rhosr


@dataclass
class Result:
    rc: int | None
    out: str
    err: str
    seconds: float
    argv: list[str]

    @property
    def text(self) -> str:
        return self.out + self.err


def _limits() -> None:
    os.umask(0o022)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def rhosr_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    """Start ``python -m rhosr ARGV`` in its own session (so a kill reaches its Dask workers)."""
    return subprocess.Popen([sys.executable, "-m", "rhosr", *argv], cwd=cwd, env=rhosr_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_limits)


def finish(proc: subprocess.Popen, argv: list[str], t0: float, timeout: float) -> Result:
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout - (time.time() - t0)))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        kill(proc)
        out, err = proc.communicate()
        rc = None
    return Result(rc, out, err, time.time() - t0, argv)


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def rhosr(argv: list[str], cwd: Path, timeout: float = 60) -> Result:
    t0 = time.time()
    return finish(start(argv, cwd), argv, t0, timeout)


def first_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Traceback") or ERROR_LINE.match(ln):
            return ln if not ln.startswith("Traceback") else lines[-1]
    return lines[-1] if lines else ""


def classify(res: Result, expect: str, problem: str | None) -> str:
    """The class of a finished command; ``problem`` is what its check found wrong (or None)."""
    if res.rc is None:
        return "timeout"
    if res.rc < 0 or "Traceback (most recent call last)" in res.err:
        return "traceback"
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    one_line = res.rc == 2 and bool(lines) and bool(ERROR_LINE.match(lines[-1]))
    if res.rc == 0:
        if expect == "error" or problem:
            return "silent_wrong"
        return "ok"
    if one_line:
        if expect == "error":
            return "silent_wrong" if problem else "error"
        return "refused"
    return "untidy"


# ---------------------------------------------------------------------------------------------
# attempts


@dataclass
class Attempt:
    name: str
    point: str
    command: str
    argv: str = ""  # template: {w} the attempt's folder, {h2}, {store}, ... shared inputs
    expect: str = "error"  # error | ok | either (error or ok; the check decides)
    setup: Callable | None = None  # setup(ctx) -> dict of extra placeholders
    check: Callable | None = None  # check(res, ctx) -> problem or None; for ok (and either)
    needs: tuple = ()
    timeout: float = 60
    scenario: Callable | None = None  # scenario(ctx) -> (class, detail, argv, err)
    ok_codes: tuple = (0,)


ATTEMPTS: list[Attempt] = []


def A(name: str, point: str, argv: str, expect: str = "error", **kw) -> None:
    command = argv.split()[0]
    if command == "store" and argv.split()[1] in ("info", "export", "verify"):
        command = "store " + argv.split()[1]
    ATTEMPTS.append(Attempt(name, point, command, argv, expect, **kw))


def S(name: str, point: str, command: str, scenario: Callable, needs: tuple = (),
      timeout: float = 300) -> None:
    ATTEMPTS.append(Attempt(name, point, command, expect="ok", scenario=scenario, needs=needs,
                            timeout=timeout))


@dataclass
class Ctx:
    w: Path
    fx: dict
    extra: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return self.extra.get(key, self.fx.get(key))


# ---- molecules (cheap, always written) -------------------------------------------------------

MOLECULES = {
    "h2": "2\nH2\nH 0 0 0\nH 0 0 0.74\n",
    "water": "3\nwater\nO 0.000 0.000 0.117\nH 0.000 0.757 -0.469\nH 0.000 -0.757 -0.469\n",
    "hf": "2\nHF\nH 0 0 0\nF 0 0 0.92\n",
    "h2o_bent": "3\n\nO 0 0 0.1\nH 0 0.78 -0.47\nH 0 -0.74 -0.49\n",
}
BAD_XYZ = {
    "empty": "",
    "garbage": "this is not a molecule\n\x00\x01\x02 at all\n",
    "nan_coord": "2\n\nH 0 0 0\nH 0 0 nan\n",
    "inf_coord": "2\n\nH 0 0 0\nH 0 inf 0\n",
    "unknown_element": "2\n\nXx 0 0 0\nH 0 0 0.74\n",
    "same_place": "2\n\nH 0 0 0\nH 0 0 0\n",
    "zero_atoms": "0\n\n",
    "huge_coord": "2\n\nH 0 0 0\nH 0 0 1e6\n",
    "huge_box": "4\n\nH 0 0 0\nH 300 0 0\nH 0 300 0\nH 0 0 300\n",  # a 300 A box: ~190 GB fine mesh
    "count_mismatch": "5\n\nH 0 0 0\nH 0 0 0.74\n",
}


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# ---- shared inputs, built on demand ---------------------------------------------------------

# norm none: the model can be tiled, so the --tile attempts probe the number, not the norm
TINY_MODEL = {"num_feat": 4, "kernel_first": 3, "kernel": 3, "num_block": 1, "num_up": 1, "norm": "none",
              "residual_sad": True}
FIXTURE_KEYS = {  # placeholder -> fixture group that makes it
    "sadcube": "sad", "sadfine": "sad", "sadfine_npy": "sad", "sad_npy": "sad",
    "dftcube": "dft", "dft_npy": "dft",
    "predcube": "pred", "preddir": "pred", "refdir": "pred",
    "store": "store", "model": "run", "run": "run", "runcfg": "run",
    "db": "files", "traj": "files", "src1": "files", "multixyz": "files", "src": "files", "src3": "files",
}
GROUP_NEEDS = {"run": ("store",), "pred": ("dft",)}


class FixtureError(RuntimeError):
    pass


def _must(res: Result, what: str) -> None:
    if res.rc != 0:
        raise FixtureError(f"{what} failed (rc {res.rc}): {' '.join(res.argv)}\n{res.err[-3000:]}")


def build_fixtures(root: Path, groups: set[str]) -> dict:
    """Make the shared inputs of ``groups`` under ``root`` (kept: later runs reuse them)."""
    root.mkdir(parents=True, exist_ok=True)
    fx: dict = {}
    for name, text in MOLECULES.items():
        fx[name] = str(write(root / f"{name}.xyz", text))
    for name, text in BAD_XYZ.items():
        fx[f"xyz_{name}"] = str(write(root / "bad" / f"{name}.xyz", text))
    fx["tinycfg"] = str(write(root / "tiny.yaml", json.dumps({**_tiny_config()})))
    groups = set(groups)
    for g in list(groups):
        groups.update(GROUP_NEEDS.get(g, ()))
    order = ["files", "sad", "dft", "pred", "store", "run"]
    for g in [g for g in order if g in groups]:
        done = root / f".{g}.done"
        if g == "files" or not done.exists():  # files: cheap, rebuilt
            t0 = time.time()
            print(f"[fixture] {g} ...", file=sys.stderr, flush=True)
            FIXTURES[g](root)
            done.write_text("")
            print(f"[fixture] {g} done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    fx.update({
        "sadcube": root / "h2_sad.cube", "sadfine": root / "h2_sad_fine.cube",
        "sadfine_npy": root / "h2_sad_fine.npy", "sad_npy": root / "h2_sad.npy",
        "dftcube": root / "h2_dft.cube", "dft_npy": root / "h2_dft.npy",
        "predcube": root / "pred" / "h2.cube", "preddir": root / "pred", "refdir": root / "ref",
        "store": root / "store", "run": root / "run", "model": root / "run" / "best",
        "runcfg": root / "run.yaml", "db": root / "mols.db", "traj": root / "mols.traj",
        "multixyz": root / "multi.xyz", "src": root / "src_train", "src1": root / "src1",
        "src3": root / "src3",
    })
    return {k: str(v) for k, v in fx.items()}


def _tiny_config(**over) -> dict:
    cfg = {"model": dict(TINY_MODEL), "lr": 0.003, "epochs": 2, "batch_size": 1, "augment": True,
           "checkpoint_every_n_steps": 2, "log_every_n_steps": 1}
    cfg.update(over)
    return cfg


def _fx_files(root: Path) -> None:
    from ase.db import connect
    from ase.io import read
    from ase.io import write as ase_write

    h2, water = read(root / "h2.xyz"), read(root / "water.xyz")
    with connect(root / "mols.db", append=False) as db:
        db.write(h2, name="h2")
        db.write(water, name="water")
    ase_write(root / "mols.traj", [h2, h2.copy()])
    ase_write(root / "multi.xyz", [h2, water])
    for folder, names in (("src_train", ("h2", "water")), ("src_val", ("h2o_bent",)),
                          ("src3", ("h2", "water", "hf")), ("src1", ("h2",))):
        for n in names:
            write(root / folder / f"{n}.xyz", MOLECULES[n])


def _fx_sad(root: Path) -> None:
    _must(rhosr(["sad", "h2.xyz", "-o", "h2_sad.cube"], root), "sad")
    _must(rhosr(["sad", "h2.xyz", "-o", "h2_sad.npy"], root), "sad npy")
    _must(rhosr(["sad", "h2.xyz", "--mesh", "fine", "-o", "h2_sad_fine.cube"], root), "sad fine")
    _must(rhosr(["sad", "h2.xyz", "--mesh", "fine", "-o", "h2_sad_fine.npy"], root), "sad fine npy")


def _fx_dft(root: Path) -> None:
    _must(rhosr(["dft", "h2.xyz", "--preset", "tiny", "-q", "-o", "h2_dft.cube"], root, 300), "dft")
    np.save(root / "h2_dft.npy", read_cube(root / "h2_dft.cube")[0])


def _fx_pred(root: Path) -> None:
    (root / "ref").mkdir(exist_ok=True)
    shutil.copy(root / "h2_dft.cube", root / "ref" / "h2.cube")
    _must(rhosr(["predict", "h2.xyz", "-o", "pred", "--quiet"], root, 300), "predict")


def _fx_store(root: Path) -> None:
    if not (root / "src_train").exists():
        _fx_files(root)
    for folder, split in (("src_train", "train"), ("src_val", "validation")):
        _must(rhosr(["label", folder, "--store", "store", "--preset", "tiny", "--split", split,
                     "--workers", "0", "--margin", "3"], root, 600), f"label {split}")


def _fx_run(root: Path) -> None:
    shutil.rmtree(root / "run", ignore_errors=True)
    write(root / "run.yaml", json.dumps(_tiny_config()))
    _must(rhosr(["train", "--store", "store", "--config", "run.yaml", "--out", "run", "--no-progress"],
                root, 600), "train")


FIXTURES = {"files": _fx_files, "sad": _fx_sad, "dft": _fx_dft, "pred": _fx_pred, "store": _fx_store,
            "run": _fx_run}


# ---- reading results (independent of rhosr) -------------------------------------------------

def read_cube(path) -> tuple[np.ndarray, float, int]:
    """(density (x, y, z), voxel volume in Bohr^3, number of atoms) of a cube file."""
    lines = Path(path).read_text().splitlines()
    natoms = abs(int(lines[2].split()[0]))
    axes = [lines[3 + i].split() for i in range(3)]
    shape = [int(a[0]) for a in axes]
    vectors = np.array([[float(v) for v in a[1:4]] for a in axes])
    data = np.array(" ".join(lines[6 + natoms:]).split(), dtype=float)
    if data.size != np.prod(shape):
        raise ValueError(f"{path}: {data.size} values for a {shape} mesh")
    return data.reshape(shape), abs(np.linalg.det(vectors)), natoms


def integral(path) -> float:
    rho, dv, _ = read_cube(path)
    return float(rho.sum() * dv)


def mode(path) -> int:
    return Path(path).stat().st_mode & 0o777


def check_cube(name: str, electrons: float, tol: float = 0.02, modes: bool = False) -> Callable:
    """Check: the cube ``name`` (relative to the attempt folder) integrates to N_e (and, with
    ``modes``, has mode 0644 under umask 022: the point-4 attempts ``*_mode``)."""
    def check(res: Result, ctx: Ctx):
        path = ctx.w / name
        if not path.exists():
            return f"{name} not written"
        try:
            n = integral(path)
        except Exception as exc:
            return f"{name} unreadable: {exc}"
        if not np.isfinite(n) or abs(n - electrons) > tol * electrons:
            return f"{name} integrates to {n:.4f}, not {electrons}"
        if modes and mode(path) != 0o644:
            return f"{name} has mode {oct(mode(path))}, not 0o644 under umask 022"
        return None
    return check


def check_files(*names: str, modes: bool = False) -> Callable:
    def check(res: Result, ctx: Ctx):
        for name in names:
            path = ctx.w / name
            if not path.exists():
                return f"{name} not written"
            if modes and path.is_file() and mode(path) != 0o644:
                return f"{name} has mode {oct(mode(path))}, not 0o644 under umask 022"
        return None
    return check


def check_says(*words: str, stream: str = "text") -> Callable:
    """Check: the output names every word (e.g. the damaged entry's id)."""
    def check(res: Result, ctx: Ctx):
        text = getattr(res, stream)
        missing = [w for w in words if w not in text]
        return f"output does not name {missing}" if missing else None
    return check


def check_no_marker(res: Result, ctx: Ctx):
    return "a file executed code (marker written)" if (ctx.w / "PWNED").exists() else None


def when_ok(check: Callable) -> Callable:
    def wrapped(res, ctx):
        return check(res, ctx) if res.rc == 0 else None
    return wrapped


def both(*checks: Callable) -> Callable:
    def check(res, ctx):
        for c in checks:
            p = c(res, ctx)
            if p:
                return p
        return None
    return check


# ---- damaged files ---------------------------------------------------------------------------

class _Bomb:
    """Unpickling this runs ``touch PWNED`` in the current folder."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _cube_parts(src) -> tuple[list[str], list[str]]:
    lines = Path(src).read_text().splitlines()
    natoms = abs(int(lines[2].split()[0]))
    return lines[:6 + natoms], " ".join(lines[6 + natoms:]).split()


def cube_variant(kind: str, src_key: str = "dftcube") -> Callable:
    """Setup: ``{w}/bad.cube``, a damaged copy of a shared cube."""
    def setup(ctx: Ctx):
        head, data = _cube_parts(ctx[src_key])
        if kind == "nan":
            data[len(data) // 2] = "nan"
        elif kind == "inf":
            data[len(data) // 2] = "inf"
        elif kind == "truncated":
            data = data[: len(data) // 2]
        elif kind == "negative":
            data = [f"{-float(v):.6e}" for v in data]
        elif kind == "double":
            data = [f"{2 * float(v):.6e}" for v in data]
        elif kind == "header_only":
            head, data = head[:4], []
        elif kind == "huge_mesh":
            parts = head[3].split()
            head[3] = " ".join(["100000", *parts[1:]])
        elif kind == "no_atoms":
            parts = head[2].split()
            head = head[:2] + [" ".join(["0", *parts[1:]])] + head[3:6]
        lines = head + [" ".join(data[i:i + 6]) for i in range(0, len(data), 6)]
        write(ctx.w / "bad.cube", "\n".join(lines) + "\n")
        return {"bad": str(ctx.w / "bad.cube")}
    setup.needs = (FIXTURE_KEYS[src_key],)
    return setup


def npy_variant(kind: str) -> Callable:
    """Setup: ``{w}/bad.npy``."""
    def setup(ctx: Ctx):
        path = ctx.w / "bad.npy"
        if kind == "object":
            np.save(path, np.array([_Bomb()], dtype=object), allow_pickle=True)
        elif kind == "2d":
            np.save(path, np.ones((10, 10)))
        elif kind == "flat_wrong":
            np.save(path, np.ones(1234))
        elif kind == "nan":
            a = np.load(ctx["dft_npy"])
            a[3, 3, 3] = np.nan
            np.save(path, a)
        elif kind == "complex":
            np.save(path, np.load(ctx["dft_npy"]).astype(complex))
        elif kind == "truncated":
            np.save(path, np.load(ctx["dft_npy"]))
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif kind == "text":
            write(path, "not numpy\n")
        return {"bad": str(path)}
    setup.needs = ("dft",)
    return setup


def model_variant(kind: str) -> Callable:
    """Setup: ``{w}/model``, a damaged copy of the tiny trained model folder."""
    def setup(ctx: Ctx):
        folder = ctx.w / "model"
        shutil.copytree(ctx["model"], folder)
        weights, meta = folder / "model.safetensors", folder / "model.json"
        if kind == "truncated_weights":
            data = weights.read_bytes()
            weights.write_bytes(data[: len(data) // 2])
        elif kind == "no_weights":
            weights.unlink()
        elif kind == "garbage_weights":
            weights.write_bytes(b"\xff" * 64)
        elif kind == "truncated_json":
            text = meta.read_text()
            meta.write_text(text[: len(text) // 2])
        elif kind == "no_json":
            meta.unlink()
        elif kind == "json_list":
            meta.write_text("[1, 2, 3]\n")
        elif kind in ("misshaped", "absurd_feat", "negative_feat", "no_model_key"):
            m = json.loads(meta.read_text())
            if kind == "no_model_key":
                m.pop("model", None)
            else:
                m["model"]["num_feat"] = {"misshaped": 8, "absurd_feat": 10 ** 7, "negative_feat": -4}[kind]
            meta.write_text(json.dumps(m))
        elif kind == "pickle_ckpt":
            folder = ctx.w / "bomb.ckpt"
            write(folder, pickle.dumps({"state_dict": _Bomb()}))
        return {"m": str(folder)}
    setup.needs = ("run",)
    return setup


MODEL_DAMAGE = ("truncated_weights", "no_weights", "garbage_weights", "truncated_json", "no_json",
                "json_list", "misshaped", "absurd_feat", "negative_feat", "no_model_key")

# ---- damaged stores --------------------------------------------------------------------------

def store_copy(ctx: Ctx) -> Path:
    dst = ctx.w / "store"
    if not dst.exists():
        shutil.copytree(ctx["store"], dst)
    return dst


def _chunks(entry: Path, array: str) -> list[Path]:
    return sorted(p for p in (entry / array / "c").rglob("*") if p.is_file())


def damage_store(kind: str) -> Callable:
    """Setup: ``{w}/store``, a copy of the tiny store whose entry ``h2`` (or root) is damaged."""
    def setup(ctx: Ctx):
        store = store_copy(ctx)
        entry = store / "entries" / "h2"
        if kind == "missing_chunk":
            _chunks(entry, "label")[0].unlink()
        elif kind == "truncated_chunk":
            c = _chunks(entry, "label")[0]
            c.write_bytes(c.read_bytes()[:7])
        elif kind == "garbage_sad_chunk":
            _chunks(entry, "sad")[0].write_bytes(os.urandom(200))
        elif kind == "missing_dm":
            shutil.rmtree(entry / "dm")
        elif kind == "half_entry_json":
            j = entry / "zarr.json"
            j.write_text(j.read_text()[: len(j.read_text()) // 2])
        elif kind == "missing_entry_json":
            (entry / "zarr.json").unlink()
        elif kind == "half_label_json":
            j = entry / "label" / "zarr.json"
            j.write_text(j.read_text()[: len(j.read_text()) // 2])
        elif kind == "stray_file":
            write(store / "entries" / "notes.txt", "a user's stray file\n")
        elif kind == "stray_dir":
            (store / "entries" / "h2 copy").mkdir()
        return {"store": str(store)}
    setup.needs = ("store",)
    return setup


STORE_DAMAGE = ("missing_chunk", "truncated_chunk", "garbage_sad_chunk", "missing_dm", "half_entry_json",
                "missing_entry_json", "half_label_json", "stray_file", "stray_dir")
DAMAGED_ID = {"stray_file": "notes.txt", "stray_dir": "h2 copy"}


def combine(*setups: Callable) -> Callable:
    def setup(ctx: Ctx):
        for s in setups:
            ctx.extra.update(s(ctx) or {})
        return ctx.extra
    setup.needs = tuple(n for s in setups for n in getattr(s, "needs", ()))
    return setup


def file_setup(name: str, text: str | bytes) -> Callable:
    def setup(ctx: Ctx):
        return {"f": str(write(ctx.w / name, text))}
    return setup


def config_setup(**over) -> Callable:
    """Setup: ``{w}/cfg.yaml``, the tiny config with ``over`` (YAML written as JSON, or raw text)."""
    def setup(ctx: Ctx):
        raw = over.get("_raw")
        text = raw if raw is not None else json.dumps(_tiny_config(**over))
        return {"cfg": str(write(ctx.w / "cfg.yaml", text))}
    return setup


def run_copy(ctx: Ctx) -> dict:
    shutil.copytree(ctx["run"], ctx.w / "run")
    return {"r": str(ctx.w / "run")}


run_copy.needs = ("run",)

# ---------------------------------------------------------------------------------------------
# the attempts


BAD_NUMBERS = {"neg": "-1", "zero": "0", "nan": "nan", "inf": "inf", "huge": "1e300", "word": "abc"}


def _number_attempts(cmd: str, base: str, flag: str, values: dict, point: str = "5", **kw) -> None:
    for label, value in values.items():
        A(f"{cmd}_{flag.strip('-').replace('-', '_')}_{label}", point, f"{base} {flag} {value}", **kw)


def define() -> None:
    # ---------------- sad ----------------
    A("sad_ok_cube", "-", "sad {h2} -o {w}/h2.cube", "ok", check=check_cube("h2.cube", 2))
    A("sad_ok_water_atrocious", "-", "sad {water} --atrocious -o {w}/w.cube", "ok",
      check=check_cube("w.cube", 8))
    A("sad_ok_fine_npy", "-", "sad {water} --mesh fine -o {w}/w.npy", "ok", check=check_files("w.npy"))
    A("sad_ok_upscale4", "-", "sad {h2} --upscale 4 -o {w}/h.cube", "ok", check=check_cube("h.cube", 2))
    A("sad_ok_h2plus", "5", "sad {h2} --charge 1 --spin 1 -o {w}/h.cube", "ok", check=check_cube("h.cube", 1))
    base = "sad {h2} -o {w}/x.cube"
    _number_attempts("sad", base, "--charge", {"nan": "nan", "huge": "1000000",
                                                "all_electrons": "2", "odd_spin0": "1",
                                                "exceeds_basis": "-40"})
    _number_attempts("sad", base, "--spin", {"neg": "-1", "too_many": "4", "nan": "nan"})
    _number_attempts("sad", base, "--margin", BAD_NUMBERS)
    A("sad_margin_memory", "5", "sad {water} --margin 2000 -o {w}/x.cube")
    for bad in BAD_XYZ:
        A(f"sad_xyz_{bad}", "6", f"sad {{xyz_{bad}}} -o {{w}}/x.cube")
    A("sad_missing_file", "6", "sad {w}/nothere.xyz -o {w}/x.cube")
    A("sad_folder_as_mol", "6", "sad {w} -o {w}/x.cube")
    A("sad_format_bogus", "6", "sad {h2} --format nosuchformat -o {w}/x.cube")
    A("sad_binary_xyz", "6", "sad {f} -o {w}/x.cube", setup=file_setup("bin.xyz", os.urandom(300)))
    A("sad_traj_truncated", "6", "sad {f} -o {w}/x.cube",
      setup=lambda c: {"f": str(write(c.w / "t.traj", Path(c["traj"]).read_bytes()[:100]))}, needs=("files",))
    A("sad_out_proc", "4", "sad {h2} -o /proc/x.cube")
    A("sad_out_folder", "4", "sad {h2} -o {w}")
    A("sad_out_txt", "4", "sad {h2} -o {w}/x.txt")
    A("sad_out_empty", "4", "sad {h2} -o ''")
    A("sad_out_missing_dir", "4", "sad {h2} -o {w}/a/b/x.cube", "either",
      check=when_ok(check_cube("a/b/x.cube", 2)))
    A("sad_out_under_file", "4", "sad {h2} -o {f}/x.cube", setup=file_setup("afile", "x"))

    # files follow the umask (point 4)
    A("sad_mode", "4", "sad {h2} -o {w}/h2.cube", "ok", check=check_cube("h2.cube", 2, modes=True))
    A("sad_mode_new_folder", "4", "sad {h2} -o {w}/new/h2.npy", "ok", check=check_files("new/h2.npy",
                                                                                        modes=True))

    # ---------------- dft ----------------
    A("dft_ok_h2", "-", "dft {h2} --preset tiny -q -o {w}/h2.cube --json {w}/h2.json --save-dm {w}/dm.npy",
      "ok",
      check=both(check_cube("h2.cube", 2), check_files("h2.json", "dm.npy"), _check_json_energy("h2.json")),
      timeout=120)
    A("dft_mode", "4", "dft {h2} --preset tiny -q -o {w}/h2.npy --json {w}/h2.json --save-dm {w}/dm.npy",
      "ok",
      check=check_files("h2.npy", "h2.json", "dm.npy", modes=True), timeout=120)
    base = "dft {h2} --preset tiny -o {w}/x.cube"
    A("dft_json_folder", "4", base + " --json {w}")
    A("dft_json_proc", "4", base + " --json /proc/x.json")
    A("dft_out_proc", "4", "dft {h2} --preset tiny -o /proc/x.cube")
    A("dft_out_txt", "4", "dft {h2} --preset tiny -o {w}/x.txt")
    A("dft_savedm_proc", "4", base + " --save-dm /proc/dm.npy")
    A("dft_savedm_folder", "4", base + " --save-dm {w}")
    _number_attempts("dft", base, "--smearing", {"neg": "-0.01", "nan": "nan", "inf": "inf", "huge": "100"})
    _number_attempts("dft", base, "--charge", {"nan": "nan", "all_electrons": "2", "odd_spin0": "1",
                                                "exceeds_basis": "-40"})
    _number_attempts("dft", base, "--spin", {"neg": "-2", "too_many": "5"})
    _number_attempts("dft", base, "--margin", {"neg": "-3", "zero": "0", "nan": "nan", "memory": "3000"})
    A("dft_preset_bogus", "5", "dft {h2} --preset huge -o {w}/x.cube")
    A("dft_upscale_8", "5", "dft {h2} --upscale 8 -o {w}/x.cube")
    for bad in ("garbage", "same_place", "huge_box"):
        A(f"dft_xyz_{bad}", "6", f"dft {{xyz_{bad}}} --preset tiny -o {{w}}/x.cube")

    # ---------------- error ----------------
    A("error_ok_same", "-", "error {dftcube} {dftcube}", "ok", check=_check_err_value(0.0, 1e-6))
    A("error_ok_sad_vs_dft", "-", "error {sadfine} {dftcube}", "ok", check=_check_err_value(None))
    A("error_ok_npy_molecule", "-", "error {sadfine_npy} {dft_npy} --molecule {h2}", "ok",
      check=_check_err_value(None))
    A("error_ok_npy_vs_cube", "-", "error {sadfine_npy} {dftcube}", "ok", check=_check_err_value(None))
    for kind in ("nan", "inf", "truncated", "header_only", "huge_mesh", "negative"):
        A(f"error_cube_a_{kind}", "6", "error {bad} {dftcube}", setup=cube_variant(kind))
        if kind in ("nan", "truncated"):
            A(f"error_cube_b_{kind}", "6", "error {dftcube} {bad}", setup=cube_variant(kind))
    A("error_mesh_mismatch", "6", "error {sadcube} {dftcube}")
    for kind in ("object", "2d", "flat_wrong", "nan", "complex", "truncated", "text"):
        A(f"error_npy_{kind}", "6", "error {bad} {dftcube}", setup=npy_variant(kind), check=check_no_marker)
    A("error_npy_wrong_molecule", "6", "error {sadfine_npy} {dft_npy} --molecule {water}")
    _number_attempts("error", "error {sadfine_npy} {dftcube}", "--electrons",
                     {"zero": "0", "neg": "-2", "nan": "nan", "inf": "inf"})
    _number_attempts("error", "error {sadfine_npy} {dft_npy} --molecule {h2}", "--charge",
                     {"nan": "nan", "all_electrons": "2"})
    A("error_margin_nan", "5", "error {sadfine_npy} {dft_npy} --molecule {h2} --margin nan")
    A("error_missing_file", "6", "error {w}/nope.cube {dftcube}")
    A("error_folder", "6", "error {w} {dftcube}")
    A("error_txt_file", "6", "error {f} {dftcube}", setup=file_setup("a.txt", "1 2 3\n"))
    A("error_xyz_as_density", "6", "error {h2} {dftcube}")

    # ---------------- label ----------------
    lbl = "label {src1} --store {w}/new --preset tiny --workers 0"
    _number_attempts("label", lbl, "--limit", {"neg": "-1"})
    _number_attempts("label", lbl, "--workers", {"neg": "-1"})
    _number_attempts("label", lbl, "--threads-per-worker", {"zero": "0", "neg": "-2"})
    _number_attempts("label", lbl, "--charge", {"nan": "nan", "inf": "inf", "exceeds_basis": "-40"})
    _number_attempts("label", lbl, "--spin", {"neg": "-1", "nan": "nan"})
    _number_attempts("label", lbl, "--margin", {"neg": "-1", "zero": "0", "nan": "nan", "memory": "3000"})
    A("label_scheduler_bogus", "5", lbl + " --scheduler tcp://127.0.0.1:9", timeout=90)
    A("label_scheduler_garbage", "5", lbl + " --scheduler notanaddress", timeout=90)
    A("label_limit_zero", "5", lbl + " --limit 0", "either", check=_check_no_entries("new"))
    A("label_source_missing", "6", "label {w}/nothere --store {w}/new --preset tiny --workers 0")
    A("label_source_empty_folder", "6", "label {w}/empty --store {w}/new --preset tiny --workers 0",
      setup=lambda c: (c.w / "empty").mkdir() or {})
    A("label_source_garbage_db", "6", "label {f} --store {w}/new --preset tiny --workers 0",
      setup=file_setup("x.db", os.urandom(500)))
    A("label_source_empty_db", "6", "label {f} --store {w}/new --preset tiny --workers 0",
      setup=file_setup("e.db", b""))
    A("label_source_truncated_traj", "6", "label {f} --store {w}/new --preset tiny --workers 0",
      setup=lambda c: {"f": str(write(c.w / "t.traj", Path(c["traj"]).read_bytes()[:150]))}, needs=("files",))
    A("label_source_garbage_xyz_folder", "6", "label {w}/src --store {w}/new --preset tiny --workers 0",
      "either", setup=lambda c: {"x": str(write(c.w / "src" / "bad.xyz", BAD_XYZ["garbage"]))},
      check=check_says("bad"), ok_codes=(0, 1))  # label exits 1 when a molecule failed (recorded)
    A("label_qm9_bad_range", "6", "label qm9:abc --store {w}/new --preset tiny --workers 0")
    A("label_qm9_negative", "6", "label qm9:-5 --store {w}/new --preset tiny --workers 0")
    A("label_qm9_out_of_range", "6", "label qm9:999999999 --store {w}/new --preset tiny --workers 0")
    A("label_ok_db", "-", "label {db} --store {w}/new --preset tiny --workers 0", "ok",
      check=_check_entries("new", 2), timeout=120)
    A("label_ok_traj", "-", "label {traj} --store {w}/new --preset tiny --workers 0 --limit 1", "ok",
      check=_check_entries("new", 1), timeout=120)
    A("label_store_is_file", "4", "label {src} --store {f} --preset tiny --workers 0", setup=file_setup("s",
                                                                                                        "x"))
    A("label_store_proc", "4", "label {src} --store /proc/x --preset tiny --workers 0")
    A("label_store_foreign_folder", "4", "label {src} --store {w}/foreign --preset tiny --workers 0",
      setup=lambda c: {"x": str(write(c.w / "foreign" / "thesis.tex", "my thesis\n"))},
      check=_check_foreign_intact)
    A("label_other_preset_into_store", "5", "label {src} --store {store} --preset fast --workers 0",
      setup=combine(lambda c: {"store": str(store_copy(c))}), needs=("store",))
    A("label_other_margin_into_store", "5",
      "label {src} --store {store} --preset tiny --workers 0 --margin 5",
      setup=lambda c: {"store": str(store_copy(c))}, needs=("store",))
    A("label_other_upscale_into_store", "5",
      "label {src} --store {store} --preset tiny --workers 0 --upscale 4",
      setup=lambda c: {"store": str(store_copy(c))}, needs=("store",))
    A("label_rerun_skips", "kill", "label {src} --store {store} --preset tiny --workers 0 --margin 3", "ok",
      setup=_stamp_store(), check=_check_not_recomputed(("h2", "water")), needs=("store",))

    # ---------------- store ----------------
    A("store_info_ok", "-", "store info {store}", "ok", check=check_says("train"))
    A("store_info_missing", "6", "store info {w}/none")
    A("store_info_file", "6", "store info {h2}")
    A("store_info_not_store", "6", "store info {w}")
    A("store_info_root_json_garbage", "6", "store info {store}",
      setup=lambda c: {"store": str(_garble(store_copy(c) / "zarr.json"))}, needs=("store",))
    A("store_info_root_json_missing", "6", "store info {store}",
      setup=lambda c: {"store": str(_remove(store_copy(c) / "zarr.json"))}, needs=("store",))
    A("store_export_ok_label", "-", "store export {store} h2 -o {w}/h2.cube", "ok",
      check=check_cube("h2.cube", 2))
    A("store_export_ok_sad_npy", "-", "store export {store} water --what sad -o {w}/w.npy", "ok",
      check=check_files("w.npy"))
    A("store_export_atrocious_absent", "6", "store export {store} h2 --what sad_atrocious -o {w}/x.cube")
    A("store_export_what_bogus", "6", "store export {store} h2 --what dm -o {w}/x.cube")
    A("store_export_missing_id", "6", "store export {store} nosuch -o {w}/x.cube")
    A("store_export_traversal", "6", "store export {store} ../../etc -o {w}/x.cube")
    A("store_export_path_id", "6", "store export {store} entries/h2 -o {w}/x.cube")
    A("store_export_dotdot_entry", "6", "store export {store} h2/.. -o {w}/x.cube")
    A("store_export_abs_path_id", "6", "store export {store} {store}/entries/h2 -o {w}/x.cube")
    A("store_export_empty_id", "6", "store export {store} '' -o {w}/x.cube")
    A("store_export_mode", "4", "store export {store} h2 -o {w}/h2.npy", "ok",
      check=check_files("h2.npy", modes=True))
    A("store_export_out_proc", "4", "store export {store} h2 -o /proc/x.cube")
    A("store_export_out_folder", "4", "store export {store} h2 -o {w}")
    A("store_export_out_txt", "4", "store export {store} h2 -o {w}/x.txt")
    A("store_verify_ok", "1", "store verify {store}", "ok", needs=("store",))
    A("store_action_bogus", "6", "store explode {store}")

    # ---------------- damaged stores (point 1) ----------------
    for kind in STORE_DAMAGE:
        dmg = damage_store(kind)
        bad_id = DAMAGED_ID.get(kind, "h2")
        stray = kind.startswith("stray")
        A(f"store_info_{kind}", "1", "store info {store}", "ok", setup=dmg, check=check_says(bad_id))
        A(f"store_verify_{kind}", "1", "store verify {store}", "ok", setup=dmg, check=check_says(bad_id),
          ok_codes=(0, 1))
        if kind in ("missing_chunk", "half_entry_json", "stray_file"):
            A(f"store_verify_repair_{kind}", "1", "store verify {store} --repair", "ok", setup=dmg,
              check=_check_repaired(bad_id), ok_codes=(0, 1))
        A(f"store_export_{kind}", "1", "store export {store} h2 -o {w}/x.cube",
          "ok" if stray else "error", setup=dmg,
          check=check_cube("x.cube", 2) if stray else _check_named("h2"))
        if kind in ("missing_chunk", "truncated_chunk", "half_entry_json", "missing_entry_json",
                    "stray_file"):
          A(f"evaluate_{kind}", "1", "evaluate --store {store} --split train --model {model} -o {w}/rep",
            "either",
          setup=combine(dmg), needs=("run",), check=_check_skipped(bad_id), timeout=120)
        if kind in ("missing_chunk", "truncated_chunk", "half_entry_json", "missing_entry_json",
                    "stray_file"):
          A(f"train_{kind}", "1",
            "train --store {store} --config {tinycfg} --out {w}/r --max-steps 1 --no-progress",
          "either", setup=dmg, check=_check_skipped(bad_id), timeout=120)
        if kind in ("missing_chunk", "truncated_chunk", "half_entry_json", "missing_entry_json",
                    "garbage_sad_chunk"):
            A(f"label_relabels_{kind}", "1",
              "label {src} --store {store} --preset tiny --workers 0 --margin 3", "ok",
              setup=combine(dmg, _stamp_store()), check=_check_relabelled("h2", "water"), needs=("files",),
              timeout=120)

    # ---------------- train ----------------
    tr = "train --store {store} --config {tinycfg} --out {w}/r --no-progress"
    A("train_ok_two_steps", "-", tr + " --max-steps 2", "ok",
      check=check_files("r/best/model.json", "r/best/model.safetensors", "r/config.yaml"), needs=("store",),
      timeout=150)
    for label, value in {"zero": "0", "neg": "-5", "nan": "nan", "word": "x"}.items():
        A(f"train_max_steps_{label}", "5", tr + f" --max-steps {value}", needs=("store",))
    for label, value in {"zero": "0", "neg": "-1", "word": "many"}.items():
        A(f"train_devices_{label}", "5", tr + f" --devices {value}", needs=("store",))
    A("train_num_nodes_zero", "5", tr + " --num-nodes 0", needs=("store",))
    A("train_accelerator_gpu_absent", "5", tr + " --accelerator gpu", needs=("store",))
    A("train_strategy_bogus", "5", tr + " --strategy nonsense", needs=("store",))
    trc = "train --store {store} --config {cfg} --out {w}/r --no-progress --max-steps 2"
    for label, over in {
        "lr_nan": {"lr": float("nan")}, "lr_neg": {"lr": -1}, 
        "lr_word": {"lr": "fast"}, "epochs_zero": {"epochs": 0}, 
        "batch_zero": {"batch_size": 0}, "batch_huge": {"batch_size": 10 ** 9},
        "num_feat_zero": {"model": {**TINY_MODEL, "num_feat": 0}},
        "num_feat_huge": {"model": {**TINY_MODEL, "num_feat": 10 ** 6}},
        "num_block_neg": {"model": {**TINY_MODEL, "num_block": -1}},
        "num_up_five": {"model": {**TINY_MODEL, "num_up": 5}},
        
        "ckpt_every_zero": {"checkpoint_every_n_steps": 0}, 
        "seed_word": {"seed": "abc"}, "unknown_key": {"lerning_rate": 1},
    }.items():
        A(f"train_config_{label}", "5", trc, setup=config_setup(**over), needs=("store",))
    for label, raw in {
        "python_tag": "!!python/object/apply:os.system ['touch PWNED']\n",
        "garbage": "{{{ not: yaml ::\n", "list": "- 1\n- 2\n", "binary": "\x00\x01\x02",
    }.items():
        A(f"train_config_{label}", "6", trc, setup=config_setup(_raw=raw), check=check_no_marker,
          needs=("store",))
    A("train_config_missing", "6", tr.replace("{tinycfg}", "{w}/nope.yaml"), needs=("store",))
    A("train_config_folder", "6", tr.replace("{tinycfg}", "{w}"), needs=("store",))
    for kind in ("truncated_weights", "no_json", "misshaped", "truncated_json", "absurd_feat"):
        A(f"train_init_{kind}", "6", tr + " --init {m} --max-steps 1", setup=model_variant(kind),
          needs=("store",))
    A("train_init_pickle_ckpt", "6", tr + " --init {m} --max-steps 1", setup=model_variant("pickle_ckpt"),
      check=check_no_marker, needs=("store",))
    A("train_init_missing", "6", tr + " --init {w}/nomodel --max-steps 1", needs=("store",))
    A("train_init_bogus_name", "6", tr + " --init qm9-huge --max-steps 1", needs=("store",))
    A("train_store_missing", "6", "train --store {w}/nostore --config {tinycfg} --out {w}/r")
    A("train_store_is_file", "6", "train --store {h2} --config {tinycfg} --out {w}/r")
    A("train_store_foreign", "6", "train --store {w} --config {tinycfg} --out {w}/r")
    A("train_mode", "4", tr + " --max-steps 2", "ok", needs=("store",), timeout=150,
      check=check_files("r/best/model.json", "r/best/model.safetensors", "r/config.yaml",
                        "r/checkpoints/last.ckpt", modes=True))
    A("train_out_proc", "4", "train --store {store} --config {tinycfg} --out /proc/x --no-progress",
      needs=("store",))
    A("train_out_is_file", "4", "train --store {store} --config {tinycfg} --out {f} --no-progress",
      setup=file_setup("afile", "x"), needs=("store",))
    A("train_out_existing_run", "3",
      "train --store {store} --config {runcfg} --out {r} --no-progress --max-steps 2",
      setup=_stamped_run_copy, check=_check_run_untouched, needs=("run",))
    A("train_resume_nothing", "3", "train --store {store} --config {tinycfg} --out {w}/r --resume",
      needs=("store",))
    A("train_resume_other_lr", "3", "train --store {store} --config {cfg} --out {r} --resume --no-progress",
      setup=combine(run_copy, config_setup(lr=0.1, epochs=3)), check=check_says("lr", stream="err"))
    A("train_resume_other_model", "3",
      "train --store {store} --config {cfg} --out {r} --resume --no-progress",
      setup=combine(run_copy, config_setup(model={**TINY_MODEL, "num_feat": 6}, epochs=3)),
      check=check_says("num_feat", stream="err"))
    A("train_resume_other_seed", "3", "train --store {store} --config {cfg} --out {r} --resume --no-progress",
      setup=combine(run_copy, config_setup(seed=7, epochs=3)), check=check_says("seed", stream="err"))
    A("train_resume_same_config_more_epochs", "3",
      "train --store {store} --config {runcfg} --out {r} --resume --no-progress", "ok",
      setup=run_copy, check=check_says("trained to step 4"), timeout=150)
    S("train_resume_equals_uninterrupted", "3", "train", scenario_resume_equals, needs=("store",))
    S("train_seed_reaches_data", "3", "train", scenario_seed_reaches_data, needs=("store",))

    # ---------------- predict ----------------
    A("predict_ok_cube", "-", "predict {h2} -o {w}/h2.cube --quiet", "ok", check=check_cube("h2.cube", 2),
      timeout=120)
    A("predict_ok_two_npy", "-", "predict {h2} {water} -o {w}/out --format npy --quiet", "ok",
      check=check_files("out/h2.npy", "out/water.npy"), timeout=120)
    A("predict_ok_reference", "-", "predict {h2} -o {w}/h2.cube --reference {dftcube} --quiet", "ok",
      check=both(check_cube("h2.cube", 2), check_says("Err")), timeout=120)
    A("predict_ok_own_model", "-", "predict {h2} -o {w}/h2.cube --model {model} --quiet", "ok",
      check=check_cube("h2.cube", 2), timeout=120)
    A("predict_ok_tile", "-", "predict {h2} -o {w}/h2.cube --model {model} --tile 8 --quiet", "ok",
      check=check_cube("h2.cube", 2), timeout=120)
    A("predict_ok_rotations2", "-", "predict {h2} -o {w}/h2.cube --rotations 2 --quiet", "ok",
      check=check_cube("h2.cube", 2), timeout=120)
    A("predict_ok_png", "-", "predict {h2} -o {w}/h2.cube --png --quiet", "ok",
      check=check_files("h2.cube", "h2.png"), timeout=120)
    A("predict_mode", "4", "predict {h2} {water} -o {w}/out --png --quiet", "ok", timeout=120,
      check=check_files("out/h2.cube", "out/water.cube", "out/h2.png", modes=True))
    A("predict_out_txt_one_molecule", "4", "predict {h2} -o {w}/name.txt --quiet")
    A("predict_out_proc", "4", "predict {h2} -o /proc/x.cube --quiet")
    A("predict_out_proc_folder", "4", "predict {h2} {water} -o /proc/xdir --quiet")
    A("predict_out_cube_two_molecules", "4", "predict {h2} {water} -o {w}/x.cube --quiet")
    A("predict_out_file_two_molecules", "4", "predict {h2} {water} -o {f} --quiet", setup=file_setup("afile",
                                                                                                     "x"))
    A("predict_out_under_file", "4", "predict {h2} -o {f}/x.cube --quiet", setup=file_setup("afile", "x"))
    pr = "predict {h2} -o {w}/x.cube --quiet"
    _number_attempts("predict", pr, "--charge", {"nan": "nan", "inf": "inf", "all_electrons": "2",
                                                  "odd_spin0": "1", "exceeds_basis": "-40"})
    _number_attempts("predict", pr, "--spin", {"neg": "-1", "too_many": "4"})
    _number_attempts("predict", pr, "--tile", {"zero": "0", "neg": "-4", "nan": "nan"})
    _number_attempts("predict", pr, "--max-memory", {"zero": "0", "nan": "nan", "tiny": "1e-12"})
    _number_attempts("predict", pr, "--rotations", {"zero": "0", "too_many": "25"})
    A("predict_device_cuda_absent", "5", pr + " --device cuda")
    A("predict_huge_box_memory", "5", "predict {xyz_huge_box} -o {w}/x.cube --quiet", timeout=120)
    A("predict_huge_coord", "5", "predict {xyz_huge_coord} -o {w}/x.cube --quiet", timeout=120)
    for bad in ("empty", "garbage", "nan_coord", "unknown_element", "same_place", "zero_atoms"):
        A(f"predict_xyz_{bad}", "6", f"predict {{xyz_{bad}}} -o {{w}}/x.cube --quiet")
    for kind in ("truncated_weights", "no_weights", "truncated_json", "no_json", "misshaped", "absurd_feat",
                 "json_list"):
        A(f"predict_model_{kind}", "6", "predict {h2} -o {w}/x.cube --model {m} --quiet",
          setup=model_variant(kind))
    A("predict_model_missing", "6", "predict {h2} -o {w}/x.cube --model {w}/nomodel --quiet")
    A("predict_model_bogus_name", "6", "predict {h2} -o {w}/x.cube --model qm9-huge --quiet")
    A("predict_model_ckpt_pickle", "6", "predict {h2} -o {w}/x.cube --model {m} --quiet",
      setup=model_variant("pickle_ckpt"), check=check_no_marker)
    for kind in ("nan", "truncated"):
        A(f"predict_reference_{kind}", "6", "predict {h2} -o {w}/x.cube --reference {bad} --quiet",
          setup=cube_variant(kind))
    A("predict_reference_coarse", "6", "predict {h2} -o {w}/x.cube --reference {sadcube} --quiet")
    A("predict_reference_other_molecule", "6", "predict {water} -o {w}/x.cube --reference {dftcube} --quiet")
    A("predict_reference_npy_2d", "6", "predict {h2} -o {w}/x.cube --reference {bad} --quiet",
      setup=npy_variant("2d"))
    A("predict_reference_npy_pickle", "6", "predict {h2} -o {w}/x.cube --reference {bad} --quiet",
      setup=npy_variant("object"), check=check_no_marker)
    A("predict_reference_two_molecules", "6", "predict {h2} {water} -o {w}/out --reference {dftcube} --quiet")

    # ---------------- evaluate ----------------
    ev = "evaluate --store {store} --split train --model {model} -o {w}/rep"
    A("evaluate_ok_store", "-", ev, "ok", check=_check_report(2), timeout=120)
    A("evaluate_ok_cubes", "-", "evaluate --cubes {preddir} {refdir} -o {w}/rep", "ok",
      check=_check_report(1),
      timeout=120)
    _number_attempts("evaluate", ev, "--limit", {"zero": "0", "neg": "-1", "nan": "nan"}, needs=("run",))
    _number_attempts("evaluate", ev, "--rotations", {"zero": "0", "too_many": "25"}, needs=("run",))
    _number_attempts("evaluate", ev, "--tile", {"zero": "0", "neg": "-2"}, needs=("run",))
    A("evaluate_split_empty", "5", "evaluate --store {store} --split test --model {model} -o {w}/rep")
    A("evaluate_mode", "4", ev, "ok", timeout=120,
      check=check_files("rep/report.md", "rep/report.json", "rep/molecules.csv", modes=True))
    A("evaluate_out_proc", "4", "evaluate --store {store} --split train --model {model} -o /proc/rep")
    A("evaluate_out_is_file", "4", "evaluate --store {store} --split train --model {model} -o {f}",
      setup=file_setup("afile", "x"), needs=("run",))
    A("evaluate_device_cuda_absent", "5", ev + " --device cuda")
    A("evaluate_store_missing", "6", "evaluate --store {w}/none --model {model} -o {w}/rep")
    A("evaluate_store_foreign", "6", "evaluate --store {w} --model {model} -o {w}/rep")
    for kind in ("truncated_weights", "no_json", "misshaped"):
        A(f"evaluate_model_{kind}", "6", "evaluate --store {store} --split train --model {m} -o {w}/rep",
          setup=model_variant(kind), needs=("store",))
    A("evaluate_cubes_empty_dirs", "6", "evaluate --cubes {w}/p {w}/r -o {w}/rep",
      setup=lambda c: (c.w / "p").mkdir() or (c.w / "r").mkdir() or {})
    A("evaluate_cubes_missing_dirs", "6", "evaluate --cubes {w}/p {w}/r -o {w}/rep")
    for kind in ("nan", "truncated", "huge_mesh"):
        A(f"evaluate_cubes_ref_{kind}", "6", "evaluate --cubes {preddir} {w}/ref -o {w}/rep",
          setup=_ref_dir(kind), needs=("pred",))
        A(f"evaluate_cubes_pred_{kind}", "6", "evaluate --cubes {w}/pred {refdir} -o {w}/rep",
          setup=_pred_dir(kind), needs=("pred",))
    A("evaluate_cubes_pred_npy_pickle", "6", "evaluate --cubes {w}/pred {refdir} -o {w}/rep",
      setup=_pred_npy_pickle, check=check_no_marker, needs=("pred",))

    # ---------------- onestep ----------------
    A("onestep_ok_sad", "-", "onestep {h2} --sad --json {w}/o.json --quiet", "ok",
      check=both(check_files("o.json"), _check_json_finite("o.json")), timeout=120)
    A("onestep_ok_density", "-", "onestep {h2} --density {dftcube} --json {w}/o.json --quiet", "ok",
      check=both(check_files("o.json"), _check_json_finite("o.json")), timeout=120)
    A("onestep_ok_renormalize", "-", "onestep {h2} --density {bad} --renormalize --quiet", "ok",
      setup=cube_variant("double"), timeout=120)
    for kind in ("nan", "inf", "truncated", "header_only", "negative", "double", "huge_mesh"):
        A(f"onestep_density_{kind}", "6", "onestep {h2} --density {bad} --quiet", setup=cube_variant(kind))
    A("onestep_density_coarse", "6", "onestep {h2} --density {sadcube} --quiet")
    A("onestep_density_other_molecule", "6", "onestep {water} --density {dftcube} --quiet")
    for kind in ("object", "2d", "nan"):
        A(f"onestep_density_npy_{kind}", "6", "onestep {h2} --density {bad} --quiet", setup=npy_variant(kind),
          check=check_no_marker)
    for kind in ("truncated_weights", "no_json", "misshaped", "json_list", "absurd_feat"):
        A(f"onestep_model_{kind}", "6", "onestep {h2} --model {m} --quiet", setup=model_variant(kind))
    os_ = "onestep {h2} --sad --quiet"
    _number_attempts("onestep", os_, "--margin", {"neg": "-1", "zero": "0", "nan": "nan", "memory": "3000"})
    _number_attempts("onestep", os_, "--charge", {"nan": "nan", "all_electrons": "2", "exceeds_basis": "-40"})
    _number_attempts("onestep", os_, "--spin", {"neg": "-1", "too_many": "4"})
    A("onestep_preset_bogus", "5", os_ + " --preset nonsense")
    A("onestep_mode", "4", os_ + " --json {w}/o.json --molden {w}/o.molden", "ok", timeout=120,
      check=check_files("o.json", "o.molden", modes=True))
    A("onestep_json_folder", "4", os_ + " --json {w}")
    A("onestep_json_proc", "4", os_ + " --json /proc/x.json")
    A("onestep_molden_proc", "4", os_ + " --molden /proc/x.molden")

    # ---------------- scf ----------------
    A("scf_ok_minao", "-", "scf {h2} --guess minao --preset tiny --json {w}/s.json --quiet", "ok",
      check=both(check_files("s.json"), _check_json_finite("s.json")), timeout=120)
    sc = "scf {h2} --guess minao --preset tiny --quiet"
    _number_attempts("scf", sc, "--margin", {"neg": "-1", "nan": "nan", "memory": "3000"})
    _number_attempts("scf", sc, "--charge", {"nan": "nan", "all_electrons": "2"})
    _number_attempts("scf", sc, "--spin", {"neg": "-1", "too_many": "4"})
    A("scf_preset_bogus", "5", "scf {h2} --guess minao --preset nonsense --quiet")
    A("scf_guess_bogus", "5", "scf {h2} --guess hueckel --quiet")
    A("scf_mode", "4", sc + " --json {w}/s.json", "ok", timeout=120, check=check_files("s.json", modes=True))
    A("scf_json_folder", "4", sc + " --json {w}")
    A("scf_json_proc", "4", sc + " --json /proc/x.json")
    for kind in ("truncated_weights", "no_json", "misshaped"):
        A(f"scf_model_{kind}", "6", "scf {h2} --guess model --model {m} --preset tiny --quiet",
          setup=model_variant(kind))
    A("scf_xyz_same_place", "6", "scf {xyz_same_place} --guess minao --preset tiny --quiet")

    # ---------------- scenarios ----------------
    S("label_sigkill_rerun", "kill", "label", scenario_kill_label, needs=("files",))
    S("train_sigkill_resume", "kill", "train", scenario_kill_train, needs=("store",))
    S("predict_sigkill_no_partial_file", "kill", "predict", scenario_kill_predict, timeout=120)
    S("dft_sigkill_no_partial_file", "kill", "dft", scenario_kill_dft, timeout=120)
    S("label_concurrent_other_presets", "2", "label", scenario_concurrent_presets, needs=("files",))
    S("label_concurrent_same_preset", "2", "label", scenario_concurrent_same, needs=("files",))
    S("train_concurrent_same_out", "2", "train", scenario_concurrent_train, needs=("store",))


# ---- checks used above -----------------------------------------------------------------------

def _check_json_energy(name: str) -> Callable:
    def check(res, ctx):
        data = json.loads((ctx.w / name).read_text())
        e = data.get("energy_hartree")
        return None if isinstance(e, float) and -1.3 < e < -1.0 else f"{name}: energy {e} is not H2's"
    return check


def _check_json_finite(name: str) -> Callable:
    def check(res, ctx):
        text = (ctx.w / name).read_text()
        return f"{name} holds NaN/Infinity" if re.search(r"\bNaN\b|Infinity", text) else None
    return check


def _check_err_value(expected: float | None, tol: float = 1e-3) -> Callable:
    def check(res, ctx):
        nums = [float(x) for x in re.findall(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?|nan|inf", res.out)]
        if not nums:
            return "no number printed"
        v = nums[0]
        if not np.isfinite(v) or v < 0 or v > 200:
            return f"Err_rho {v} is not a percentage"
        if expected is not None and abs(v - expected) > tol:
            return f"Err_rho {v}, expected {expected}"
        return None
    return check


def _entries(store: Path) -> list[str]:
    e = store / "entries"
    return sorted(p.name for p in e.iterdir()) if e.exists() else []


def _check_entries(name: str, n: int) -> Callable:
    def check(res, ctx):
        got = _entries(ctx.w / name)
        return None if len(got) == n else f"{len(got)} entries {got}, expected {n}"
    return check


def _check_no_entries(name: str) -> Callable:
    def check(res, ctx):
        got = _entries(ctx.w / name)
        return f"--limit 0 labelled {got}" if got else None
    return check


def _check_foreign_intact(res, ctx):
    return None if (ctx.w / "foreign" / "thesis.tex").exists() else "the folder's own file is gone"


def _stamp_store() -> Callable:
    """Setup: remember every file's mtime in the store copy (for not-recomputed checks)."""
    def setup(ctx: Ctx):
        store = store_copy(ctx)
        files = [p for p in (store / "entries").rglob("*") if p.is_file()]
        ctx.extra["stamps"] = {str(p): p.stat().st_mtime_ns for p in files}
        return {"store": str(store)}
    setup.needs = ("store",)
    return setup


def _changed(ctx: Ctx, entry: str) -> bool:
    prefix = str(ctx.w / "store" / "entries" / entry) + "/"
    old = {k: v for k, v in ctx.extra["stamps"].items() if k.startswith(prefix)}
    if not old:
        return True
    return any(not Path(k).exists() or Path(k).stat().st_mtime_ns != v for k, v in old.items())


def _check_not_recomputed(ids) -> Callable:
    def check(res, ctx):
        redone = [i for i in ids if _changed(ctx, i)]
        return f"WORK_LOST: entries {redone} recomputed or gone" if redone else None
    return check


def _complete(store: Path, entry: str) -> bool:
    j = store / "entries" / entry / "zarr.json"
    try:
        meta = json.loads(j.read_text())
    except (OSError, ValueError):
        return False
    if not meta.get("attributes", {}).get("complete"):
        return False
    for array in ("sad", "label", "dm"):
        try:
            json.loads((store / "entries" / entry / array / "zarr.json").read_text())
        except (OSError, ValueError):
            return False
    return True


def _check_relabelled(bad: str, good: str) -> Callable:
    def check(res, ctx):
        store = ctx.w / "store"
        if _changed(ctx, good):
            return f"WORK_LOST: the undamaged entry {good} was recomputed"
        if not _changed(ctx, bad) or not _complete(store, bad):
            return f"damaged entry {bad} was not relabelled"
        r = rhosr(["store", "export", str(store), bad, "-o", str(ctx.w / "after.cube")], ctx.w)
        if r.rc != 0:
            return f"relabelled {bad} does not export: {first_error_line(r.err)}"
        n = integral(ctx.w / "after.cube")
        return None if abs(n - 2) < 0.05 else f"relabelled {bad} integrates to {n:.3f}"
    return check


def _check_repaired(bad: str) -> Callable:
    def check(res, ctx):
        store = ctx.w / "store"
        if not (store / "entries" / "water").exists():
            return "WORK_LOST: repair removed the undamaged entry water"
        r = rhosr(["store", "verify", str(store)], ctx.w)
        if r.rc != 0:
            why = first_error_line(r.err or r.out)
            return f"store still damaged after --repair (verify rc {r.rc}): {why}"
        return None
    return check


def _check_named(entry: str) -> Callable:
    def check(res, ctx):
        return None if entry in res.err else f"the error does not name {entry}"
    return check


def _check_skipped(entry: str) -> Callable:
    """Either refused naming the entry, or succeeded and said it skipped it."""
    def check(res, ctx):
        if entry not in res.text:
            return f"{'used' if res.rc == 0 else 'refused'} the damaged store without naming {entry!r}"
        return None
    return check


def _check_report(n: int) -> Callable:
    def check(res, ctx):
        path = ctx.w / "rep" / "report.json"
        if not path.exists():
            return "report.json not written"
        text = path.read_text()
        if re.search(r"\bNaN\b|Infinity", text):
            return "report.json holds NaN"
        return None
    return check


def _garble(path: Path) -> Path:
    path.write_text('{"zarr_format": 3, "node_type": "gro')
    return path.parent


def _remove(path: Path) -> Path:
    path.unlink()
    return path.parent


def _stamped_run_copy(ctx: Ctx) -> dict:
    out = run_copy(ctx)
    ctx.extra["ckpt"] = (ctx.w / "run" / "checkpoints" / "last.ckpt").read_bytes()
    return out


_stamped_run_copy.needs = ("run",)


def _check_run_untouched(res, ctx):
    last = ctx.w / "run" / "checkpoints" / "last.ckpt"
    if not last.exists() or last.read_bytes() != ctx.extra["ckpt"]:
        return "WORK_LOST: the earlier run's checkpoint was replaced"
    return None


def _ref_dir(kind: str) -> Callable:
    inner = cube_variant(kind)

    def setup(ctx):
        inner(ctx)
        (ctx.w / "ref").mkdir()
        shutil.move(ctx.w / "bad.cube", ctx.w / "ref" / "h2.cube")
        return {}
    return setup


def _pred_dir(kind: str) -> Callable:
    inner = cube_variant(kind, "predcube")

    def setup(ctx):
        inner(ctx)
        (ctx.w / "pred").mkdir()
        shutil.move(ctx.w / "bad.cube", ctx.w / "pred" / "h2.cube")
        return {}
    return setup


def _pred_npy_pickle(ctx):
    (ctx.w / "pred").mkdir()
    np.save(ctx.w / "pred" / "h2.npy", np.array([_Bomb()], dtype=object), allow_pickle=True)
    return {}


# ---- scenarios -------------------------------------------------------------------------------

def _wait(pred: Callable[[], bool], procs, limit: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < limit:
        if pred():
            return True
        if all(p.poll() is not None for p in procs):
            return pred()
        time.sleep(0.2)
    return False


def _done_count(out: str) -> int:
    m = re.search(r"done (\d+), failed (\d+)", out)
    return int(m.group(1)) if m else -1


def scenario_kill_label(ctx: Ctx):
    argv = ["label", ctx["src3"], "--store", str(ctx.w / "st"), "--preset", "tiny", "--workers", "0"]
    proc = start(argv, ctx.w)
    entries = ctx.w / "st" / "entries"
    got = _wait(lambda: entries.exists() and len(list(entries.iterdir())) >= 1, [proc], 150)
    kill(proc)
    proc.communicate()
    if not got:
        return "timeout", "no entry within 150 s", argv, ""
    before = {p.name: (p / "zarr.json").stat().st_mtime_ns for p in entries.iterdir()}
    res = rhosr(argv, ctx.w, 200)
    cls = classify(res, "ok", None)
    if cls != "ok":
        return cls, "rerun failed", argv, first_error_line(res.err)
    after = _entries(ctx.w / "st")
    lost = [k for k, v in before.items() if not (entries / k / "zarr.json").exists()
            or (entries / k / "zarr.json").stat().st_mtime_ns != v]
    if lost:
        return "work_lost", f"entries {lost} done before the kill were redone", argv, ""
    if sorted(after) != ["h2", "hf", "water"]:
        return "silent_wrong", f"store holds {after} after the rerun", argv, ""
    if _done_count(res.text) != 3 - len(before):
        return "work_lost", f"rerun labelled {_done_count(res.text)}, {len(before)} were done", argv, ""
    return "ok", f"killed after {len(before)} entr(y/ies); rerun did the rest", argv, ""


def _ckpt_step(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except Exception:
        return -1


def scenario_kill_train(ctx: Ctx):
    cfg = write(ctx.w / "long.yaml", json.dumps(_tiny_config(epochs=500, checkpoint_every_n_steps=2)))
    out = ctx.w / "run"
    argv = ["train", "--store", ctx["store"], "--config", str(cfg), "--out", str(out), "--no-progress"]
    proc = start(argv, ctx.w)
    last = out / "checkpoints" / "last.ckpt"
    got = _wait(lambda: last.exists() and _ckpt_step(last) >= 4, [proc], 200)
    kill(proc)
    proc.communicate()
    if not got:
        return "timeout", "no checkpoint at step 4 within 200 s", argv, ""
    step = _ckpt_step(last)
    res = rhosr(argv + ["--resume", "--max-steps", str(step + 2)], ctx.w, 200)
    cls = classify(res, "ok", None)
    if cls != "ok":
        return cls, "resume failed", argv + ["--resume"], first_error_line(res.err)
    now = _ckpt_step(last)
    if now != step + 2:
        return "work_lost", f"killed at step {step}, resumed run ended at {now}, not {step + 2}", argv, ""
    return "ok", f"killed at step {step}, resumed to {now}", argv, ""


def _ckpt_weights(run: Path) -> dict:
    import torch

    sd = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {k: v.numpy() for k, v in sd.items()}


def _same_weights(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def scenario_resume_equals(ctx: Ctx):
    """A run SIGKILLed after step 2 and resumed ends with the weights of the uninterrupted run
    (optimizer, schedule, RNG and data order restored). No --max-steps: it changes the schedule."""
    cfg = write(ctx.w / "c.yaml", json.dumps(_tiny_config(epochs=16, checkpoint_every_n_steps=1)))
    import torch  # noqa: F401  (imported before the run starts, so that polling its checkpoint is quick)

    base = ["train", "--store", ctx["store"], "--config", str(cfg), "--no-progress"]
    full = rhosr(base + ["--out", str(ctx.w / "full")], ctx.w, 200)
    if classify(full, "ok", None) != "ok":
        return classify(full, "ok",
                        None), "the uninterrupted run failed", full.argv, first_error_line(full.err)
    cut = base + ["--out", str(ctx.w / "cut")]
    proc = start(cut, ctx.w)
    last = ctx.w / "cut" / "checkpoints" / "last.ckpt"
    got = _wait(lambda: last.exists() and _ckpt_step(last) >= 2, [proc], 200)
    kill(proc)
    proc.communicate()
    step = _ckpt_step(last)
    if not got or step >= 32:
        return "timeout", f"could not kill the run mid-way (checkpoint step {step})", cut, ""
    res = rhosr(cut + ["--resume"], ctx.w, 200)
    if classify(res, "ok", None) != "ok":
        return classify(res, "ok", None), "the resume failed", res.argv, first_error_line(res.err)
    diff = _same_weights(_ckpt_weights(ctx.w / "full"), _ckpt_weights(ctx.w / "cut"))
    if diff > 1e-6:
        return ("silent_wrong", f"killed at step {step} and resumed: weights differ from the uninterrupted "
                f"run's by {diff:.2e}", res.argv, "")
    return "ok", f"killed at step {step}; resumed == uninterrupted", res.argv, ""


def scenario_seed_reaches_data(ctx: Ctx):
    """Two seeds give different runs; the same seed gives the same run."""
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        cfg = write(ctx.w / f"{name}.yaml", json.dumps(_tiny_config(seed=seed, epochs=2)))
        r = rhosr(["train", "--store", ctx["store"], "--config", str(cfg), "--out", str(ctx.w / name),
                   "--no-progress", "--max-steps", "2"], ctx.w, 200)
        cls = classify(r, "ok", None)
        if cls != "ok":
            return cls, "a run failed", r.argv, first_error_line(r.err)
        runs[name] = _ckpt_weights(ctx.w / name)
    same, other = _same_weights(runs["a"], runs["b"]), _same_weights(runs["a"], runs["c"])
    if same > 1e-6:
        return "silent_wrong", f"same seed, weights differ by {same:.2e}", r.argv, ""
    if other < 1e-9:
        return "silent_wrong", "seeds 1 and 2 give identical weights", r.argv, ""
    return "ok", "seed respected", r.argv, ""


def _kill_output(ctx: Ctx, argv: list[str], out: Path, delays=(4.0, 7.0, 10.0)):
    for delay in delays:
        if out.exists():
            out.unlink()
        proc = start(argv, ctx.w)
        time.sleep(delay)
        kill(proc)
        proc.communicate()
        if out.exists():
            try:
                read_cube(out)
            except Exception as exc:
                why = f"killed after {delay} s: a half-written {out.name} is left ({exc})"
                return "silent_wrong", why, argv, ""
    return "ok", "no partial file after kills", argv, ""


def scenario_kill_predict(ctx: Ctx):
    out = ctx.w / "x.cube"
    return _kill_output(ctx, ["predict", ctx["water"], "-o", str(out), "--quiet"], out)


def scenario_kill_dft(ctx: Ctx):
    out = ctx.w / "x.cube"
    return _kill_output(ctx, ["dft", ctx["water"], "--preset", "tiny", "-q", "-o", str(out)], out)


def scenario_concurrent_presets(ctx: Ctx):
    store = str(ctx.w / "st")
    a = ["label", ctx["src3"], "--store", store, "--preset", "tiny", "--workers", "0", "--limit", "1"]
    b = ["label", ctx["src3"], "--store", store, "--preset", "fast", "--workers", "0", "--limit", "1"]
    t0 = time.time()
    pa, pb = start(a, ctx.w), start(b, ctx.w)
    ra, rb = finish(pa, a, t0, 250), finish(pb, b, t0, 250)
    ca, cb = classify(ra, "ok", None), classify(rb, "ok", None)
    for c, r in ((ca, ra), (cb, rb)):
        if c in ("traceback", "timeout", "untidy"):
            return c, "", r.argv, first_error_line(r.err)
    if ca == "ok" and cb == "ok":
        meta = json.loads((ctx.w / "st" / "zarr.json").read_text())
        why = f"both presets accepted into one store (store says {json.dumps(meta)[:80]})"
        return "silent_wrong", why, b, ""
    if ca != "ok" and cb != "ok":
        return "refused", "both refused", a, first_error_line(ra.err)
    return "ok", "one refused", a, ""


def scenario_concurrent_same(ctx: Ctx):
    store = str(ctx.w / "st")
    a = ["label", ctx["src3"], "--store", store, "--preset", "tiny", "--workers", "0"]
    t0 = time.time()
    pa, pb = start(a, ctx.w), start(a, ctx.w)
    ra, rb = finish(pa, a, t0, 250), finish(pb, a, t0, 250)
    for r in (ra, rb):
        c = classify(r, "ok", None)
        if c != "ok":
            return c, "", r.argv, first_error_line(r.err)
    done = _done_count(ra.text) + _done_count(rb.text)
    got = _entries(ctx.w / "st")
    if got != ["h2", "hf", "water"]:
        return "silent_wrong", f"store holds {got}", a, ""
    if done != 3:
        return "work_lost", f"3 molecules computed {done} times in all", a, ""
    return "ok", "each molecule computed once", a, ""


def scenario_concurrent_train(ctx: Ctx):
    out = str(ctx.w / "r")
    a = ["train", "--store", ctx["store"], "--config", ctx["tinycfg"], "--out", out, "--no-progress",
         "--max-steps", "3"]
    t0 = time.time()
    pa, pb = start(a, ctx.w), start(a, ctx.w)
    ra, rb = finish(pa, a, t0, 250), finish(pb, a, t0, 250)
    cs = [classify(r, "ok", None) for r in (ra, rb)]
    for c, r in zip(cs, (ra, rb)):
        if c in ("traceback", "timeout", "untidy"):
            return c, "", r.argv, first_error_line(r.err)
    if cs.count("ok") == 2:
        return "silent_wrong", "two runs wrote into one --out at once", a, ""
    if cs.count("ok") == 0:
        return "refused", "both refused", a, first_error_line(ra.err)
    return "ok", "one refused", a, ""


# ---------------------------------------------------------------------------------------------
# running attempts


_FX: dict = {}
_WORK: Path = Path(".")


def attempt_needs(att: Attempt) -> set[str]:
    needs = set(att.needs)
    for key in re.findall(r"\{(\w+)\}", att.argv):
        if key in FIXTURE_KEYS:
            needs.add(FIXTURE_KEYS[key])
    for fn in (att.setup,):
        needs.update(getattr(fn, "needs", ()))
    return needs


def run_attempt(index: int) -> dict:
    att = ATTEMPTS[index]
    w = _WORK / att.name
    if w.exists():
        shutil.rmtree(w)
    w.mkdir(parents=True)
    ctx = Ctx(w, _FX)
    t0 = time.time()
    row = {"name": att.name, "point": att.point, "command": att.command, "expect": att.expect}
    try:
        if att.scenario:
            cls, detail, argv, err = att.scenario(ctx)
            row.update(cls=cls, detail=detail, argv=argv, err=err, rc=None)
        else:
            if att.setup:
                ctx.extra.update(att.setup(ctx) or {})
            values = {**_FX, **ctx.extra, "w": str(w)}
            argv = [tok.format(**values) for tok in shlex.split(att.argv)]
            res = rhosr(argv, w, att.timeout)
            (w / "stdout.txt").write_text(res.out)
            (w / "stderr.txt").write_text(res.err)
            if res.rc in att.ok_codes and res.rc != 0 and "Traceback" not in res.err:
                res.rc = 0  # e.g. verify: 1 = damage found
            problem = None
            if att.check and res.rc is not None and (res.rc == 0 or att.expect in ("either", "error")):
                try:
                    problem = att.check(res, ctx)
                except Exception as exc:  # the check itself failed on what rhosr left
                    problem = f"check failed: {type(exc).__name__}: {exc}"
            expect = att.expect if att.expect != "either" else ("ok" if res.rc == 0 else "error")
            cls = classify(res, expect, problem)
            if problem and problem.startswith("WORK_LOST"):
                cls = "work_lost"
            err = first_error_line(res.err)
            if res.rc is not None and res.rc < 0:
                err = f"killed by signal {-res.rc} ({signal.Signals(-res.rc).name}); last line: {err}"
            row.update(cls=cls, detail=problem or "", argv=argv, err=err, rc=res.rc)
    except FixtureError:
        raise
    except Exception as exc:  # a harness bug: report it, do not count it against rhosr
        row.update(cls="harness", detail=f"{type(exc).__name__}: {exc}", argv=[], err="", rc=None)
    row["seconds"] = round(time.time() - t0, 1)
    expected = {"ok"} if att.expect == "ok" else {"error"} if att.expect == "error" else {"ok", "error"}
    row["passed"] = row["cls"] in expected
    return row


def _init_worker(fx: dict, work: str) -> None:
    global _FX, _WORK
    _FX, _WORK = fx, Path(work)


def select(only: str | None) -> list[int]:
    if not only:
        return list(range(len(ATTEMPTS)))
    pats = only.split(",")
    return [i for i, a in enumerate(ATTEMPTS)
            if any(fnmatch.fnmatch(a.name, p) or p in a.name for p in pats)]


def run_sweep(indices: list[int], scratch: Path, workers: int = 1, progress: bool = True) -> list[dict]:
    groups = set().union(*(attempt_needs(ATTEMPTS[i]) for i in indices)) if indices else set()
    fx = build_fixtures(scratch / "fixtures", groups)
    _init_worker(fx, str(scratch / "work"))
    rows: list[dict] = []
    # slow attempts first, so the pool does not end on one long job
    order = sorted(indices, key=lambda i: -(ATTEMPTS[i].timeout + (500 if ATTEMPTS[i].scenario else 0)))
    t0 = time.time()
    if workers <= 1:
        it = (run_attempt(i) for i in order)
        pool = None
    else:
        fork = multiprocessing.get_context("fork")
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=fork, initializer=_init_worker,
                                                      initargs=(fx, str(scratch / "work")))
        it = (f.result() for f in concurrent.futures.as_completed([pool.submit(run_attempt,
                                                                               i) for i in order]))
    try:
        for row in it:
            rows.append(row)
            if progress:
                mark = "pass" if row["passed"] else "FAIL"
                print(f"[{len(rows):3d}/{len(order)} {time.time() - t0:5.0f} s] {mark} {row['cls']:12s} "
                      f"{row['name']} ({row['seconds']} s) {row['detail'][:80]} {row['err'][:100]}",
                      file=sys.stderr, flush=True)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    rows.sort(key=lambda r: [a.name for a in ATTEMPTS].index(r["name"]))
    return rows


# ---------------------------------------------------------------------------------------------
# report


def tally(rows: list[dict], key: str) -> list[tuple[str, Counter, int]]:
    groups: dict = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    return [(k, Counter(r["cls"] for r in v), sum(r["passed"] for r in v)) for k, v in sorted(groups.items())]


def table(rows: list[dict], key: str, title: str) -> str:
    cols = ["attempts", "passed", "one-line error", "clean success", "traceback", "silent wrong", "work lost",
            "refused", "untidy", "timeout", "harness"]
    keys = ["error", "ok", "traceback", "silent_wrong", "work_lost", "refused", "untidy", "timeout",
            "harness"]
    out = [f"| {title} | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    total = Counter()
    for name, c, passed in tally(rows, key):
        label = f"{name} ({POINTS[name]})" if key == "point" else name
        n = sum(c.values())
        out.append(f"| {label} | {n} | {passed} | " + " | ".join(str(c[k]) for k in keys) + " |")
        total.update(c)
    n_pass = sum(r["passed"] for r in rows)
    out.append(f"| **all** | {len(rows)} | {n_pass} | " + " | ".join(str(total[k]) for k in keys) + " |")
    return "\n".join(out)


def clean(text: str) -> str:
    """Drop the scratch folder and home folders from a line (the results name no machine path)."""
    text = re.sub(r"/\S*?/(work|fixtures)/", "", text)
    text = re.sub(r"/(root|home/[\w.-]+)/", "~/", text)
    return re.sub(r"/tmp/\S*", "TMP", text)


def markdown(rows: list[dict], command: str, seconds: float) -> str:
    fails = [r for r in rows if not r["passed"]]
    lines = [
        "# Adversarial sweep", "",
        f"`{command}` ({len(rows)} attempts, {seconds / 60:.1f} min).", "",
        "Classes: one-line error (exit 2, last stderr line `rhosr CMD: error: ...`), clean success (exit 0,"
        " result checked), traceback (a Traceback on stderr, or killed by a signal), silent wrong (exit 0"
        " where"
        " an error was expected, or the result check failed), work lost (completed entries or steps redone or"
        " gone), refused (a one-line error where success was expected), untidy (another non-zero exit),"
        " timeout. An attempt passes when its class is the expected one.", "",
        "## Per command", "", table(rows, "command", "command"), "",
        "## Per issue point", "", table(rows, "point", "point"), "",
        f"## Failing attempts ({len(fails)})", "",
        "| attempt | point | expected | got | command | first stderr line / problem |",
        "|---|---|---|---|---|---|",
    ]
    for r in fails:
        cmd = clean("rhosr " + " ".join(shlex.quote(a) for a in r["argv"]))
        why = clean("; ".join(x for x in (r["detail"], r["err"]) if x)).replace("|", "\\|")
        lines.append(f"| {r['name']} | {r['point']} | {r['expect']} | {r['cls']} | `{cmd[:160]}` "
                     f"| {why[:200]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated name patterns (fnmatch or substring)")
    parser.add_argument("--workers", type=int, default=1, help="attempts run at once (default 1)")
    parser.add_argument("--scratch", help="scratch folder (default: a new temporary one); shared inputs kept")
    parser.add_argument("--out", help="results folder (default benchmarks/results unless --only)")
    parser.add_argument("--list", action="store_true", help="list the attempts and exit")
    args = parser.parse_args(argv)
    indices = select(args.only)
    if args.list:
        for i in indices:
            a = ATTEMPTS[i]
            print(f"{a.name:45s} {a.point:5s} {a.expect:7s} {a.argv or '(scenario)'}")
        print(f"{len(indices)} attempts", file=sys.stderr)
        return 0
    scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="rhosr-sweep-"))
    t0 = time.time()
    rows = run_sweep(indices, scratch, args.workers)
    seconds = time.time() - t0
    print(table(rows, "command", "command"))
    print()
    print(table(rows, "point", "point"))
    out = Path(args.out) if args.out else (None if args.only else RESULTS)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        shown = "python benchmarks/adversarial_sweep.py" + (f" --only '{args.only}'" if args.only else "") + \
            f" --workers {args.workers}"
        (out / "adversarial_sweep.md").write_text(markdown(rows, shown, seconds))
        shared = [{**r, "argv": [clean(x) for x in r["argv"]], "err": clean(r["err"]),
                   "detail": clean(r["detail"])}
                  for r in rows]
        (out / "adversarial_sweep.json").write_text(json.dumps({"command": shown, "seconds": round(seconds),
                                                                 "attempts": shared}, indent=1))
        print(f"wrote {out / 'adversarial_sweep.md'}", file=sys.stderr)
    return 0


define()

if __name__ == "__main__":
    sys.exit(main())
