"""Train a model on a GPU from the committed QM9 packs: no store, no PySCF, no Zarr.

The lent GPU machine has PyTorch but neither PySCF nor Zarr, and the working tree that travels
there is at most 64 MiB, so a store (~5 MB a molecule) cannot go. The packs can
(``data/packs/qm9_fast``, ~35 KB a molecule): each record's label is rendered from its orbitals
by :func:`rhosr.orbital_density.render_density_tensor` (no PySCF; checked against the record's
probe points, as ``rhosr store unpack`` checks it), and the model's inputs and the fine-mesh
array of its base (the fitted prior) are built from the atoms by the package's own builders, in
worker processes. ASE, which the package needs for its atoms, travels as a wheel.

Training is plain PyTorch, the recipe of the config (``rhosr train`` runs the same one through
Lightning): Adam with its ``lr`` and ``betas``, a linear warm-up over ``--warmup`` steps from
``warmup_factor``, then a cosine to zero; gradient clipping at ``gradient_clip_val``; an
exponential moving average of the weights (``ema_decay``), which is what is validated and saved;
batch 1, one of the 24 proper grid rotations per step (``augment``); the config's loss (Err_rho,
or Huber with ``loss_delta``); bf16 autocast (``--precision``). The cosine runs over whichever of
``--steps`` or ``--minutes`` ends first (``--minutes`` bounds the wall time of training, so a run
on a machine lent for minutes still ends its schedule). Every ``--every`` seconds the average is
scored on the validation molecules (Err_rho %, the fine mesh, rescaled to N_e); the best is saved
as a model folder (``model.json`` + ``model.safetensors``) that ``rhosr evaluate --model`` reads,
with ``log.json`` beside it (the validation curve and the training Err_rho).

    # here, once: the ASE wheel (pure Python) for the GPU machine
    python -m pip download --no-deps --only-binary=:all: -d .whl ase==3.29.0
    # there (carry .whl):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 benchmarks/gpu_train.py --config qm9_unet --out $OUT/qm9_unet
    # a CPU smoke test here:
    python benchmarks/gpu_train.py --config qm9_unet --train 3 --validation 2 --steps 6 --every 1 \\
        --device cpu --precision fp32 --out /tmp/gpu_train_smoke

Molecules: the first ``--train`` of ``--train-ids`` and the first ``--validation`` of
``--validation-ids`` (default: those of the shipped ``qm9_unet`` run), read from the packs.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT / "src") not in sys.path:  # the package need not be installed on the GPU machine
    sys.path.insert(0, str(ROOT / "src"))

RUN_IDS = HERE / "results" / "training" / "qm9_unet"
_WORKER: dict = {}

LABEL_TOLERANCE_PERCENT = 0.05
"""How far (%) a rendered label may be from its record's probe points. Looser than ``rhosr store
unpack``'s check (which renders as the labeller did, with PySCF): here the exact float32
evaluation of :mod:`rhosr.orbital_density` meets labels PySCF's multigrid evaluated (~0.003%
apart); 0.001-0.005% was seen on QM9 records."""


ARRAYS = ("inputs", "label", "fine")


def _init_worker(model_dict: dict, basis: dict, scratch: str | None = None) -> None:
    import torch

    from rhosr.model import model_config

    torch.set_num_threads(1)
    _WORKER["config"] = model_config(model_dict)
    _WORKER["basis"] = basis
    _WORKER["scratch"] = scratch


def prepare_to_files(record_bytes: bytes) -> dict:
    """:func:`prepare`, its arrays written as ``.npy`` files in the worker's scratch folder
    (their paths in place of the arrays) instead of ~15 MB a molecule pickled through the pool's
    pipe. (With the pipe, building the sets on the GPU machine took 185 s for 1,100 molecules with
    two runs at once and 8 workers each, against ~0.35 s of one core's work a molecule here.)"""
    item = prepare(record_bytes)
    for key in ARRAYS:
        if item[key] is not None:
            path = Path(_WORKER["scratch"]) / f"{item['id']}.{key}.npy"
            np.save(path, item[key])
            item[key] = str(path)
    return item


def prepare(record_bytes: bytes) -> dict:
    """One pack record -> inputs ``(C, X, Y, Z)``, base array ``(uX, uY, uZ)`` and label
    ``(uX, uY, uZ)`` (float32, e/Bohr^3), N_e, fine voxel volume (Bohr^3), and the label's
    difference from the record's probe points (%)."""
    import torch

    from rhosr.grid import BOHR_ANGSTROM, Grid
    from rhosr.inputs import entry_molecule, model_inputs
    from rhosr.orbital_density import render_density_tensor
    from rhosr.packs import PROBE_STRIDE, parse_record

    config = _WORKER["config"]
    record = parse_record(record_bytes)
    meta = record.meta
    mol = entry_molecule(meta)
    grid = Grid.from_dict(meta["grid"])
    label = render_density_tensor(
        list(mol.symbols), np.asarray(mol.positions_angstrom) / BOHR_ANGSTROM, _WORKER["basis"],
        grid.lengths, grid.fine_mesh, orbitals=record.orbitals.astype(np.float64),
        occupations=record.occupations, dtype=torch.float32).numpy()
    probe = label[::PROBE_STRIDE, ::PROBE_STRIDE, ::PROBE_STRIDE]
    probe_diff = 100.0 * float(np.abs(probe - record.label_probe).sum() / np.abs(record.label_probe).sum())
    fine = config.build_fine(mol, grid)
    return {"id": record.id, "inputs": model_inputs(config.builders, mol, grid), "label": label,
            "fine": None if fine is None else np.asarray(fine, np.float32),
            "n_electrons": float(meta["n_electrons"]), "voxel_volume": grid.voxel_volume("fine"),
            "symbols": list(mol.symbols), "probe_diff": probe_diff}


def load_records(pack_dir: Path, ids: list[str]) -> tuple[list[bytes], dict]:
    """The records of ``ids`` (in that order) from the packs under ``pack_dir``, and the basis."""
    from rhosr.errors import InputError
    from rhosr.packs import basis_of, pack_files, read_packs

    packs = read_packs(pack_files([pack_dir]))
    records = {k: v for p in packs for k, v in p.records.items()}
    missing = [i for i in ids if i not in records]
    if missing:
        raise InputError(f"{pack_dir}: {len(missing)} molecules are not in the packs (first {missing[0]})")
    return [records[i] for i in ids], basis_of(packs)


def build_set(records: list[bytes], model_dict: dict, basis: dict, workers: int, device, what: str) -> list:
    """The prepared molecules, their arrays on ``device``. Workers hand their arrays over as
    files in a scratch folder (in memory, ``/dev/shm``, where there is one)."""
    import tempfile

    import torch
    from tqdm import tqdm

    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="gpu_train_", dir=shm if shm.is_dir() else None) as scratch:
        out = []
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(model_dict, basis, scratch))
        with pool:
            for item in tqdm(pool.map(prepare_to_files, records, chunksize=4), total=len(records), desc=what,
                             mininterval=10, file=sys.stdout):
                if item["probe_diff"] > LABEL_TOLERANCE_PERCENT:
                    raise SystemExit(f"{item['id']}: rendered label is {item['probe_diff']:.3g} % "
                                     "off its probe")
                for key in ARRAYS:
                    if item[key] is not None:
                        path = Path(item[key])
                        item[key] = np.load(path)
                        path.unlink()
                out.append(item)
    for item in out:  # after the workers are gone: they were forked from a process without CUDA
        for key in ARRAYS:
            if item[key] is not None:
                item[key] = torch.as_tensor(item[key]).to(device)
    return out


