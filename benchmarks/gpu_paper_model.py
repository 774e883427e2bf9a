"""The paper-size model on a GPU (issue B, item 5): training steps and inference on a QM9 box.

Runs on the lent GPU machine, which has torch but neither PySCF nor Zarr: the data is one real
QM9 training entry exported here to ``benchmarks/data/qm9_box.npz`` (coarse SAD, fine ``fast``
DFT label stored as float16 to halve the file, electron count, fine voxel volume), and only
``rhosr.model`` is imported (which needs neither). Configs whose base or inputs need more than
the stored SAD (``sad_fine``, ``sad_elements``) do not run here.

- Training: ``--steps`` Adam steps (lr ``--lr``, betas 0.9/0.99, the paper's loss
  integral |rho - rho_ref| / N_e) on that box with random proper rotations off, in bf16 autocast
  (``--precision bf16``) or fp32; seconds per step after ``--warmup`` steps, steps/s, peak
  memory, and the loss of the first and last five steps (it must fall).
- Inference: ``--infer`` forward passes without autograd: seconds per molecule, molecules/min,
  peak memory.

    # here, once (needs the store):
    python benchmarks/gpu_paper_model.py --export STORE
    # on the GPU machine:
    python3 benchmarks/gpu_paper_model.py --device cuda
    # a CPU smoke test:
    python benchmarks/gpu_paper_model.py --device cpu --config tiny --steps 3 --precision fp32

Prints one JSON object and writes results/gpu_paper_model.md (or ``--md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
DATA = HERE / "data" / "qm9_box.npz"


def import_model_module():
    """``rhosr.model`` of this checkout (it imports neither PySCF nor ASE, which the GPU machine
    lacks; the package need not be installed there)."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    import rhosr.model as model_module

    return model_module


def export_entry(store_path: str, path: Path) -> None:
    """Write the first training entry (in the split's order) of a store with a coarse mesh of at
    least 48 points on every axis, as the benchmark's box."""
    from rhosr.evaluation import in_split_order
    from rhosr.grid import Grid
    from rhosr.store import DatasetStore

    store = DatasetStore.open(store_path)
    for entry_id in in_split_order(store.entry_ids("train"), "train"):
        meta = store.entry_meta(entry_id)
        grid = Grid.from_dict(meta["grid"])
        if min(grid.coarse_mesh) >= 48:
            entry = store.read_entry(entry_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, sad=np.asarray(entry.sad, np.float32),
                                label=np.asarray(entry.label, np.float16),  # halves the file
                                n_electrons=meta["n_electrons"], voxel_volume=grid.voxel_volume("fine"),
                                id=entry_id)
            print(f"exported {entry_id} (coarse mesh {grid.coarse_mesh}) to {path}")
            return
    raise SystemExit(f"{store_path}: no training entry with a coarse mesh >= 48 per axis")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", metavar="STORE",
                    help="write benchmarks/data/qm9_box.npz from a store, then stop")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--config", default="paper_qm9",
                    help="a config in src/rhosr/configs by name, or a YAML file (its model; its inputs "
                         "must be the SAD alone and its base none or sad_linear)")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--infer", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--md", type=Path, default=HERE / "results" / "gpu_paper_model.md")
    args = ap.parse_args()
    if args.export:
        export_entry(args.export, DATA)
        return
    model_module = import_model_module()
    config_path = Path(args.config)
    if not config_path.suffix:
        config_path = SRC / "rhosr" / "configs" / f"{args.config}.yaml"
    config = yaml.safe_load(config_path.read_text())["model"]
    device = args.device
    torch.manual_seed(0)
    model = model_module.build_model(config).to(device)
    data = np.load(DATA)
    sad = torch.from_numpy(data["sad"])[None, None].to(device)
    label = torch.from_numpy(data["label"].astype(np.float32))[None, None].to(device)
    n_e = torch.tensor([float(data["n_electrons"])], dtype=torch.float64, device=device)
    dv = torch.tensor([float(data["voxel_volume"])], dtype=torch.float64, device=device)
    def autocast():
        return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for _ in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        with autocast():
            pred = model(sad, n_e, dv)
        loss = ((pred.float() - label).abs().sum().double() * dv / n_e).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(100 * float(loss.detach()))
    train_peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    step_s = float(np.mean(times[args.warmup:]))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    infer = []
    with torch.no_grad():
        for _ in range(args.infer + 1):
            sync(device)
            t0 = time.perf_counter()
            with autocast():
                model(sad, n_e, dv)
            sync(device)
            infer.append(time.perf_counter() - t0)
    infer_s = float(np.mean(infer[1:]))
    infer_peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "config": args.config,
        "parameters": sum(p.numel() for p in model.parameters()), "precision": args.precision,
        "entry": str(data["id"]), "coarse_mesh": list(data["sad"].shape),
        "train_seconds_per_step": step_s, "train_steps_per_second": 1 / step_s,
        "train_peak_memory_gib": train_peak, "loss_first5_pct": first, "loss_last5_pct": last,
        "loss_fell": last < first, "infer_seconds_per_molecule": infer_s,
        "molecules_per_minute": 60 / infer_s, "infer_peak_memory_gib": infer_peak,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(
        "# Paper-size model on a GPU: training steps and inference on one QM9 box\n\n"
        f"Command: `python {' '.join(sys.argv)}`\n\n```json\n{json.dumps(result, indent=1)}\n```\n"
    )


if __name__ == "__main__":
    main()
