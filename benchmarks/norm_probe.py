"""Which model variant learns fastest on a CPU: crop training, whole-box evaluation.

Trains each variant for the same number of steps on periodic crops of a store's training
entries (all 24 rotations, loss on the crop core) and reports Err_rho on whole boxes of a few
held-out *training-split* entries (never the test split) - the question MEASUREMENTS.md left
open: instance-norm models trained on crops failed on whole boxes.

    OMP_NUM_THREADS=1 python benchmarks/norm_probe.py STORE --steps 150 --holdout 12
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rhosr.data import ROTATIONS, rotate_grid
from rhosr.grid import Grid
from rhosr.model import build_model
from rhosr.store import DatasetStore
from rhosr.train import density_loss

VARIANTS = {
    "instance": dict(norm="instance", residual_sad=False),
    "none": dict(norm="none", residual_sad=False),
    "none+residual": dict(norm="none", residual_sad=True),
    "instance+residual": dict(norm="instance", residual_sad=True),
}


def load(store, ids):
    out = []
    for entry_id in ids:
        e = store.read_entry(entry_id, ("sad", "label"))
        g = Grid.from_dict(store.entry_meta(entry_id)["grid"])
        out.append(
            (
                torch.as_tensor(np.asarray(e.sad, np.float32))[None, None],
                torch.as_tensor(np.asarray(e.label, np.float32))[None, None],
                float(store.entry_meta(entry_id)["n_electrons"]),
                g.voxel_volume("fine"),
            )
        )
    return out


def crop(sample, size, rng):
    sad, label, n_e, dv = sample
    start = [int(rng.integers(n)) for n in sad.shape[2:]]
    ci = [torch.as_tensor((s + np.arange(size)) % n) for s, n in zip(start, sad.shape[2:])]
    fi = [torch.as_tensor((2 * s + np.arange(2 * size)) % (2 * n)) for s, n in zip(start, sad.shape[2:])]
    c = sad[:, :, ci[0]][:, :, :, ci[1]][..., ci[2]]
    f = label[:, :, fi[0]][:, :, :, fi[1]][..., fi[2]]
    perm, signs = ROTATIONS[int(rng.integers(24))]
    return rotate_grid(c, perm, signs), rotate_grid(f, perm, signs), n_e, dv


def whole(sample, rng):
    sad, label, n_e, dv = sample
    perm, signs = ROTATIONS[int(rng.integers(24))]
    return rotate_grid(sad, perm, signs), rotate_grid(label, perm, signs), n_e, dv


@torch.no_grad()
def whole_box_err(model, samples):
    errs = []
    for sad, label, n_e, dv in samples:
        pred = model(sad, torch.tensor([n_e]), torch.tensor([dv]))
        errs.append(100 * float(density_loss(pred, label, torch.tensor([dv]), torch.tensor([n_e]))))
    return float(np.mean(errs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--holdout", type=int, default=12)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--halo", type=int, default=6)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--loss", choices=("l1", "l2"), default="l1",
                    help="l2: train on the squared error (the metric stays Err_rho)")
    ap.add_argument("--whole", action="store_true", help="train on whole boxes (batch 1) instead of crops")
    ap.add_argument("--feat", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=8)
    args = ap.parse_args()
    store = DatasetStore.open(args.store)
    ids = store.entry_ids("train")
    train, held = load(store, ids[: -args.holdout]), load(store, ids[-args.holdout :])
    base = dict(num_feat=args.feat, kernel_first=3, kernel=3, num_block=args.blocks, num_up=1)
    print(
        f"{len(train)} train / {len(held)} held-out train-split entries; crop {args.crop}, "
        f"halo {args.halo}, batch {args.batch}, {args.steps} steps, lr {args.lr}"
    )
    print("| variant | whole-box Err_rho at step 0 | at end | last crop loss | s/step |")
    print("|---|---|---|---|---|")
    for name in args.variants:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = build_model({**base, **VARIANTS[name]})
        err0 = whole_box_err(model.eval(), held)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
        model.train()
        t0, losses = time.perf_counter(), []
        for _ in range(args.steps):
            if args.whole:
                batch = [whole(train[int(rng.integers(len(train)))], rng)]
            else:
                picks = rng.integers(len(train), size=args.batch)
                batch = [crop(train[int(i)], args.crop, rng) for i in picks]
            sad = torch.cat([b[0] for b in batch])
            label = torch.cat([b[1] for b in batch])
            dv = torch.tensor([b[3] for b in batch], dtype=torch.float64)
            n_e = torch.tensor([b[2] for b in batch], dtype=torch.float64)
            pred = model(sad, n_e, dv) if args.whole else model(sad)  # crops: N_e unknown
            loss = density_loss(pred, label, dv, n_e, core=0 if args.whole else 2 * args.halo)
            if args.loss == "l2":
                sq = ((pred - label) ** 2).sum(dim=(1, 2, 3, 4)).double() * dv / n_e
                (1e3 * sq.mean()).backward()  # the L1 value is still what is reported
                opt.step()
                opt.zero_grad()
                sched.step()
                losses.append(100 * loss.item())
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(100 * loss.item())
        per_step = (time.perf_counter() - t0) / args.steps
        err = whole_box_err(model.eval(), held)
        print(
            f"| {name} | {err0:.2f}% | {err:.2f}% | {np.mean(losses[-20:]):.2f}% | {per_step:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
