"""Accuracy ablation (issue G): each lever alone, on one fixed budget of data and CPU time.

Every variant trains from scratch with ``rhosr train`` on the same training molecules and is
validated on the same validation molecules (both lists fixed in ``benchmarks/ablation/``,
written from the store's train and validation entries the first time; test entries are never
read), on ``--threads`` threads for ``--budget-s`` seconds of training. The budget becomes a
step count: each variant's seconds per step are measured first (one step on each of 10
molecules spread over the training list, each read once before, so the inputs computed from the
atoms are cached as in a long run), and its cosine schedule is laid over the steps that fit.
One "epoch" is 100 steps (``limit_train_batches``), the warm-up one epoch (two for ``recipe``),
four validations per run. ``--plan-only`` measures and fixes every run's steps without
training, so that all runs are planned under the same load.

Each run lives in ``RUNS/NAME`` and resumes (``rhosr train --resume``) when the script is run
again; a finished run keeps ``result.json`` (best validation Err_rho, parameters, steps,
measured seconds per step, wall and CPU seconds of training). The table is written to
``benchmarks/results/accuracy_ablation.md`` from every finished run.

Run: ``python benchmarks/accuracy_ablation.py --store STORE [--only NAME ...] [--budget-s 3600]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
IDS = HERE / "ablation"
RESULTS = HERE / "results" / "accuracy_ablation.md"
STEPS_PER_EPOCH = 100
VALIDATIONS = 4
PRIOR_MOLECULES = 100

SHIPPED_MODEL = {"inputs": ["sad"],
                 "trunk": {"name": "srresnet", "num_feat": 8, "kernel_first": 3, "kernel": 3,
                           "num_block": 6, "num_up": 1, "norm": "none"},
                 "base": "sad_linear"}
UNET_TRUNK = {"name": "unet", "channels": [16, 32, 64], "blocks": 1, "kernel": 3, "num_up": 1}
ELEMENTS = {"name": "sad_elements", "elements": ["H", "C", "N", "O", "F"]}
SHIPPED_RECIPE = {"lr": 5e-4, "warmup_factor": 0.01, "warmup_epochs": 1}
NEW_RECIPE = {"lr": 1e-3, "warmup_factor": 0.01, "warmup_epochs": 2, "warmup_shape": "linear",
              "gradient_clip_val": 10.0}


BONDED_PRIOR = {"name": "fitted_prior", "typed": True, "bond_positions": [0.25, 0.5, 0.75]}
SAME_NETWORK = {"bonded_prior": "fitted_prior", "ema": "shipped", "sad_fine": "shipped",
                "recipe": "shipped"}
"""A run whose network is another run's takes that run's measured seconds per step, so that a
plan made later, under another load, gets the same steps: the bonded prior and the fine-mesh
SAD change only what the data path computes (the measurement excludes computing the inputs;
the base adds one fine-mesh array to the output), the recipe only the learning rate and a
gradient-norm clip, the moving average only an average of 37k weights per step."""


def variant(model_changes: dict | None = None, recipe: dict | None = None) -> dict:
    model = copy.deepcopy(SHIPPED_MODEL)
    model.update(model_changes or {})
    return {"model": model, **(recipe or SHIPPED_RECIPE)}


VARIANTS = {
    "shipped": ("the shipped config (qm9_small: flat SRResNet 8 ch, 6 blocks, K 3; base: coarse SAD "
                "interpolated; input: SAD)", variant()),
    "unet": ("trunk: periodic U-Net 16/32/64", variant({"trunk": UNET_TRUNK})),
    "sad_fine": ("base: SAD evaluated on the fine mesh", variant({"base": "sad_fine"})),
    "sad_elements": ("inputs: SAD + one SAD channel per element (H, C, N, O, F)",
                     variant({"inputs": ["sad", ELEMENTS]})),
    "fitted_prior": ("base: SAD + per-element radial corrections fitted by least squares to 100 of the "
                     "training labels",
                     variant({"base": "fitted_prior"})),
    "bonded_prior": ("base: the fitted prior with atom kinds (element and bonded neighbours) and "
                     "terms at 1/4, 1/2 and 3/4 of each bond, fitted to 100 of the training labels",
                     variant({"base": BONDED_PRIOR})),
    "recipe": ("recipe: lr 1e-3, 200-step linear warm-up, gradient-norm clipping at 10",
               variant(recipe=NEW_RECIPE)),
    "ema": ("recipe: the shipped one, validating and keeping an exponential moving average of the "
            "weights (decay 0.995 per step)", variant(recipe={**SHIPPED_RECIPE, "ema_decay": 0.995})),
}


def fixed_ids(store: str, n_train: int) -> tuple[list[str], list[str]]:
    """The ablation's training and validation ids, written once and then always read."""
    from rhosr.store import DatasetStore

    IDS.mkdir(exist_ok=True)
    paths = IDS / "train_ids.json", IDS / "validation_ids.json"
    if not all(p.exists() for p in paths):
        s = DatasetStore.open(store)
        train, val = sorted(s.entry_ids("train")), sorted(s.entry_ids("validation"))
        if len(train) < n_train:
            sys.exit(f"the store has {len(train)} train entries; the ablation needs {n_train}")
        paths[0].write_text(json.dumps(train[:n_train]))
        paths[1].write_text(json.dumps(val))
    return tuple(json.loads(p.read_text()) for p in paths)


