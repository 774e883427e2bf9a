"""A fitted prior alone on held-out molecules: Err_rho of the prior of a training config (base
``fitted_prior``, coefficients from ``rhosr fit-prior``) and of the SAD, rescaled to N_e, on a
split of a store; the mean, median, worst, how many molecules are worse than their SAD, the
worst molecules, the mean by the number of 3-membered rings a molecule has (strained rings
are where a prior fitted mostly on unstrained bonds misses most), and the mean of the molecules
with an atom or bond kind the fit never saw against the others (the prior leaves such atoms at
their SAD). What ``rhosr fit-prior --check`` prints for validation, for any split.

    python benchmarks/prior_heldout.py --store STORE --config FITTED.yaml [--split test] [--md OUT.md]
    python benchmarks/prior_heldout.py --store STORE --config FITTED.yaml --split train --kinds-only
(``--kinds-only``: only which molecules have kinds the fit never saw; no densities, seconds.)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
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
    ap.add_argument("--kinds-only", action="store_true",
                    help="only list the molecules with atom or bond kinds the fit never saw")
    args = ap.parse_args(argv)

    from rhosr.prior import held_out_errors
    from rhosr.store import DatasetStore
    from rhosr.train import TrainConfig

    base = TrainConfig.load(args.config).model_config.base
    ids = DatasetStore.open(args.store).entry_ids(args.split)[:args.limit]
    if not ids:
        raise SystemExit(f"prior_heldout: the store has no entries in the split {args.split!r} "
                         "(train, validation, test)")
    molecules = entry_molecules(args.store, ids)
    unseen = [unseen_kinds(mol, base.options) for mol in molecules]
    if args.kinds_only:
        print(f"{sum(bool(u) for u in unseen)} of {len(ids)} {args.split} molecules have kinds "
              f"{Path(args.config).name} never saw:")
        for i, kinds in zip(ids, unseen):
            if kinds:
                print(f"- {i}: {', '.join(kinds)}")
        return {"ids": ids, "unseen_kinds": unseen}
    sad, prior = (np.array(e) for e in held_out_errors(args.store, ids, base.options))
    rings = np.array([three_rings(mol) for mol in molecules])
    has = np.array([bool(u) for u in unseen], dtype=bool)
    counts = Counter(k for kinds in unseen for k in kinds)
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
        "",
        "Molecules with an atom or bond kind the fit never saw (an atom kind one bonded neighbour",
        "from a fitted kind is read as that kind, `rhosr.prior.NEAREST_MAX_CHANGE`; the prior leaves",
        "the atoms of the others and of unseen bonds, their neighbours and the atoms all of whose",
        "neighbours are such at their SAD):",
        "",
        "| unseen kinds | molecules | prior: mean | worst | SAD: mean |",
        "|---|---|---|---|---|",
        *(f"| {label} | {mask.sum()} | {prior[mask].mean():.3f}% | {prior[mask].max():.2f}% "
          f"| {sad[mask].mean():.3f}% |" for label, mask in (("none", ~has), ("some", has)) if mask.any()),
        "",
        "Unseen kinds (molecules): " + (", ".join(f"`{k}` ({n})" for k, n in sorted(counts.items()))
                                        if counts else "none") + ".",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md is not None:
        args.md.write_text(text)
    out = {"ids": ids, "sad": sad, "prior": prior, "three_rings": rings, "unseen_kinds": unseen}
    if args.json is not None:
        args.json.write_text(json.dumps({k: v if k in ("ids", "unseen_kinds") else np.asarray(v).tolist()
                                         for k, v in out.items()}))
    return out


def entry_molecules(store_path: str, ids: list[str]) -> list:
    """The placed molecules of the store entries ``ids``."""
    from rhosr.inputs import entry_molecule
    from rhosr.store import DatasetStore

    store = DatasetStore.open(store_path)
    return [entry_molecule(store.entry_meta(i)) for i in ids]


def three_rings(mol) -> int:
    """The number of 3-membered rings of a molecule's bond graph."""
    from rhosr.prior import bonds, small_rings

    return sum(len(ring) == 3 for ring in small_rings(bonds(mol)))


def unseen_kinds(mol, options) -> list[str]:
    """The atom kinds and bond kinds of ``mol`` (elements of ``options.elements`` only) that
    the fitted ``options`` have no coefficients for, sorted; lobe and ring terms, which follow
    from an atom's or a bond's kind, are not listed."""
    from rhosr.prior import sites

    known_atoms, known_bonds = set(options.atom_rows), set(options.bond_kinds)
    return sorted({s.row for s in sites(mol, options)
                   if ">" not in s.row and s.row not in (known_atoms if s.position is None else known_bonds)})


if __name__ == "__main__":
    main()
