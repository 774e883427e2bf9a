"""The training run's best model: a Lightning callback that, after each validation, exports the
model (``rhosr.checkpoint.save_model``) when its validation Err_rho is the lowest so far, with
everything ``model.json`` records about the run. Kept apart from ``rhosr.checkpoint`` so that
loading a model for prediction never imports Lightning (4 s here).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from rhosr.checkpoint import save_model


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
        upscale = model.upscale
        if self.train_elements is None:
            self.train_elements = _train_elements(trainer)
        save_model(self.folder, model, {
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
    from rhosr.molecule import element_counts

    dataset = getattr(trainer.train_dataloader, "dataset", None)
    if dataset is None or not hasattr(dataset, "ids"):
        return None
    return element_counts(dataset.store.entry_meta(entry_id)["symbols"] for entry_id in dataset.ids)


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
