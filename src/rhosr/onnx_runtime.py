"""Prediction without PyTorch: a model folder's ``model.onnx`` run by ONNX Runtime.

``import torch`` alone takes 1.7-2.2 s on a small CPU machine, more than the rest of a
one-molecule prediction; ``import onnxruntime`` takes ~0.3 s. A model folder that holds a
``model.onnx`` written by :func:`rhosr.onnx_export.export_onnx` (``rhosr export-onnx``; the
shipped models have one) is therefore run here when a prediction needs nothing the ONNX graph
lacks: the CPU, the whole box (no tiles) and no rotation averaging. Anything else (``--device
cuda``, ``--tile``, ``--rotations``, a box too large for memory, a folder without a current
``model.onnx``) runs the PyTorch model, with the same result to float rounding (the export
checks it: relative difference below :data:`EXPORT_TOLERANCE` on two box shapes).

The ONNX graph is the whole :class:`rhosr.model.DensityModel` before the rescaling to N_e:
``x`` ``(1, C, X, Y, Z)`` coarse inputs (e/Bohr^3) and, for a base that reads one, ``fine``
``(1, 1, uX, uY, uZ)`` in; the ReLU'd fine density ``(1, 1, uX, uY, uZ)`` out. Its metadata
(``rhosr`` key, JSON) says what the graph cannot: the input builders, the fine array of the
base, the upscale, the memory per coarse voxel, a one-line description and the SHA-256 of the
``model.safetensors`` it was exported from; a folder whose weights changed since is run with
PyTorch. This module imports neither PyTorch nor PySCF.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosr.errors import InputError

ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "model.safetensors"
META_KEY = "rhosr"
FORMAT = 1
EXPORT_TOLERANCE = 1e-5
"""Largest relative difference (max |onnx - torch| / max |torch|) an export accepts."""


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def stale_reason(folder: str | os.PathLike) -> str | None:
    """Why the folder's ``model.onnx`` cannot stand in for its weights (None: it can)."""
    folder = Path(folder)
    if not (folder / ONNX_FILE).exists():
        return f"no {ONNX_FILE} (rhosr export-onnx {folder} writes one)"
    if not onnxruntime_available():
        return "onnxruntime is not installed"
    return None


def rescale_to_electrons(rho: np.ndarray, n_electrons: float, fine_voxel_volume: float) -> np.ndarray:
    """``rho`` (any float dtype, e/Bohr^3) scaled in float64 to integrate to ``n_electrons``,
    returned as float32; a density that integrates to zero or less becomes uniform."""
    rho = np.asarray(rho, dtype=np.float64)
    integral = rho.sum() * fine_voxel_volume
    if integral <= 0:
        rho = np.full_like(rho, n_electrons / (rho.size * fine_voxel_volume))
    else:
        rho = rho * (n_electrons / integral)
    return rho.astype(np.float32)


