"""``rhosr train``: train or fine-tune a density model on a store (PyTorch Lightning)."""

from __future__ import annotations

import argparse
from pathlib import Path

SHIPPED_CONFIGS = ", ".join(sorted(p.stem for p in (Path(__file__).parents[1] / "configs").glob("*.yaml")))

DESCRIPTION = f"""\
Train the 3D super-resolution ResNet on a store's train entries, validating on its validation
entries (test entries are never read). CONFIG is a YAML file or the name of a shipped config:
{SHIPPED_CONFIGS}.
The run folder gets config.yaml, checkpoints/last.ckpt
(--resume continues from it: optimizer, scheduler, epoch and the samples it had reached; a config
that changes the run is refused, only num_workers and the checkpoint, logging and validation
intervals may differ), best/ (the model with
the lowest validation Err_rho: model.safetensors + model.json), metrics.csv, TensorBoard logs
and learning_curve.png. --init starts from a trained model (fine-tuning: the same recipe), e.g.
the shipped one on your own store: --init qm9-small --config qm9_small_restart.

Several GPUs or nodes: --devices N --strategy ddp (under torchrun or SLURM's srun, Lightning
picks up the ranks; see the documentation, Train and fine-tune)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="dataset store (rhosr label)")
    parser.add_argument("--config", required=True, help="YAML file or shipped config name")
    parser.add_argument("--out", default="runs/latest", help="run folder (default runs/latest)")
    parser.add_argument("--init", default=None,
                        help="model folder, shipped model name (qm9-small) or .ckpt to start from")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--devices", default="1", help="devices per node (int or 'auto')")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    parser.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, ...")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import re

    from rhosr.errors import InputError
    from rhosr.train import TrainConfig, train

    config = TrainConfig.load(args.config)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    if devices == 0 or not re.fullmatch(r"auto|-1|\d+|\d+(,\d+)*,?", str(devices)):
        raise InputError(f"--devices must be >= 1, 'auto', -1 (all) or a list of device ids like 0,1; "
                         f"got {args.devices!r}")
    _check_names(args.accelerator, args.strategy)
    _check_devices_exist(args.accelerator, devices)
    if args.num_nodes < 1:
        raise InputError(f"--num-nodes must be >= 1, got {args.num_nodes}")
    if args.max_steps < -1 or args.max_steps == 0:
        raise InputError(f"--max-steps must be >= 1 (or -1: the config's epochs), got {args.max_steps}")
    result = train(args.store, config, args.out, init=args.init, resume=args.resume, devices=devices,
                   accelerator=args.accelerator, strategy=args.strategy, num_nodes=args.num_nodes,
                   max_steps=args.max_steps, progress=not args.no_progress)
    best = result["best_val_err"]
    summary = f"best validation Err_rho {float(best):.3f} % " if best is not None else ""
    print(f"trained to step {result['global_step']}; {summary}-> {args.out}/best")
    return 0


def _check_devices_exist(accelerator: str, devices) -> None:
    """A GPU asked for must be visible to torch, and on the CPU ``--devices`` is a process count
    (>= 1 or 'auto'): checked now rather than after the data is loaded."""
    import torch

    from rhosr.errors import InputError

    gpu = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not gpu:
        raise InputError(f"--accelerator {accelerator}: torch sees no GPU on this machine "
                         "(use --accelerator cpu or auto)")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not gpu)
    if on_cpu and not (devices == "auto" or (isinstance(devices, int) and devices >= 1)):
        raise InputError(f"--devices {devices}: on the CPU --devices is a number of processes "
                         "(>= 1) or 'auto'")


def _check_names(accelerator: str, strategy: str) -> None:
    """``--accelerator`` and ``--strategy`` must be names Lightning knows (checked now, not after
    the data is loaded)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    from rhosr.errors import InputError

    accelerators = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    if accelerator not in accelerators:
        raise InputError(f"--accelerator must be one of {', '.join(accelerators)}, got {accelerator!r}")
    if strategy != "auto" and strategy not in StrategyRegistry.available_strategies():
        raise InputError(f"--strategy must be auto or one of Lightning's (ddp, ddp_spawn, fsdp, ...), "
                         f"got {strategy!r}")
