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

import lightning as L
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
    os.replace(tmp, folder / WEIGHTS)
    from rhosr.io import atomic_write

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


def validation_fingerprint(ids: list[str]) -> dict:
    """How many validation entries, and a hash of their sorted ids (to tell sets apart)."""
    import hashlib

    digest = hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:12]
    return {"n": len(ids), "sha1": digest}


class BestModelExporter(L.Callback):
    """After each validation, export the model if its validation Err_rho is the best so far."""

    def __init__(self, folder: Path, config, store_meta: dict, store_path: str,
                 val_ids: list[str] | None = None):
        self.folder = Path(folder)
        self.config = config
        self.store_meta = store_meta
        self.store_path = store_path
        self.validation = validation_fingerprint(val_ids or [])
        self.best = float("inf")
        self.train_elements: dict[str, int] | None = None  # counted once: the training set is fixed

    def state_dict(self) -> dict:
        return {"best": self.best, "validation": self.validation}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the best error, unless it was measured on other validation molecules."""
        if state_dict.get("validation") == self.validation:
            self.best = state_dict.get("best", float("inf"))
        else:  # a best on another set cannot be compared: the next validation becomes the best
            self.best = float("inf")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        err = trainer.callback_metrics.get("val_err")
        if err is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        err = float(err)
        if err >= self.best:
            return
        self.best = err
        from rhosr.grid import FINE_KE_CUTOFF, coarse_spacing, plane_wave_spacing
        from rhosr.store import package_versions

        model = getattr(pl_module.model, "_orig_mod", pl_module.model)  # torch.compile wrapper
        upscale = model.config.upscale
        if self.train_elements is None:
            self.train_elements = _train_elements(trainer)
        save_model(self.folder, model, {
            "input": self.config.input,
            "grid": {"upscale": upscale, "coarse_spacing_bohr": coarse_spacing(upscale),
                     "fine_spacing_bohr": plane_wave_spacing(FINE_KE_CUTOFF),
                     "margin_angstrom": self.store_meta.get("margin_angstrom", 4.0)},
            "preset": self.store_meta.get("preset"),
            "training": self.config.to_dict(), "val_err": err, "validation": self.validation,
            "train_entries": _train_entries(trainer), "train_elements": self.train_elements,
            "step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
            "train_seconds": _train_seconds(trainer), "hardware": describe_hardware(trainer),
            "store": self.store_path, "versions": package_versions(),
        })


def _train_entries(trainer) -> int | None:
    """How many training entries the run's loader reads (the store may have grown since)."""
    loader = trainer.train_dataloader
    dataset = getattr(loader, "dataset", None)
    return None if dataset is None else len(dataset)


def _train_elements(trainer) -> dict[str, int] | None:
    """For each element, how many training molecules contain it (predict warns on the others)."""
    dataset = getattr(trainer.train_dataloader, "dataset", None)
    if dataset is None or not hasattr(dataset, "ids"):
        return None
    counts: dict[str, int] = {}
    for entry_id in dataset.ids:
        for symbol in set(dataset.store.entry_meta(entry_id)["symbols"]):
            counts[symbol] = counts.get(symbol, 0) + 1
    return dict(sorted(counts.items()))


def _train_seconds(trainer) -> float | None:
    """Wall time spent training so far, summed over resumed runs (Lightning's Timer)."""
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    return None if timer is None else float(timer.time_elapsed("train"))


def describe_hardware(trainer=None) -> str:
    """CPU model and threads, or the GPU name, of this process."""
    import platform

    if trainer is not None and trainer.strategy.root_device.type == "cuda":
        return f"{trainer.world_size} x {torch.cuda.get_device_name(trainer.strategy.root_device)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    processes = 1 if trainer is None else trainer.world_size
    return f"CPU {cpu}, {torch.get_num_threads()} threads x {processes} process(es)"
