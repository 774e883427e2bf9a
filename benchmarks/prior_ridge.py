"""What the penalties of ``rhosr fit-prior --ridge/--smooth`` buy: the fitted prior's Err_rho
(rescaled to N_e) on held-out molecules, its mean and its tail (the worst molecule, how many are
worse than their SAD), for each combination of ridges and smoothness penalties, all fitted by
least squares to the same training molecules.

Terms a fraction of a bond apart are nearly collinear; unpenalised least squares gives them large
coefficients of alternating signs that cancel on the training molecules' bonds and not on every
held-out molecule's. The ridge shrinks every coefficient; the smoothness penalty the differences
between neighbouring positions along a bond (both relative to the terms' own weights in the
normal equations, ``rhosr.prior.solve_normal``).

The normal equations are summed once (what one least-squares pass of ``rhosr fit-prior`` costs)
and solved for every ridge; each held-out molecule's design is built once and every ridge's
prior evaluated from it. ``--system FILE`` keeps the summed equations (``.npz``) so a second run
with other ridges or held-out molecules skips the sum.

    python benchmarks/prior_ridge.py --store STORE --config CONFIG [--train 200] [--validation 100]
        [--test 0] [--ridges 0 1e-4 1e-3 1e-2 1e-1] [--smooth 0] [--system FILE] [--md OUT.md]

CONFIG: a training config whose base is ``fitted_prior`` (its coefficients, if any, are ignored).
Training molecules: the seeded sample ``rhosr fit-prior --molecules N`` takes; validation and test
molecules: the first N of those splits. Choose the ridge on validation; the test columns are
there to see the tail on molecules no choice looked at.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def held_out(store_path: str, ids: list[str], system, coefficients: list[np.ndarray],
             what: str) -> tuple[list[float], np.ndarray, list[str]]:
    """Per molecule: Err_rho (%) of the SAD, and of the prior of each coefficient vector
    (``(molecules, vectors)``), all rescaled to N_e as the model does."""
    from tqdm import tqdm

    from rhosr.grid import Grid
    from rhosr.inputs import entry_molecule
    from rhosr.prior import design, rescaled
    from rhosr.sad import sad_fine
    from rhosr.store import DatasetStore

    store = DatasetStore.open(store_path)
    sad_err, prior_err = [], []
    for entry_id in tqdm(ids, desc=what, unit="mol"):
        entry = store.read_entry(entry_id, ("label",))
        grid = Grid.from_dict(entry.meta["grid"])
        mol = entry_molecule(entry.meta)
        label = np.asarray(entry.label, np.float64)
        dv, n_e = grid.voxel_volume("fine"), mol.n_valence
        sad = sad_fine(mol, grid).astype(np.float64)
        sad_err.append(100 * np.abs(rescaled(sad, n_e, dv) - label).sum() * dv / n_e)
        cols, channels = design(mol, grid, "fine", system.options, system.index)
        d = channels.reshape(len(cols), -1)
        row = []
        for coeff in coefficients:
            prior = sad.ravel() + coeff[cols].astype(np.float32) @ d
            row.append(100 * np.abs(rescaled(prior, n_e, dv) - label.ravel()).sum() * dv / n_e)
        prior_err.append(row)
        del d, channels
    return sad_err, np.array(prior_err), list(ids)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--config", required=True, help="training config with base fitted_prior")
    ap.add_argument("--train", type=int, default=200, help="training molecules (fit-prior's sample)")
    ap.add_argument("--validation", type=int, default=100)
    ap.add_argument("--test", type=int, default=0)
    ap.add_argument("--ridges", type=float, nargs="+", default=[0.0, 1e-4, 1e-3, 1e-2, 1e-1])
    ap.add_argument("--smooth", type=float, nargs="+", default=[0.0])
    ap.add_argument("--system", type=Path, default=None, help=".npz cache of the normal equations")
    ap.add_argument("--md", type=Path, default=None, help="write the table here (Markdown)")
    ap.add_argument("--worst", type=int, default=5, help="list this many worst held-out molecules")
    args = ap.parse_args(argv)

    from rhosr.commands.fit_prior import train_sample
    from rhosr.prior import PriorSystem, solve_normal
    from rhosr.store import DatasetStore
    from rhosr.train import TrainConfig

    options = TrainConfig.load(args.config).model_config.base.options
    store = DatasetStore.open(args.store)
    train = train_sample(store, args.train)
    system = PriorSystem.of(args.store, train, options)
    key = hashlib.sha256(repr((train, options.to_dict(), sorted(system.index.items()))).encode()).hexdigest()
    t0 = time.perf_counter()
    cached = None
    if args.system is not None and args.system.exists():
        with np.load(args.system) as saved:
            if str(saved["key"]) == key:
                cached = saved["normal"], saved["rhs"]
    if cached is None:
        normal, rhs, _ = system.normal_equations()
        if args.system is not None:
            with open(args.system, "wb") as fh:
                np.savez(fh, key=key, normal=normal, rhs=rhs)
        print(f"normal equations of {len(train)} molecules: {time.perf_counter() - t0:.0f} s", flush=True)
    else:
        normal, rhs = cached
        print(f"normal equations read from {args.system}", flush=True)
    penalties = [(ridge, smooth) for smooth in args.smooth for ridge in args.ridges]
    pairs = system.neighbour_pairs()
    coefficients = [solve_normal(normal, rhs, ridge, smooth, pairs) for ridge, smooth in penalties]
    splits = [("validation", store.entry_ids("validation")[:args.validation])]
    if args.test:
        splits.append(("test", store.entry_ids("test")[:args.test]))
    results = {name: held_out(args.store, ids, system, coefficients, name) for name, ids in splits if ids}

    header = "| ridge | smooth | largest coefficient (abs.) |"
    rule = "|---|---|---|"
    for name, (_, _, ids) in results.items():
        header += (f" {name} ({len(ids)}): mean | median | worst | worse than SAD |")
        rule += "---|---|---|---|"
    lines = [
        "# Ridge of the fitted prior",
        "",
        f"Command: `python benchmarks/prior_ridge.py --store STORE --config {args.config} --train "
        f"{args.train} --validation {args.validation} --test {args.test} --ridges "
        f"{' '.join(f'{r:g}' for r in args.ridges)} --smooth {' '.join(f'{r:g}' for r in args.smooth)}`; "
        f"a `fast` QM9 store; least squares on {len(train)} "
        f"training molecules ({len(system.index)} coefficients); Err_rho of the prior rescaled to N_e.",
        "",
        *(f"SAD on {name}: mean {np.mean(sad):.2f}%." for name, (sad, _, _) in results.items()),
        "",
        header,
        rule,
    ]
    for k, (ridge, smooth) in enumerate(penalties):
        row = f"| {ridge:g} | {smooth:g} | {np.abs(coefficients[k]).max():.3g} |"
        for sad, prior, _ in results.values():
            errs = prior[:, k]
            row += (f" {errs.mean():.3f}% | {np.median(errs):.3f}% | {errs.max():.2f}% "
                    f"| {int(np.sum(errs > np.asarray(sad)))} |")
        lines.append(row)
    for name, (sad, prior, ids) in results.items():
        lines += ["", f"Worst {name} molecules (Err_rho % in the table's row order, SAD last):", ""]
        for i in np.argsort(-prior.max(axis=1))[:args.worst]:
            lines.append(f"- {ids[i]}: " + ", ".join(f"{e:.2f}" for e in prior[i]) + f"; SAD {sad[i]:.2f}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md is not None:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
