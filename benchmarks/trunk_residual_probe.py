"""Can a trunk learn what its base misses? A probe of the residual ``label - base`` (issue G).

A model with a ``fitted_prior`` base predicts ``ReLU(base + trunk(inputs))`` rescaled to N_e;
all the trunk has to learn is the residual ``label - base`` (e/Bohr^3 on the fine mesh). This
script trains a fresh trunk of a config on that residual alone, on the first ``--molecules``
training entries of a store (no augmentation, one molecule per step, Adam with betas 0.9/0.99,
a 20-step linear warm-up, gradient norm clipped at 1), and prints every ``--every`` steps:

- ``obj``: the objective, ``--loss mse`` (mean squared error over the fine mesh divided by the
  residual's own mean square: 1.0 is what an all-zero trunk scores, below 1 the trunk explains
  part of the residual) or ``--loss l1`` (Err_rho of the rescaled prediction, a fraction);
- ``err``/``prior``: Err_rho (%) of the rescaled prediction and of the base alone.

``--output-scale S`` sets the model's ``output_scale`` (e/Bohr^3 per unit of the trunk's output,
:mod:`rhosr.model`): the residual against the QM9 prior is ~6e-4 e/Bohr^3 (rms). With
``--validation N`` the first N validation entries are scored at the end (test entries are never
read). ``--target prior-terms`` checks the trunk itself: with the SAD on the fine mesh as its
base, it learns the fitted prior's own terms (prior - SAD), a known smooth function of the atoms.

Run: ``python benchmarks/trunk_residual_probe.py --store STORE --config CONFIG --molecules 1
--steps 100 --loss mse --output-scale 1e-3``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from rhosr.data import DensityDataset
from rhosr.grid import Grid
from rhosr.inputs import entry_molecule
from rhosr.layers import normalize
from rhosr.model import build_model, model_config
from rhosr.sad import sad_fine
from rhosr.train import density_loss

WARMUP_STEPS = 20


def batched(item: dict) -> dict:
    return {k: (v[None] if torch.is_tensor(v) else v) for k, v in item.items()}


def step_terms(net, batch: dict, loss: str):
    """(objective tensor, Err_rho of the model, Err_rho of the base) for one molecule."""
    n_e, dv, label, base = batch["n_electrons"], batch["voxel_volume"], batch["label"], batch["fine"]
    trunk = net.scale_output(net.trunk(net.trunk_input(batch["inputs"])))
    pred = normalize(torch.relu(base + trunk), n_e, dv)
    err = density_loss(pred, label, dv, n_e)
    with torch.no_grad():
        prior = density_loss(normalize(torch.relu(base), n_e, dv), label, dv, n_e)
    if loss == "mse":
        residual = batch.get("target", label - base)
        objective = ((trunk - residual) ** 2).mean() / (residual**2).mean()
    else:
        objective = err
    return objective, float(err.detach()), float(prior)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--config", required=True, help="a training config whose model has a fine-mesh base")
    parser.add_argument("--molecules", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--loss", choices=("mse", "l1"), default="mse")
    parser.add_argument("--output-scale", type=float, default=1.0)
    parser.add_argument("--input-transform", choices=("none", "cbrt"), default=None,
                        help="override the config's model.input_transform")
    parser.add_argument("--target", choices=("residual", "prior-terms"), default="residual",
                        help="residual: label - base; prior-terms: the fitted prior's own terms "
                             "(prior - SAD on the fine mesh, a known function of the atoms), the "
                             "SAD as the base (a check that the trunk can learn such a function)")
    parser.add_argument("--validation", type=int, default=0)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = yaml.safe_load(open(args.config))["model"]
    if args.input_transform:
        model["input_transform"] = args.input_transform
    model["output_scale"] = args.output_scale
    config = model_config(model)
    if not config.needs_fine:
        raise SystemExit("error: the probe needs a model whose base reads a fine-mesh array")
    train = DensityDataset(args.store, "train", model=config, cache_bytes=8e9)
    def prepared(dataset, index: int) -> dict:
        item = batched(dataset[(index, 0)])
        if args.target == "prior-terms":
            if args.loss != "mse":
                raise SystemExit("error: --target prior-terms needs --loss mse")
            meta = dataset.store.entry_meta(item["id"])
            sad = torch.from_numpy(sad_fine(entry_molecule(meta), Grid.from_dict(meta["grid"])))
            sad = sad.to(item["fine"].dtype).reshape(item["fine"].shape)
            item["target"], item["fine"] = item["fine"] - sad, sad
        return item

    items = [prepared(train, i) for i in range(args.molecules)]
    net = build_model(config)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP_STEPS))
    print(f"# {config.describe()}; {args.molecules} molecules, loss {args.loss}, lr {args.lr:g}")
    start, log = time.time(), []
    for step in range(args.steps):
        objective, err, prior = step_terms(net, items[step % len(items)], args.loss)
        opt.zero_grad()
        objective.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        log.append((float(objective), 100 * err, 100 * prior))
        if (step + 1) % args.every == 0:
            obj, e, p = np.mean(log[-args.every:], axis=0)
            print(f"step {step + 1:5d}  obj {obj:.4f}  err {e:.3f}%  prior {p:.3f}%  "
                  f"{time.time() - start:.0f} s", flush=True)
    if args.validation:
        val = DensityDataset(args.store, "validation", model=config)
        with torch.no_grad():
            scores = np.array([[float(t) for t in step_terms(net, prepared(val, i), args.loss)]
                               for i in range(args.validation)])
        obj, e, p = scores.mean(axis=0)
        print(f"validation ({args.validation} molecules): obj {obj:.4f}  err {100 * e:.3f}%  "
              f"prior {100 * p:.3f}%")


if __name__ == "__main__":
    main()