@dataclass
class OnnxModel:
    """A model folder's ``model.onnx`` in an ONNX Runtime session, with what prediction asks of
    a model: ``upscale``, ``bytes_per_voxel``, ``describe()``, ``build_inputs`` and
    ``build_fine`` (like :class:`rhosr.model.DensityModel`) and ``run`` (like one whole-box
    forward pass). It is never tiled (``tileable`` is False: a box too large runs with PyTorch)."""

    session: object
    spec: dict
    builders: list
    runtime = "onnxruntime"
    tileable = False

    @property
    def upscale(self) -> int:
        return int(self.spec["upscale"])

    @property
    def bytes_per_voxel(self) -> float:
        return float(self.spec["bytes_per_voxel"])

    @property
    def needs_fine(self) -> bool:
        return self.spec["fine"] is not None

    def describe(self) -> str:
        return str(self.spec["describe"])

    def build_inputs(self, mol, grid) -> np.ndarray:
        """The coarse input ``(C, X, Y, Z)`` float32 of a molecule placed in ``grid``'s box."""
        from rhosr.inputs import model_inputs

        return model_inputs(self.builders, mol, grid)

    def build_fine(self, mol, grid) -> np.ndarray | None:
        """The base's fine-mesh array ``(uX, uY, uZ)`` (e/Bohr^3), or None."""
        fine = self.spec["fine"]
        if fine is None:
            return None
        if fine["name"] == "sad_fine":
            from rhosr.sad import sad_fine

            return sad_fine(mol, grid, atrocious=self.builders[0].atrocious)
        from rhosr.prior import prior_density

        return prior_density(mol, grid, "fine", self._prior_options)

    @functools.cached_property
    def _prior_options(self):
        """The fitted prior's options, read (and checked) once, not for every molecule."""
        from rhosr.prior import PriorOptions
        from rhosr.schema import typed_from_dict

        return typed_from_dict(PriorOptions, {k: v for k, v in self.spec["fine"].items() if k != "name"},
                               "model.onnx: fitted_prior")

    def run(self, coarse: np.ndarray, fine: np.ndarray | None = None) -> np.ndarray:
        """The network's fine output ``(uX, uY, uZ)`` float32 (ReLU'd, not rescaled) for coarse
        inputs ``(C, X, Y, Z)`` and the base's fine array where it reads one."""
        feed = {"x": np.ascontiguousarray(coarse, dtype=np.float32)[None]}
        if self.needs_fine:
            if fine is None:
                raise InputError(f"base {self.spec['fine']['name']} needs the fine-mesh array (fine=...)")
            feed["fine"] = np.ascontiguousarray(fine, dtype=np.float32)[None, None]
        return self.session.run(None, feed)[0][0, 0]


def _builders(inputs: list) -> list:
    from rhosr.inputs import INPUTS
    from rhosr.schema import typed_from_dict

    builders = []
    for part in inputs:
        cls = INPUTS.get_class(part["name"])
        options = {k: v for k, v in part.items() if k != "name"}
        builders.append(cls(typed_from_dict(cls.Options, options, f"model.onnx: input {part['name']}")))
    return builders


def default_threads() -> int:
    """ONNX Runtime's intra-op threads: ``OMP_NUM_THREADS`` when set (as PyTorch reads it),
    else the CPUs this process may use."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_onnx_model(folder: str | os.PathLike, threads: int | None = None) -> OnnxModel:
    """The folder's ``model.onnx`` in a CPU session with ``threads`` intra-op threads (default
    :func:`default_threads`); InputError when it is missing, damaged, of a newer format, or
    exported from other weights than the folder's."""
    import onnxruntime as ort

    folder = Path(folder)
    path = folder / ONNX_FILE
    reason = stale_reason(folder)
    if reason:
        raise InputError(f"{folder}: cannot run with onnxruntime: {reason}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads() if threads is None else max(1, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # ONNX Runtime's idle intra-op threads spin by default, holding the cores on which a batch of
    # `rhosr predict` computes the next molecule's prior and writes the last cube. Measured on 2
    # cores, `rhosr predict` over 10 QM9 molecules, runs alternated: 9.8-10.0 s without spinning,
    # 10.4-11.8 s with it; one molecule 1.57 s against 1.49-1.53 s.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        spec = json.loads(session.get_modelmeta().custom_metadata_map[META_KEY])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... classes
        raise InputError(f"{path}: not a readable rhosr ONNX model ({str(exc).splitlines()[0][:120]}); "
                         f"re-export it with rhosr export-onnx {folder}") from None
    if not isinstance(spec, dict) or spec.get("format", 0) > FORMAT:
        raise InputError(f"{path}: written by a newer rhosr (format {spec.get('format')}); upgrade rhosr")
    if spec.get("weights_sha256") != file_sha256(folder / WEIGHTS_FILE):
        raise InputError(f"{path}: exported from other weights than {folder / WEIGHTS_FILE}; "
                         f"re-export it with rhosr export-onnx {folder}")
    return OnnxModel(session, spec, _builders(spec["inputs"]))


def read_model_meta(folder: str | os.PathLike) -> dict:
    """``model.json`` of a folder as a plain dict (what prediction reads: ``grid``, ``val_err``,
    ``train_elements``, ``train_entries``), without building the PyTorch model."""
    path = Path(folder) / "model.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("grid"), dict):
        raise InputError(f"{path}: incomplete, no 'grid'")
    return meta