def tensors(item: dict, rotation=None):
    """``(inputs (1, C, X, Y, Z), fine (1, 1, ...) or None, label (1, 1, ...))``, rotated."""
    from rhosr.grid import rotate_grid

    x, fine, label = item["inputs"], item["fine"], item["label"][None]
    if rotation is not None:
        x, label = rotate_grid(x, *rotation), rotate_grid(label, *rotation)
        fine = None if fine is None else rotate_grid(fine, *rotation)
    fine = None if fine is None else fine[None, None].contiguous()
    return x[None].contiguous(), fine, label[None].contiguous()


def base_error(item: dict) -> float:
    """Err_rho (%) of the base alone (its fine array, ReLU, rescaled to N_e)."""
    import torch

    from rhosr.layers import normalize
    from rhosr.train import density_loss

    n_e, dv = (torch.tensor([item[k]], dtype=torch.float64, device=item["fine"].device)
               for k in ("n_electrons", "voxel_volume"))
    rho = normalize(torch.relu(item["fine"])[None, None], n_e, dv)
    return 100 * float(density_loss(rho, item["label"][None, None], dv, n_e))


def validate(model, items: list, autocast) -> float:
    import torch

    from rhosr.train import density_loss

    errs = []
    with torch.no_grad(), autocast():
        for item in items:
            x, fine, label = tensors(item)
            n_e, dv = (torch.tensor([item[k]], dtype=torch.float64, device=x.device)
                       for k in ("n_electrons", "voxel_volume"))
            pred = model(x, n_e, dv, fine).float()
            errs.append(100 * float(density_loss(pred, label, dv, n_e)))
    return float(np.mean(errs))


