"""What each kind of term of the fitted prior buys: Err_rho of the SAD and of the prior
(rescaled to N_e) on held-out validation molecules, for prior variants fitted on the same
training molecules (``rhosr.prior.fit_prior``, the code ``rhosr fit-prior`` runs).

Variants: per-element radial terms (the default), per atom kind (``typed``: element and bonded
neighbours), per element plus one term at each bond's midpoint, per kind plus terms at 1/4, 1/2
and 3/4 of each bond (the ``bonded_prior`` of the accuracy ablation), and that with five
positions, with six bond exponents, or with lone-pair and pi lobes (with 3, 5 or 7 positions).

    python benchmarks/prior_variants.py --store STORE [--train 100] [--validation 100] [--l1-iterations N]

Training and validation molecules: the first of ``benchmarks/ablation/``'s lists.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "prior_variants.md"
VARIANTS = {
    "elements": {},
    "typed": {"typed": True},
    "elements + bond midpoints": {"bond_positions": (0.5,)},
    "typed + 3 bond positions": {"typed": True, "bond_positions": (0.25, 0.5, 0.75)},
    "typed + 5 bond positions": {"typed": True, "bond_positions": (1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6)},
    "typed + 3 bond positions, 6 bond exponents": {"typed": True, "bond_positions": (0.25, 0.5, 0.75),
                                                   "bond_exponents": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)},
    "typed + 3 bond positions + lobes": {"typed": True, "bond_positions": (0.25, 0.5, 0.75),
                                         "lobe_distances": (0.7, 1.4), "bond_pi_distances": (0.8,)},
    "typed + 5 bond positions + lobes": {"typed": True, "bond_positions": (1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6),
                                         "lobe_distances": (0.7, 1.4), "bond_pi_distances": (0.8,)},
    "typed + 7 bond positions + lobes": {"typed": True, "bond_positions": tuple(k / 8 for k in range(1, 8)),
                                         "lobe_distances": (0.7, 1.4), "bond_pi_distances": (0.8,)},
}


def main(argv: list[str] | None = None) -> list[tuple]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--validation", type=int, default=100)
    ap.add_argument("--only", nargs="*", default=None, choices=list(VARIANTS))
    ap.add_argument("--ids", type=Path, default=HERE / "ablation",
                    help="folder with train_ids.json and validation_ids.json (default: the ablation's)")
    ap.add_argument("--l1-iterations", type=int, default=0,
                    help="least-absolute-deviation passes after the least-squares fit (rhosr fit-prior's)")
    ap.add_argument("--md", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    from rhosr.prior import PriorOptions, fit_prior, held_out_errors

    train = json.loads((args.ids / "train_ids.json").read_text())[: args.train]
    val = json.loads((args.ids / "validation_ids.json").read_text())[: args.validation]
    rows = []
    for name in args.only or VARIANTS:
        t0 = time.perf_counter()
        fitted = fit_prior(args.store, train, PriorOptions(**VARIANTS[name]), progress=False,
                           l1_iterations=args.l1_iterations)
        options = fitted["options"]
        sad, prior = held_out_errors(args.store, val, options)
        n = len(options.exponents) * len(options.atom_rows) + sum(map(len, options.bond_coefficients))
        rows.append((name, n, np.mean(fitted["prior_err"]), np.mean(sad), np.mean(prior), np.max(prior),
                     sum(p < s for p, s in zip(prior, sad))))
        print(f"{name}: {n} coefficients, validation prior {rows[-1][4]:.2f}% "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    l1_flag = f" --l1-iterations {args.l1_iterations}" if args.l1_iterations else ""
    lines = [
        "# Fitted prior variants",
        "",
        f"Command: `python benchmarks/prior_variants.py --store STORE --train {args.train} --validation "
        f"{args.validation}{l1_flag}`; a `fast` QM9 store; fitted on the first {len(train)} training "
        f"molecules of `benchmarks/ablation/train_ids.json`, Err_rho (rescaled to N_e) on the first "
        f"{len(val)} validation molecules of `benchmarks/ablation/validation_ids.json`.",
        "",
        "| prior | coefficients | training Err_rho | validation: SAD | validation: prior | worst "
        "| better than the SAD |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r[0]} | {r[1]} | {r[2]:.2f}% | {r[3]:.2f}% | {r[4]:.2f}% | {r[5]:.2f}% "
          f"| {r[6]} of {len(val)} |" for r in rows],
    ]
    args.md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
