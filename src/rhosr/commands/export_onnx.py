"""``rhosr export-onnx``: write a model folder's ``model.onnx`` for prediction without PyTorch."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Export a model folder (model.json + model.safetensors: a training run's best/, or a shipped
model's name) to FOLDER/model.onnx, which `rhosr predict` then runs with ONNX Runtime instead of
PyTorch whenever it can (CPU, whole box, one rotation): the same densities to float rounding,
~1.5 s less start-up per call. The export is checked against PyTorch on two box shapes and
refused (nothing written) if they differ by more than 1e-5 (relative). The file records the
SHA-256 of the weights it came from: after the weights change, predict falls back to PyTorch
until the folder is exported again."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="model folder or shipped model name")


def run(args: argparse.Namespace) -> int:
    from rhosr.onnx_export import export_onnx
    from rhosr.onnx_runtime import ONNX_FILE
    from rhosr.predict import model_folder

    folder = model_folder(args.model)
    worst = export_onnx(folder)
    print(f"{folder / ONNX_FILE}: written; largest relative difference from PyTorch {worst:.1e}")
    return 0
