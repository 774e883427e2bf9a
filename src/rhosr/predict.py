"""Molecule in, predicted density out: place the molecule in its box, build the SAD input,
run a trained model (the one shipped in the package by default).

Everything follows the model's own ``model.json``: the box margin and upscale it was trained
with, and the inputs it reads (built by the model's own input builders, :mod:`rhosr.inputs`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from rhosr.errors import InputError, RhosrWarning
from rhosr.grid import Grid, place_in_box
from rhosr.molecule import Molecule

PRETRAINED = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "qm9-small"
# An element in fewer training molecules than this gets a warning: the shipped model saw F in
# 2 of 192 and is worse than the SAD input inside F's covalent radius (MODEL_CARD.md).
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
    from rhosr.checkpoint import load_model

    return load_model(folder, device)


def load_predictor(name_or_path: str | os.PathLike | None = None, device: str = "cpu"):
    """``(model, meta)`` of a model folder or shipped model, in eval mode on ``device``."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available to PyTorch here")
    elif device != "cpu":
        raise InputError(f"device must be cpu or cuda, got {device!r}")
    return _load(str(model_folder(name_or_path).resolve()), device)


def default_memory_budget_gb() -> float:
    """Memory one CPU forward pass may take when none is given: half of what the machine has
    available now (Linux ``MemAvailable``; elsewhere half of the physical memory). Boxes whose
    estimated forward pass is larger are predicted in tiles (same result); smaller ones, which
    is nearly every molecule, run whole."""
    try:
        with open("/proc/meminfo") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
        return 0.5 * kib * 1024 / 1e9
    except (OSError, StopIteration, ValueError):
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


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


@dataclass
class Prediction:
    """A predicted density: ``density`` (fine mesh, e/Bohr^3, float32, axes x, y, z), its
    ``grid``, the molecule ``placed`` in the box frame, the coarse ``sad`` (the first channel of
    the model's input: the SAD, e/Bohr^3) and timings (s)."""

    density: np.ndarray
    grid: Grid
    placed: Molecule
    sad: np.ndarray
    timings: dict = field(default_factory=dict)

    @property
    def n_electrons(self) -> float:
        return float(self.density.sum() * self.grid.voxel_volume("fine"))


def predict(
    mol: Molecule,
    model: str | os.PathLike | None = None,
    device: str = "cpu",
    tile: int | None = None,
    max_memory_gb: float | None = None,
    rotations: int = 1,
    progress=None,
) -> Prediction:
    """Predict the density of ``mol`` with a model folder or shipped model name."""
    from rhosr.inference import estimate_memory_bytes, predict_array, tile_for_memory

    if max_memory_gb is not None and not max_memory_gb > 0:
        raise InputError(f"--max-memory must be a positive number of GB, got {max_memory_gb:g}")
    net, meta = load_predictor(model, device)
    caveat = element_caveat(meta, mol.atoms.get_chemical_symbols())
    if caveat:
        warnings.warn(f"{mol.name}: {caveat}", RhosrWarning, stacklevel=2)
    grid_meta = meta["grid"]
    placed, grid = place_in_box(mol, int(grid_meta["upscale"]), float(grid_meta.get("margin_angstrom", 4.0)))
    t0 = time.perf_counter()
    inputs = net.build_inputs(placed, grid)
    fine = net.build_fine(placed, grid)
    t_sad = time.perf_counter() - t0
    if tile is None and max_memory_gb is None and device == "cpu" and net.local:
        max_memory_gb = default_memory_budget_gb()  # a box too large for memory is tiled, not killed
    if tile is None and max_memory_gb is not None:
        if estimate_memory_bytes(net, grid.coarse_mesh) > max_memory_gb * 1e9:
            tile = tile_for_memory(net, max_memory_gb * 1e9)
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
    return Prediction(density, grid, placed, inputs[0], {"sad_s": t_sad, "model_s": t_model, "tile": tile})


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