def with_changes(config: dict, changes: list[str]) -> dict:
    """``config`` with each ``KEY=VALUE`` of ``changes`` set (dotted keys, YAML values)."""
    import yaml

    config = copy.deepcopy(config)
    for change in changes:
        key, _, value = change.partition("=")
        *path, last = key.split(".")
        node = config
        for part in path:
            node = node[part]
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML reads 5e-4 (no dot) as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        node[last] = parsed
    return config


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="qm9_unet",
                    help="training config: a YAML file or a shipped config's name")
    ap.add_argument("--init", default=None,
                    help="model folder to start from (default: the config's own start)")
    ap.add_argument("--packs", type=Path, default=ROOT / "data" / "packs" / "qm9_fast")
    ap.add_argument("--train-ids", type=Path, default=RUN_IDS / "train_ids.json")
    ap.add_argument("--validation-ids", type=Path, default=RUN_IDS / "validation_ids.json")
    ap.add_argument("--train", type=int, default=1000, help="training molecules (the list's first N)")
    ap.add_argument("--validation", type=int, default=100, help="validation molecules (the list's first N)")
    ap.add_argument("--steps", type=int, default=100_000, help="optimizer steps at most")
    ap.add_argument("--minutes", type=float, default=6.0, help="wall time of training at most")
    ap.add_argument("--warmup", type=int, default=500, help="warm-up steps")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the config's)")
    ap.add_argument("--every", type=float, default=45.0, help="seconds between validations")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change the config: a dotted key and a YAML value, "
                         "e.g. model.trunk.channels=[32,64,128]")
    ap.add_argument("--out", type=Path, required=True, help="model folder to write (with log.json)")
    args = ap.parse_args(argv)

    import torch

    from rhosr.checkpoint import load_weights_into, read_description, save_model
    from rhosr.grid import ROTATIONS
    from rhosr.model import build_model, count_parameters
    from rhosr.train import TrainConfig, objective_loss

    t_start = time.perf_counter()
    cfg = TrainConfig.load(args.config)
    if args.set:
        cfg = TrainConfig.from_dict(with_changes(cfg.to_dict(), args.set))
    model_dict = cfg.model_config.to_dict()
    train_ids = json.loads(args.train_ids.read_text())[: args.train]
    val_ids = json.loads(args.validation_ids.read_text())[: args.validation]
    records, basis = load_records(args.packs, train_ids + val_ids)
    device = torch.device(args.device)
    train = build_set(records[: len(train_ids)], model_dict, basis, args.workers, device, "train set")
    val = build_set(records[len(train_ids):], model_dict, basis, args.workers, device, "validation set")
    prep_seconds = time.perf_counter() - t_start
    print(f"data: {len(train)} training, {len(val)} validation molecules in {prep_seconds:.0f} s", flush=True)

    torch.manual_seed(args.seed)
    model = build_model(cfg.model_config)
    if args.init:
        load_weights_into(model, args.init)
    model = model.to(device).train()
    average = copy.deepcopy(model).eval()
    params, avg_params = list(model.parameters()), list(average.parameters())
    lr = args.lr or cfg.lr
    opt = torch.optim.Adam(params, lr=lr, betas=cfg.betas)
    decay = cfg.ema_decay or 0.0
    bf16 = args.precision == "bf16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    base_only = None if val[0]["fine"] is None else float(np.mean([base_error(i) for i in val]))
    curve = [{"step": 0, "seconds": 0.0, "val_err": validate(average, val, autocast)}]
    print(f"step 0: validation Err_rho {curve[0]['val_err']:.4f} % (base alone {base_only} %)", flush=True)
    best = (curve[0]["val_err"], 0)

    meta = read_description(ROOT / "src" / "rhosr" / "pretrained" / "qm9-unet").to_dict()
    for key in ("model", "test"):
        meta.pop(key, None)
    training = cfg.to_dict()
    training["lr"] = lr
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    elements: dict[str, int] = {}
    for item in train:
        for s in set(item["symbols"]):
            elements[s] = elements.get(s, 0) + 1
    meta.update({"training": training, "hardware": f"{name}, {args.precision}, benchmarks/gpu_train.py",
                 "train_entries": len(train), "train_elements": elements, "store": "packs qm9_fast",
                 "validation": {"n": len(val), "ids": "first of " + args.validation_ids.name}})

    def save_best(err: float, at_step: int, seconds: float) -> None:
        meta.update({"val_err": err, "step": at_step, "epoch": at_step // max(1, len(train)),
                     "train_seconds": seconds})
        save_model(args.out, average, meta)

    def write_log(curve: list, steps: int, seconds: float) -> dict:
        result = {"config": args.config, "changes": args.set, "parameters": count_parameters(model),
                  "train": len(train), "validation": len(val), "steps": steps,
                  "train_seconds": round(seconds, 1), "prep_seconds": round(prep_seconds, 1),
                  "steps_per_second": round(steps / max(seconds, 1e-9), 2),
                  "base_only_val_err": base_only, "best_val_err": best[0], "best_step": best[1], "lr": lr,
                  "precision": args.precision, "device": name, "curve": curve}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "log.json").write_text(json.dumps(result, indent=1) + "\n")
        return result

    rng = np.random.default_rng(args.seed)
    budget = 60.0 * args.minutes
    t0 = last_val = time.perf_counter()
    step, order, recent = 0, [], []
    while step < args.steps:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget:
            break
        if not order:
            order = list(rng.permutation(len(train)))
        item = train[order.pop()]
        rotation = ROTATIONS[int(rng.integers(len(ROTATIONS)))] if cfg.augment else None
        x, fine, label = tensors(item, rotation)
        n_e, dv = (torch.tensor([item[k]], dtype=torch.float64, device=device)
                   for k in ("n_electrons", "voxel_volume"))
        progress = min(1.0, max(step / args.steps, elapsed / budget))
        if step < args.warmup:
            factor = cfg.warmup_factor + (1.0 - cfg.warmup_factor) * step / args.warmup
        else:
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr * factor
        with autocast():
            pred = model(x, n_e, dv, fine).float()
        loss = objective_loss(pred, label, dv, n_e, cfg.loss_delta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(params, cfg.gradient_clip_val)
        opt.step()
        with torch.no_grad():
            if decay:
                torch._foreach_lerp_(avg_params, params, 1.0 - decay)
            else:
                torch._foreach_copy_(avg_params, params)
        step += 1
        recent.append(loss.detach())
        now = time.perf_counter()
        if now - last_val >= args.every or now - t0 >= budget or step == args.steps:
            train_err = 100 * float(torch.stack(recent).mean()) if cfg.loss_delta is None else None
            recent = []
            err = validate(average, val, autocast)
            curve.append({"step": step, "seconds": round(now - t0, 1), "val_err": err, "train_err": train_err,
                          "lr": lr * factor})
            print(f"step {step} ({now - t0:.0f} s, {step / (now - t0):.1f} steps/s): validation Err_rho "
                  f"{err:.4f} %, training {train_err if train_err is None else round(train_err, 4)} %",
                  flush=True)
            if err < best[0]:
                best = (err, step)
                save_best(err, step, now - t0)
            write_log(curve, step, now - t0)
            last_val = time.perf_counter()
    train_seconds = time.perf_counter() - t0
    if best[1] == 0:  # nothing beat the start: save the start, so the folder always exists
        save_best(best[0], 0, train_seconds)

    result = write_log(curve, step, train_seconds)
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}), flush=True)
    return result


if __name__ == "__main__":
    main()
