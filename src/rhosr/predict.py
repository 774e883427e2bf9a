"""Molecule in, predicted density out: place the molecule in its box, build the SAD input,
run a trained model (the one shipped in the package by default).

Everything follows the model's own ``model.json``: the box margin and upscale it was trained
with, and the inputs it reads (built by the model's own input builders, :mod:`rhosr.inputs`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from rhosr.checks import check_number, check_optional
from rhosr.errors import InputError, RhosrWarning
from rhosr.grid import Grid, place_in_box
from rhosr.molecule import Molecule

PRETRAINED = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "qm9-unet"
# An element in fewer training molecules than this gets a warning: qm9-small saw F in 2 of 192
# and is worse than the SAD input inside F's covalent radius (its MODEL_CARD.md); qm9-unet in 9.
RARE_ELEMENT_MOLECULES = 10


def shipped_models() -> list[str]:
    """Names of the models inside the package (``rhosr/pretrained/NAME``)."""
    return (
        sorted(p.name for p in PRETRAINED.iterdir() if (p / "model.json").exists())
        if PRETRAINED.exists()
        else []
    )


def model_folder(name_or_path: str | os.PathLike | None = None) -> Path:
    """A model folder: a path, or the name of a shipped model (default :data:`DEFAULT_MODEL`)."""
    name_or_path = DEFAULT_MODEL if name_or_path is None else name_or_path
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if (PRETRAINED / str(name_or_path) / "model.json").exists():
        return PRETRAINED / str(name_or_path)
    shipped = ", ".join(shipped_models()) or "none"
    raise InputError(f"{name_or_path}: no such model folder or shipped model (shipped: {shipped})")


@lru_cache(maxsize=4)
def _load(folder: str, device: str):
    import torch

    from rhosr.checkpoint import load_model

    model, meta = load_model(folder, device)
    if device == "cpu":  # oneDNN's preferred layout: 11-18% faster inference
        model = model.to(memory_format=torch.channels_last_3d)
    return model, meta


@lru_cache(maxsize=4)
def _load_onnx(folder: str, threads: int | None = None):
    from rhosr.onnx_runtime import load_onnx_model, read_model_meta

    return load_onnx_model(folder, threads), read_model_meta(folder)


RUNTIMES = ("auto", "onnx", "torch")
"""How a prediction runs its network (``--runtime``): ``onnx`` with ONNX Runtime (a model
folder's ``model.onnx``, :mod:`rhosr.onnx_runtime`: no PyTorch import, ~1.5 s less start-up),
``torch`` with PyTorch, ``auto`` ONNX Runtime where it can (CPU, whole box, one rotation, a
current ``model.onnx``) and PyTorch otherwise."""


def load_predictor(name_or_path: str | os.PathLike | None = None, device: str = "cpu",
                   runtime: str = "torch", onnx_threads: int | None = None):
    """``(model, meta)`` of a model folder or shipped model, in eval mode on ``device``: the
    PyTorch :class:`rhosr.model.DensityModel`, or with ``runtime`` ``onnx`` (or ``auto`` where
    the folder has a current ``model.onnx`` and ONNX Runtime is installed) an
    :class:`rhosr.onnx_runtime.OnnxModel`, which runs on the CPU only, with ``onnx_threads``
    intra-op threads (default: :func:`rhosr.onnx_runtime.default_threads`)."""
    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if device.startswith("cuda"):
        if runtime == "onnx":
            raise InputError("--runtime onnx runs on the CPU; use --runtime torch (or auto) "
                             "with --device cuda")
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available to PyTorch here")
    elif device != "cpu":
        raise InputError(f"device must be cpu or cuda, got {device!r}")
    folder = model_folder(name_or_path).resolve()
    if runtime == "onnx" or (runtime == "auto" and device == "cpu"):
        from rhosr.onnx_runtime import stale_reason

        try:
            return _load_onnx(str(folder), onnx_threads)
        except InputError as exc:
            if runtime == "onnx":
                raise
            # no model.onnx (or no onnxruntime): PyTorch, as documented; a model.onnx that is
            # there but unusable (damaged, other weights): PyTorch, and say so once
            if stale_reason(folder) is None:
                _warn_once(f"{exc}; running the model with PyTorch instead")
    return _load(str(folder), device)


@lru_cache(maxsize=16)
def _warn_once(message: str) -> None:
    warnings.warn(message, RhosrWarning, stacklevel=3)


def default_memory_budget_gb() -> float:
    """Memory one CPU forward pass may take when none is given: half of what the machine has
    available now (Linux ``MemAvailable``; elsewhere half of the physical memory). Boxes whose
    estimated forward pass is larger are predicted in tiles (same result); smaller ones, which
    is nearly every molecule, run whole."""
    from rhosr.memory import available_bytes

    return 0.5 * available_bytes() / 1e9


def element_caveat(meta: dict, symbols) -> str | None:
    """What the model's training data says about these elements: ``None`` when every element
    was in at least :data:`RARE_ELEMENT_MOLECULES` training molecules (or the model does not
    record its training elements), else a one-line caveat."""
    trained = meta.get("train_elements")
    if not trained:
        return None
    present = sorted(set(symbols))
    unseen = [el for el in present if trained.get(el, 0) == 0]
    rare = [f"{el} in {trained[el]}" for el in present if 0 < trained.get(el, 0) < RARE_ELEMENT_MOLECULES]
    parts = []
    if unseen:
        parts.append(f"{', '.join(unseen)} never in the model's training molecules "
                     f"(it saw {', '.join(sorted(trained))})")
    if rare:
        parts.append(f"{', '.join(rare)} of its {meta.get('train_entries', '?')} training molecules only")
    if not parts:
        return None
    return "; ".join(parts) + ": expect larger errors around those atoms"


def check_options(tile: int | None = None, rotations: int = 1, max_memory_gb: float | None = None,
                  runtime: str = "auto") -> None:
    """InputError unless ``tile`` (coarse points per axis) is None or >= 1, ``rotations`` is
    1-24, ``max_memory_gb`` is None or a positive number and ``runtime`` one of
    :data:`RUNTIMES` that can do all that (the flags of the same names)."""
    check_optional("--tile", tile, integer=True, low=1, hint="coarse points per axis")
    check_number("--rotations", rotations, integer=True, low=1, high=24)
    check_optional("--max-memory", max_memory_gb, above=0, hint="GB")
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnx" and (tile is not None or rotations != 1):
        raise InputError("--runtime onnx runs the whole box once: --tile and --rotations need "
                         "--runtime torch")


def runtime_for(tile: int | None, rotations: int, runtime: str) -> str:
    """The runtime a prediction with these options asks :func:`load_predictor` for: ``auto``
    becomes ``torch`` when tiles or rotations are asked for (the ONNX graph has neither)."""
    if runtime == "auto" and (tile is not None or rotations != 1):
        return "torch"
    return runtime


@dataclass
class Prediction:
    """A predicted density: ``density`` (fine mesh, e/Bohr^3, float32, axes x, y, z), its
    ``grid``, the molecule ``placed`` in the box frame, the coarse ``sad`` (the first channel of
    the model's input: the SAD, e/Bohr^3; None for ``base_only``, which builds no network input)
    and timings (s)."""

    density: np.ndarray
    grid: Grid
    placed: Molecule
    sad: np.ndarray | None
    timings: dict = field(default_factory=dict)

    @property
    def n_electrons(self) -> float:
        return float(self.density.sum() * self.grid.voxel_volume("fine"))


@dataclass
class Prepared:
    """What a prediction computes from the atoms before the network runs: the molecule
    ``placed`` in its box ``grid`` and, once :meth:`build` ran (or :func:`prepare` was asked
    to), the coarse ``inputs`` ``(C, X, Y, Z)`` and the base's ``fine`` array (or None), with
    the seconds they took."""

    mol: Molecule
    placed: Molecule
    grid: Grid
    inputs: np.ndarray | None = None
    fine: np.ndarray | None = None
    seconds: float = 0.0

    def build(self, net, base_only: bool = False) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """``(inputs, fine, seconds)``, computed with ``net``'s builders on the first call;
        ``base_only``: the base's fine array alone (``inputs`` stays None unless built before)."""
        t0 = time.perf_counter()
        if self.fine is None:
            self.fine = net.build_fine(self.placed, self.grid)
        if self.inputs is None and not base_only:
            self.inputs = net.build_inputs(self.placed, self.grid)
        self.seconds += time.perf_counter() - t0
        return self.inputs, self.fine, self.seconds


def prepare(meta: dict, mol: Molecule) -> Prepared:
    """``mol`` placed in the box of the model described by ``meta``; its inputs follow from
    :meth:`Prepared.build` (``rhosr predict`` builds the next molecule's of a batch on another
    thread). The inputs depend only on the atoms, the box and the model's builders, the same
    for PyTorch and ONNX."""
    grid_meta = meta["grid"]
    placed, grid = place_in_box(mol, int(grid_meta["upscale"]), float(grid_meta.get("margin_angstrom", 4.0)))
    return Prepared(mol, placed, grid)


def predict(
    mol: Molecule,
    model: str | os.PathLike | None = None,
    device: str = "cpu",
    tile: int | None = None,
    max_memory_gb: float | None = None,
    rotations: int = 1,
    progress=None,
    runtime: str = "auto",
    prepared: Prepared | None = None,
    base_only: bool = False,
    onnx_threads: int | None = None,
) -> Prediction:
    """Predict the density of ``mol`` with a model folder or shipped model name.

    ``base_only``: the model's base alone, without its network (:func:`check_base_only`).

    ``runtime`` (:data:`RUNTIMES`): ``auto`` runs ONNX Runtime where it can and PyTorch where
    it cannot (tiles, rotations, CUDA, a box whose whole-box pass exceeds the memory budget),
    with the same result to float rounding.

    Refused before any work (InputError): a ``tile`` below 1, ``rotations`` outside 1-24, a
    ``max_memory_gb`` that is not a positive number, and a box whose estimated memory (the
    fine-mesh arrays plus one forward pass, tiled when the model allows it) exceeds what the
    machine has available.

    ``prepared``: this molecule's inputs from :func:`prepare` (a batch computes the next
    molecule's while the network runs on this one); computed here when None.

    ``onnx_threads``: ONNX Runtime's intra-op threads (default: every CPU this process may use,
    or ``OMP_NUM_THREADS``; ``rhosr predict --threads``)."""
    check_options(tile, rotations, max_memory_gb, runtime)
    net, meta = load_predictor(model, device, runtime_for(tile, rotations, runtime), onnx_threads)
    caveat = element_caveat(meta, mol.atoms.get_chemical_symbols())
    if caveat:
        warnings.warn(f"{mol.name}: {caveat}", RhosrWarning, stacklevel=2)
    if prepared is None or prepared.mol is not mol:
        prepared = prepare(meta, mol)
    placed, grid = prepared.placed, prepared.grid
    if base_only:
        check_base_only(net, tile, rotations)
        return _predict_base(net, mol, prepared)
    forward_bytes = net.bytes_per_voxel * math.prod(grid.coarse_mesh)
    if getattr(net, "runtime", "torch") == "onnxruntime":
        budget = default_memory_budget_gb() if max_memory_gb is None else max_memory_gb
        if forward_bytes <= budget * 1e9:
            return _predict_onnx(net, mol, prepared)
        if runtime == "onnx":
            raise InputError(f"{mol.name}: one whole-box pass needs ~{forward_bytes / 1e9:.1f} GB, more "
                             f"than {budget:.1f} GB; --runtime torch predicts it in tiles")
        net, meta = load_predictor(model, device, "torch")  # tiles bound its memory
    from rhosr.inference import predict_array, tile_for_memory

    auto = tile is None and max_memory_gb is None and device == "cpu" and net.tileable
    if auto:
        max_memory_gb = default_memory_budget_gb()  # a box too large for memory is tiled, not killed
    if tile is None and max_memory_gb is not None:
        if forward_bytes > max_memory_gb * 1e9:
            try:
                tile = tile_for_memory(net, max_memory_gb * 1e9)
            except InputError:
                if not auto:
                    raise
                tile = MIN_AUTO_TILE  # not even this fits: the check below says how much is needed
    _check_memory(net, mol, grid, tile, device)
    inputs, fine, t_sad = prepared.build(net)
    t0 = time.perf_counter()
    density = predict_array(
        net,
        inputs,
        mol.n_valence,
        grid.voxel_volume("fine"),
        tile=tile,
        rotations=rotations,
        device=device,
        progress=progress,
        fine=fine,
    )
    t_model = time.perf_counter() - t0
    return Prediction(density, grid, placed, inputs[0],
                      {"sad_s": t_sad, "model_s": t_model, "tile": tile, "runtime": "torch"})


def check_base_only(net, tile: int | None = None, rotations: int = 1) -> None:
    """InputError unless ``net``'s base is a density on the fine mesh (``fitted_prior``,
    ``sad_fine``) and no tiles or rotations are asked for: ``--base-only`` predicts that density
    (through the ReLU, rescaled to N_e, as the model treats its output) without running the
    network. Decided as an option, not the default, because the network is the model; on a
    model whose network adds little to its base (its card says: ``err_base`` beside Err_rho) it
    buys the speed of not running it."""
    if tile is not None or rotations != 1:
        raise InputError("--base-only runs no network: --tile and --rotations do not apply")
    if not net.needs_fine:
        raise InputError("--base-only needs a model whose base is a fine-mesh density (fitted_prior or "
                         "sad_fine); this model's base is computed from its network's input")


def _predict_base(net, mol: Molecule, prepared: Prepared) -> Prediction:
    """The model's base alone (:func:`check_base_only`)."""
    from rhosr.onnx_runtime import rescale_to_electrons

    _, fine, t_sad = prepared.build(net, base_only=True)
    t0 = time.perf_counter()
    density = rescale_to_electrons(np.maximum(fine, 0.0), mol.n_valence, prepared.grid.voxel_volume("fine"))
    return Prediction(density, prepared.grid, prepared.placed, None,
                      {"sad_s": t_sad, "model_s": time.perf_counter() - t0, "tile": None, "runtime": "base"})


def _predict_onnx(net, mol: Molecule, prepared: Prepared) -> Prediction:
    """The whole-box prediction with ONNX Runtime (:class:`rhosr.onnx_runtime.OnnxModel`)."""
    from rhosr.onnx_runtime import rescale_to_electrons

    placed, grid = prepared.placed, prepared.grid
    _check_memory(net, mol, grid, None, "cpu")
    inputs, fine, t_sad = prepared.build(net)
    t0 = time.perf_counter()
    density = rescale_to_electrons(net.run(inputs, fine), mol.n_valence, grid.voxel_volume("fine"))
    t_model = time.perf_counter() - t0
    return Prediction(density, grid, placed, inputs[0],
                      {"sad_s": t_sad, "model_s": t_model, "tile": None, "runtime": "onnxruntime"})


MIN_AUTO_TILE = 4
"""The smallest tile core (coarse points per axis) that memory-driven tiling picks."""

BYTES_PER_FINE_POINT = 32
"""Memory of the whole-box arrays of a prediction per fine-mesh point, however it is tiled:
the float32 output of the network, its float64 sum over rotations and rescaled copy, the
float32 result, and a float64 fine-mesh input where the model takes one."""


def _check_memory(net, mol: Molecule, grid: Grid, tile: int | None, device: str) -> None:
    """Refuse a prediction whose estimated memory exceeds what the machine has available."""
    from rhosr.memory import check_fits

    tiled = tile is not None and any(tile < n for n in grid.coarse_mesh)
    arrays = BYTES_PER_FINE_POINT * math.prod(grid.fine_mesh) + 16 * math.prod(grid.coarse_mesh)
    if tiled:  # one tile, plus what runs on the whole box anyway (a head-tiled model's body)
        from rhosr.inference import tile_halo

        forward = (net.config.tile_bytes_per_voxel * (tile + 2 * tile_halo(net)) ** 3
                   + net.config.untiled_bytes_per_voxel * math.prod(grid.coarse_mesh))
    else:
        forward = int(net.bytes_per_voxel * math.prod(grid.coarse_mesh))
    how = f"tiles of {tile}" if tiled else "whole box"
    what = f"the prediction of {mol.name} (fine mesh {' x '.join(map(str, grid.fine_mesh))}, {how})"
    tileable = net.tileable
    if device == "cpu":
        arrays += forward
        hint = ("tiles bound only the network's share: the fine-mesh density itself must fit"
                if tileable or getattr(net, "runtime", "torch") == "onnxruntime"
                else "this model uses instance norm and cannot be tiled (a model with norm: none can)")
    else:
        check_fits(forward, what, "--max-memory GB picks tiles that fit" if tileable else
                   "this model uses instance norm and cannot be tiled; try --device cpu", device)
        hint = "the fine-mesh density is gathered in the machine's memory"
    check_fits(arrays, what, hint)


def predict_density(atoms, model: str | os.PathLike | None = None, **kwargs) -> tuple[np.ndarray, Grid]:
    """``(density, grid)`` for an ASE ``Atoms``, a :class:`Molecule` or anything
    :func:`rhosr.read_molecule` reads (path, ``qm9:N``, SMILES). The density is on
    ``grid.fine_mesh`` in e/Bohr^3 with axes (x, y, z); the molecule sits in the box as
    :func:`rhosr.place_in_box` puts it."""
    from ase import Atoms

    from rhosr.molecule import read_molecule, validate

    if isinstance(atoms, Molecule):
        mol = atoms
    elif isinstance(atoms, (str, os.PathLike)):
        mol = read_molecule(str(atoms))
    elif isinstance(atoms, Atoms):
        mol = validate(
            Molecule(
                Atoms(atoms.get_chemical_symbols(), atoms.get_positions()), name=atoms.get_chemical_formula()
            )
        )
    else:
        raise InputError(
            f"predict_density takes ASE Atoms, a Molecule or a molecule spec, not {type(atoms).__name__}"
        )
    result = predict(mol, model, **kwargs)
    return result.density, result.grid
