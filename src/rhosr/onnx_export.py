"""Write a model folder's ``model.onnx``: the PyTorch model as an ONNX graph that
:mod:`rhosr.onnx_runtime` runs without importing PyTorch (``rhosr export-onnx FOLDER``).

The graph is traced with box sizes left free (any ``X, Y, Z``), then checked against PyTorch on
two other box shapes with odd and even sizes; an export whose output differs by more than
:data:`rhosr.onnx_runtime.EXPORT_TOLERANCE` (relative to the largest value) is refused and
nothing is written. Needs the ``onnx`` package (a dependency of rhosr).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from rhosr.errors import InputError
from rhosr.onnx_runtime import (
    EXPORT_TOLERANCE,
    FORMAT,
    META_KEY,
    ONNX_FILE,
    WEIGHTS_FILE,
    file_sha256,
)

OPSET = 18
TRACE_SHAPE = (20, 17, 23)
CHECK_SHAPES = ((16, 21, 18), (25, 19, 22))
"""Coarse box shapes: the one traced and the two the export is checked on (each axis at least
the U-Net's coarsest level times its kernel; QM9 boxes are 40-90 points)."""


class _Graph(torch.nn.Module):
    """The model's forward pass as the ONNX graph sees it: ``x`` (and ``fine``) -> density."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, fine: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, fine=fine)


def _fine_spec(config) -> dict | None:
    if not config.needs_fine:
        return None
    if config.base.name == "sad_fine":
        return {"name": "sad_fine"}
    if config.base.name == "fitted_prior":
        import dataclasses

        return {"name": "fitted_prior", **json.loads(json.dumps(dataclasses.asdict(config.base.options)))}
    raise InputError(f"base {config.base.name}: its fine-mesh array has no ONNX counterpart yet")


def _example(model, shape, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, model.config.in_channels, *shape), generator=g) * 0.2
    fine = None
    if model.needs_fine:
        fine = torch.rand((1, 1, *(model.upscale * n for n in shape)), generator=g) * 0.2
    return x, fine


def export_onnx(folder: str | os.PathLike) -> float:
    """Write ``FOLDER/model.onnx`` for the model in ``folder``; return the largest relative
    difference from PyTorch measured on the check shapes. InputError (nothing written) when
    the graph cannot be exported or does not match."""
    import onnx
    import onnxruntime as ort

    from rhosr.checkpoint import load_model
    from rhosr.layers import plain_convolutions

    folder = Path(folder)
    model, _ = load_model(folder)
    config = model.config
    spec = {
        "format": FORMAT,
        "weights_sha256": file_sha256(folder / WEIGHTS_FILE),
        "inputs": [p.to_dict() for p in config.inputs],
        "fine": _fine_spec(config),
        "upscale": config.upscale,
        "in_channels": config.in_channels,
        "bytes_per_voxel": config.bytes_per_voxel,
        "describe": model.describe(),
        "torch": torch.__version__,
        "opset": OPSET,
    }
    x, fine = _example(model, TRACE_SHAPE, 0)
    names = ["x"] + (["fine"] if fine is not None else [])
    axes = {"x": {2: "X", 3: "Y", 4: "Z"}, "y": {2: "uX", 3: "uY", 4: "uZ"}}
    if fine is not None:
        axes["fine"] = {2: "uX", 3: "uY", 4: "uZ"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), plain_convolutions(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(_Graph(model), (x, fine) if fine is not None else (x,), buffer, input_names=names,
                          output_names=["y"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue())
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for seed, shape in enumerate(CHECK_SHAPES, 1):
        x, fine = _example(model, shape, seed)
        with torch.inference_mode():
            want = model(x, fine=fine).numpy()
        feed = {"x": x.numpy()} | ({"fine": fine.numpy()} if fine is not None else {})
        got = session.run(None, feed)[0]
        if got.shape != want.shape:
            raise InputError(f"{folder}: the ONNX graph returns shape {got.shape} for a box of "
                             f"{shape}, PyTorch {want.shape}: not exported")
        worst = max(worst, float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)))
    if worst > EXPORT_TOLERANCE:
        raise InputError(f"{folder}: the ONNX graph differs from PyTorch by {worst:.1e} (relative), "
                         f"more than {EXPORT_TOLERANCE:.0e}: not exported")
    spec["max_relative_difference"] = worst
    entry = graph.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(spec)
    from rhosr.io import atomic_write

    with atomic_write(folder / ONNX_FILE, "wb") as fh:
        fh.write(graph.SerializeToString())
    return worst