def seconds_per_step(store: str, config: dict, train_ids: list[str], val_ids: list[str],
                     n: int = 10) -> float:
    """Mean seconds of one training step (read, forward, loss, backward, Adam) on ``n``
    molecules spread evenly over the training list (QM9 is ordered by size), each read once
    before it is timed."""
    import statistics

    import torch

    from rhosr.train import DensityModule, TrainConfig, density_loss, make_loaders

    cfg = TrainConfig.from_dict(config)
    loader, _ = make_loaders(store, cfg, val_ids[:1], train_ids[::max(1, len(train_ids) // n)][:n])
    data = loader.dataset
    module = DensityModule(cfg.to_dict())
    opt = torch.optim.Adam(module.parameters(), lr=1e-5)
    times = []
    for rep in range(2):
        for i in range(len(data)):
            t0 = time.perf_counter()
            b = {k: (v[None] if torch.is_tensor(v) else v) for k, v in data[(i, rep)].items()}
            opt.zero_grad(set_to_none=True)
            pred = module(b["inputs"], b["n_electrons"], b["voxel_volume"], b.get("fine"))
            density_loss(pred, b["label"], b["voxel_volume"], b["n_electrons"]).backward()
            opt.step()
            if rep:
                times.append(time.perf_counter() - t0)
    return statistics.mean(times)


GROUPS = {"name": "sad_groups", "groups": [1, 14, 15, 16, 17]}


COMBINATIONS = ("best", "best_unet")
"""``best``: every lever that helped, together. ``best_unet``: the same with the U-Net trunk
when the U-Net alone did not beat the shipped config in one hour (its learning curve was still
falling steeply where the SRResNet's had flattened; a long training run may rank them the other
way): it says what the trunk is worth among the other levers."""


def best_variant(runs: Path, unet: bool = False, without: tuple[str, ...] = ()) -> tuple[str, dict]:
    """Every lever whose run beat the shipped config's best validation Err_rho, together: the
    U-Net trunk; the best of the bases (sad_fine, fitted_prior, bonded_prior); per-group SAD
    channels for the per-element ones (the same channels on QM9, tested; on elements QM9 never
    had they take their group mate's channel); the recipe; the moving average. Needs every
    single-lever result but those of ``without`` (levers left out, named in the description).
    ``unet``: the U-Net trunk whether or not it helped alone (``best_unet``)."""
    results = {}
    for n in VARIANTS:
        if n in without:
            continue
        path = runs / n / "result.json"
        if not path.exists():
            sys.exit(f"best: run {n} has not finished; the combination needs every lever's result")
        results[n] = json.loads(path.read_text())
    shipped = results["shipped"]["best_val_err"]
    helped = {n for n, r in results.items() if n != "shipped" and r["best_val_err"] < shipped}
    model = copy.deepcopy(SHIPPED_MODEL)
    recipe = dict(SHIPPED_RECIPE)
    chosen = []
    if unet and "unet" in helped:
        sys.exit("best_unet: the U-Net helped alone, so best has it already")
    if "unet" in helped or unet:
        model["trunk"] = UNET_TRUNK
        chosen.append("U-Net" if not unet else "U-Net (which alone did not help)")
    bases = sorted((results[n]["best_val_err"], n) for n in ("sad_fine", "fitted_prior", "bonded_prior")
                   if n in helped)
    if bases:
        name = bases[0][1]
        model["base"] = results[name]["config"]["model"]["base"]  # the fitted coefficients too
        chosen.append(f"base {name}")
    if "sad_elements" in helped:
        model["inputs"] = ["sad", GROUPS]
        chosen.append("per-group SAD channels")
    if "recipe" in helped:
        recipe = dict(NEW_RECIPE)
        chosen.append("recipe")
    if "ema" in helped:
        recipe["ema_decay"] = 0.995
        chosen.append("EMA")
    left_out = f" ({', '.join(without)} left out: not finished when this run was planned)" if without else ""
    return (f"the levers that helped, together: {', '.join(chosen) or 'none'}{left_out}",
            {"model": model, **recipe})


def fitted_base(store: str, ids: list[str], base: dict) -> dict:
    """The ``fitted_prior`` base ``base`` (its options; defaults of rhosr.prior) fitted to the
    labels of ``ids``."""
    from rhosr.prior import PriorOptions, fit_prior

    options = PriorOptions(**{k: v for k, v in base.items() if k != "name"})
    fitted = fit_prior(store, ids, options)
    print(f"[fitted_prior] SAD {sum(fitted['sad_err']) / len(ids):.2f}% -> prior "
          f"{sum(fitted['prior_err']) / len(ids):.2f}% on {len(ids)} training molecules", flush=True)
    return {"name": "fitted_prior", **fitted["options"].to_dict()}


def run_variant(name: str, store: str, runs: Path, budget_s: float, threads: int,
                train_ids: list[str], val_ids: list[str], plan_only: bool = False,
                without: tuple[str, ...] = ()) -> dict | None:
    import yaml

    run_dir = runs / name
    result_path = run_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    plan_path = run_dir / "plan.json"
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
    else:
        description, config = (best_variant(runs, unet=name == "best_unet", without=without)
                               if name in COMBINATIONS else VARIANTS[name])
        base = config["model"]["base"]
        if base == "fitted_prior" or (isinstance(base, dict) and base.get("name") == "fitted_prior"
                                      and "coefficients" not in base):  # fitted once, on 100 molecules
            config = copy.deepcopy(config)
            config["model"]["base"] = fitted_base(store, train_ids[:PRIOR_MOLECULES],
                                                  base if isinstance(base, dict) else {})
        config = {**config, "augment": True, "batch_size": 1, "seed": 0,
                  "limit_train_batches": STEPS_PER_EPOCH, "checkpoint_every_n_steps": 50,
                  "log_every_n_steps": 10}
        same = SAME_NETWORK.get(name)
        planned = [runs / same / f for f in ("plan.json", "result.json")] if same else []
        planned = [p for p in planned if p.exists()]
        if planned:  # one network, one step time
            s_step = json.loads(planned[0].read_text())["seconds_per_step"]
        else:
            s_step = seconds_per_step(store, {**config, "epochs": 4, "val_every_n_epochs": 4},
                                      train_ids, val_ids)
        epochs = max(VALIDATIONS, round(budget_s / s_step / STEPS_PER_EPOCH / VALIDATIONS) * VALIDATIONS)
        config.update(epochs=epochs, val_every_n_epochs=epochs // VALIDATIONS)
        plan = {"name": name, "description": description, "seconds_per_step": s_step,
                "config": config, "wall_s": 0.0, "cpu_s": 0.0}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (run_dir / "train_ids.json").write_text(json.dumps(train_ids))
        (run_dir / "validation_ids.json").write_text(json.dumps(val_ids))
        plan_path.write_text(json.dumps(plan, indent=1))
    print(f"[{name}] {plan['seconds_per_step']:.2f} s/step -> {plan['config']['epochs'] * STEPS_PER_EPOCH} "
          f"steps", flush=True)
    if plan_only:
        return None
    resume = (run_dir / "checkpoints" / "last.ckpt").exists()
    cmd = [sys.executable, "-m", "rhosr", "train", "--store", store, "--config", str(run_dir / "config.yaml"),
           "--out", str(run_dir), "--no-progress", "--accelerator", "cpu", *(["--resume"] if resume else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    plan["wall_s"] += time.time() - t0
    plan["cpu_s"] += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    plan_path.write_text(json.dumps(plan, indent=1))
    if proc.returncode:
        sys.exit(f"[{name}] rhosr train exited {proc.returncode}; run the script again to resume")
    result_path.write_text(json.dumps({**plan, **summarise(run_dir)}, indent=1))
    if RESULTS.parent.is_dir():  # the committed record of each finished run
        (RESULTS.parent / "ablation").mkdir(exist_ok=True)
        (RESULTS.parent / "ablation" / f"{name}.json").write_text(result_path.read_text())
    return json.loads(result_path.read_text())


def trained_seconds(run_dir: Path) -> float:
    """Wall seconds of ``rhosr train`` on the run, summed over every resumed segment (its
    Lightning Timer in ``last.ckpt``; this script's own clock misses segments cut by a kill)."""
    import torch

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    timer = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))
    return float(timer["time_elapsed"]["train"])


def summarise(run_dir: Path) -> dict:
    """Best and last validation Err_rho, steps and parameters of a finished run."""
    from rhosr.checkpoint import load_model
    from rhosr.run_metrics import read_metrics

    rows = read_metrics(run_dir / "logs")  # every segment of a resumed run
    val = [(int(r["step"]), float(r["val_err"])) for r in rows if r.get("val_err")]
    train = [float(r["train_err"]) for r in rows if r.get("train_err")]
    model, _ = load_model(str(run_dir / "best"))
    return {"train_seconds": trained_seconds(run_dir), "val_errs": val,
            "best_val_err": min(e for _, e in val), "last_val_err": val[-1][1],
            "last_train_err_mean10": sum(train[-10:]) / max(1, len(train[-10:])),
            "steps": max(int(r["step"]) for r in rows) + 1,
            "parameters": sum(p.numel() for p in model.parameters())}


def write_table(runs: Path, n_train: int, n_val: int, budget_s: float, threads: int) -> None:
    results = [json.loads((runs / n / "result.json").read_text()) for n in [*VARIANTS, *COMBINATIONS]
               if (runs / n / "result.json").exists()]
    lines = [
        "# Accuracy ablation: each lever alone on one budget",
        "",
        f"Every run trains from scratch with `rhosr train` on the same {n_train} QM9 training molecules "
        f"and is validated on the same {n_val} validation molecules (`fast` labels, seeded split; the "
        "lists are in `benchmarks/ablation/`), whole boxes, one of the 24 rotations at random per step, "
        f"batch 1, on {threads} thread(s), for about {budget_s / 3600:g} hour(s) of training each: the "
        "step count is the budget over the seconds per step measured before the run, and the cosine "
        "schedule ends at it. Validation Err_rho on whole boxes, the best of the four validations. "
        "Training wall: `rhosr train`'s own clock over every resumed segment, on a machine that ran "
        "two of these runs (and other work) side by side, so longer than the budget; the steps are "
        "what is fixed.",
        "",
        "| run | change | parameters | s/step | steps | training wall | best validation Err_rho | "
        "last training Err_rho |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {r['description']} | {r['parameters']:,} | "
                     f"{r['seconds_per_step']:.2f} | "
                     f"{r['steps']} | {r.get('train_seconds', r['wall_s']) / 60:.0f} min | "
                     f"{r['best_val_err']:.2f}% | {r['last_train_err_mean10']:.2f}% |")
    lines += ["", "Command: `python benchmarks/accuracy_ablation.py --store STORE` (a `fast` QM9 store "
              "from `scripts/label_qm9.sh`)."]
    RESULTS.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--runs", default="runs/ablation", help="folder of the runs")
    parser.add_argument("--only", nargs="*", default=None, choices=sorted([*VARIANTS, *COMBINATIONS]),
                        help="these runs (default: every lever; 'best' combines those that helped "
                             "and needs their results; 'best_unet' is best with the U-Net trunk)")
    parser.add_argument("--budget-s", type=float, default=3600.0, help="training seconds per run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=350)
    parser.add_argument("--without", nargs="*", default=(), choices=sorted(VARIANTS),
                        help="levers 'best' leaves out because their runs have not finished (its "
                             "description names them; by default 'best' needs every lever's result)")
    parser.add_argument("--plan-only", action="store_true",
                        help="measure each run's seconds per step and fix its steps, train nothing "
                             "(to plan every run under the same load)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    train_ids, val_ids = fixed_ids(args.store, args.n_train)
    runs = Path(args.runs)
    for name in args.only or VARIANTS:
        r = run_variant(name, args.store, runs, args.budget_s, args.threads, train_ids, val_ids,
                        args.plan_only, tuple(args.without))
        if r is None:
            continue
        print(f"[{name}] best validation Err_rho {r['best_val_err']:.2f}% after {r['steps']} steps",
              flush=True)
        write_table(runs, len(train_ids), len(val_ids), args.budget_s, args.threads)


if __name__ == "__main__":
    main()
