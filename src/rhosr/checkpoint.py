"""Self-describing models: weights in safetensors beside a JSON that says how to use them.

A model folder holds ``model.safetensors`` (the ``SRResNet3D`` state dict, nothing
executable) and ``model.json``: ``model`` (the :class:`ModelConfig`), ``input`` (``sad`` or
``sad_atrocious``), ``grid`` (upscale, coarse and fine plane-wave spacing in Bohr, box margin),
``preset`` (the DFT settings of the labels it learned), ``training`` (the training config),
``val_err`` (validation Err_rho in percent), ``train_elements`` (element -> number of training
molecules that contain it), ``step``, ``epoch``, ``store`` and ``versions``.
Loading builds the network from ``model`` with :func:`rhosr.model.build_model` and nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rhosr.errors import InputError
from rhosr.model import SRResNet3D, build_model

WEIGHTS = "model.safetensors"
META = "model.json"


def save_model(folder: str | os.PathLike, model: SRResNet3D, meta: dict) -> None:
    """Write ``model.safetensors`` and ``model.json`` (each atomically)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS}.part"
    save_file(state, str(tmp))
    from rhosr.io import atomic_write, new_file_mode

    os.chmod(tmp, new_file_mode())  # safetensors makes it 0600
    os.replace(tmp, folder / WEIGHTS)

    with atomic_write(folder / META) as fh:
        json.dump({"model": model.config.to_dict(), **meta}, fh, indent=2)


def load_model(folder: str | os.PathLike, device: str = "cpu") -> tuple[SRResNet3D, dict]:
    """The model of a folder written by :func:`save_model`, in eval mode, and its metadata."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / META).exists() or not (folder / WEIGHTS).exists():
        raise InputError(f"{folder}: not a rhosr model folder ({META} + {WEIGHTS})")
    meta = json.loads((folder / META).read_text())
    model = build_model(meta["model"])
    model.load_state_dict(load_file(str(folder / WEIGHTS), device="cpu"))
    return model.to(device).eval(), meta


def load_weights_into(model: SRResNet3D, source: str | os.PathLike) -> None:
    """Initialise ``model`` from a model folder, a shipped model's name (``qm9-small``) or a
    Lightning ``.ckpt`` (fine-tuning)."""
    source = Path(source)
    if not source.exists() and source.suffix != ".ckpt":
        from rhosr.predict import model_folder

        source = model_folder(str(source))  # a shipped model's name, or a one-line error
    if source.is_dir():
        trained, _ = load_model(source)
        state = trained.state_dict()
    elif source.suffix == ".ckpt":
        ckpt = torch.load(source, map_location="cpu", weights_only=True)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    else:
        raise InputError(f"{source}: --init takes a model folder, a shipped model's name or a .ckpt")
    own = model.state_dict()
    if set(state) == set(own) and any(state[k].shape != own[k].shape for k in own):
        state = widen_state(state, own, source)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise InputError(f"{source}: weights do not fit this model config ({reason})") from None


def widen_state(old: dict, new: dict, source: str | os.PathLike = "weights") -> dict:
    """Weights of a trained model carried into a wider one (more ``num_feat``), computing the
    same function: every tensor's leading block is the trained one; in convolution weights the
    trained output channels ignore the added input channels (zeros there); the added output
    channels keep ``new``'s fresh initialisation. The added features therefore never reach the
    output until training moves those zeros, and training continues from where it stood
    (function-preserving widening, as in Net2Net, Chen et al. 2016). Channel ``c*8 + s`` of an
    upsampling convolution is sub-voxel ``s`` of feature ``c``, so trained features stay leading
    there too. Any other difference (layers, kernel sizes) is an error."""
    if set(old) != set(new):
        missing = sorted(set(old) ^ set(new))[:3]
        raise InputError(f"{source}: cannot widen: the layers differ ({', '.join(missing)}); "
                         "only num_feat may grow")
    out = {}
    for key, target in new.items():
        trained = old[key]
        if trained.dim() != target.dim() or any(a > b for a, b in zip(trained.shape, target.shape)):
            raise InputError(f"{source}: cannot widen {key} from {tuple(trained.shape)} to "
                             f"{tuple(target.shape)}; only num_feat may grow")
        widened = target.clone()
        if trained.dim() == 5:
            widened[: trained.shape[0], trained.shape[1]:] = 0
        widened[tuple(slice(0, n) for n in trained.shape)] = trained
        out[key] = widened
    return out
