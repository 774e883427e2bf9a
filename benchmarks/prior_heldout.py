"""A fitted prior alone on held-out molecules: Err_rho of the prior of a training config (base
``fitted_prior``, coefficients from ``rhosr fit-prior``) and of the SAD, rescaled to N_e, on a
split of a store; the mean, median, worst, how many molecules are worse than their SAD, the
worst molecules, and the mean by the number of 3-membered rings a molecule has (strained rings
are where a prior fitted mostly on unstrained bonds misses most). What ``rhosr fit-prior
--check`` prints for validation, for any split.

    python benchmarks/prior_heldout.py --store STORE --config FITTED.yaml [--split test] [--md OUT.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--config", required=True, help="training config whose base is a fitted fitted_prior")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="the split's first N molecules")
    ap.add_argument("--worst", type=int, default=8)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the per-molecule errors here")
    args = ap.parse_args(argv)

    from rhosr.prior import held_out_errors
    from rhosr.store import DatasetStore
    from rhosr.train import TrainConfig

    base = TrainConfig.load(args.config).model_config.base
    ids = DatasetStore.open(args.store).entry_ids(args.split)[:args.limit]
    sad, prior = (np.array(e) for e in held_out_errors(args.store, ids, base.options))
    rings = np.array(three_rings(args.store, ids))
    lines = [
        f"# The prior of {Path(args.config).name} alone on the {args.split} split",
        "",
        f"Command: `python benchmarks/prior_heldout.py --store STORE --config {args.config} --split "
        f"{args.split}" + (f" --limit {args.limit}" if args.limit else "") + "`; Err_rho rescaled to N_e.",
        "",
        "| molecules | prior: mean | median | worst | worse than their SAD | SAD: mean |",
        "|---|---|---|---|---|---|",
        f"| {len(ids)} | {prior.mean():.3f}% | {np.median(prior):.3f}% | {prior.max():.2f}% "
        f"| {int((prior > sad).sum())} | {sad.mean():.3f}% |",
        "",
        "Worst molecules (prior, SAD):",
        "",
        *(f"- {ids[i]}: {prior[i]:.2f}%, {sad[i]:.2f}%" for i in np.argsort(-prior)[:args.worst]),
        "",
        "By the number of 3-membered rings:",
        "",
        "| 3-rings | molecules | prior: mean | worst | SAD: mean |",
        "|---|---|---|---|---|",
        *(f"| {n} | {(rings == n).sum()} | {prior[rings == n].mean():.3f}% | {prior[rings == n].max():.2f}% "
          f"| {sad[rings == n].mean():.3f}% |" for n in sorted(set(rings.tolist()))),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md is not None:
        args.md.write_text(text)
    out = {"ids": ids, "sad": sad, "prior": prior, "three_rings": rings}
    if args.json is not None:
        args.json.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in out.items()}))
    return out


def three_rings(store_path: str, ids: list[str]) -> list[int]:
    """Per store entry, the number of 3-membered rings of its bond graph."""
    from rhosr.inputs import entry_molecule
    from rhosr.prior import bonds, small_rings
    from rhosr.store import DatasetStore

    store = DatasetStore.open(store_path)
    return [sum(len(ring) == 3 for ring in small_rings(bonds(entry_molecule(store.entry_meta(i)))))
            for i in ids]


if __name__ == "__main__":
    main()
