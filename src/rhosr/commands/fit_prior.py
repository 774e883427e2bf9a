"""``rhosr fit-prior``: fit the ``fitted_prior`` base of a training config to a store's labels."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Fit the corrections of the fitted_prior base to the DFT labels of a store's train entries, by
least squares over every fine-mesh point, and write CONFIG with the fitted coefficients filled
in as OUT (a training config for `rhosr train`). CONFIG's model must have base: fitted_prior;
its options choose the terms: per element radial Gaussians (the default: H, C, N, O, F and 8
exponents from 0.2 to 25.6 Bohr^-2), per atom kind (typed: true; C4, C3, O1, ...), terms along
bonds (bond_positions: [0.25, 0.5, 0.75]), off-atom lone-pair and pi terms (lobe_distances:
[0.7, 1.4], bond_pi_distances: [0.8], Bohr; need typed), terms beside the bent bonds of 3- and
4-membered rings (ring_distances: [0.7], Bohr; needs typed), a twin of every bond term that
grows with the bond's length (bond_length_slopes: true; aromatic, double and single bonds
between the same kinds differ). Prints Err_rho of the SAD and of the prior (rescaled to N_e) on
the fitted molecules and on validation molecules it did not see.

The least-squares fit is followed by --l1-iterations passes of iteratively reweighted least
squares towards the least absolute deviation, the metric Err_rho counts (on QM9 it lowers the
prior's validation Err_rho, see the README); each pass costs about what the first fit costs
(200 QM9 molecules, typed terms with 7 bond positions and lobes, 2 threads: 17 minutes for the
least-squares pass; an L1 pass with ring terms as well took 19). After each pass the
coefficients are saved beside OUT (OUT.partial.npz); the same command run again after an
interruption resumes after the last saved pass. --start FITTED continues a finished fit: it
skips the least-squares pass and runs --l1-iterations more passes from FITTED's coefficients
(FITTED may lack bond_length_slopes: those terms start at zero; kinds it lacks too); with
--l1-iterations 0 it writes FITTED's coefficients as they are, with the bond stretch ranges of
the molecules (below) and the checks.

With bond_length_slopes, OUT also records for each bond kind the range of bond stretches its
molecules have (bond_stretch_ranges): prediction clips a bond's stretch into that range, so a
slope fitted on some bond lengths is never extrapolated to others (on QM9, a seven-membered ring
of four nitrogens with C-N bonds longer than any fitted one: 4.5% Err_rho unclipped, 3.6%
clipped; docs/guide/models.md).

With many bond positions, neighbouring bond terms are nearly collinear: --ridge (or --smooth)
keeps their coefficients from growing large with alternating signs, which fit the training
molecules and fail on others (on QM9, 7 positions, no ridge: 8 of 250 test molecules worse than
their SAD; --ridge 1e-5: none). The validation check prints the median, the worst molecule and
how many are worse than their SAD: look at them before training on a prior."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="dataset store (rhosr label) with train entries")
    parser.add_argument("--config", required=True, help="training config (YAML or shipped name) "
                        "whose base is fitted_prior")
    parser.add_argument("--out", required=True, help="the training config to write (YAML)")
    parser.add_argument("--molecules", type=int, default=200,
                        help="train entries to fit on, a seeded random sample (default 200)")
    parser.add_argument("--check", type=int, default=20,
                        help="validation entries to report the prior's error on (default 20; 0: none)")
    parser.add_argument("--ids", default=None,
                        help="JSON file with the list of train entry ids to fit on (instead of a sample)")
    parser.add_argument("--l1-iterations", type=int, default=4,
                        help="least-absolute-deviation passes after the least-squares fit (default 4; "
                        "0: least squares only)")
    parser.add_argument("--l1-floor", type=float, default=None,
                        help="e/Bohr^3: a mesh point's L1 weight is 1 / max(|residual|, this) "
                        "(default 1e-05, rhosr.prior.L1_FLOOR)")
    parser.add_argument("--ridge", type=float, default=0.0,
                        help="penalty on each coefficient's size, relative to its term's own weight in "
                        "the fit (default 0)")
    parser.add_argument("--smooth", type=float, default=0.0,
                        help="penalty on the differences of a bond term between neighbouring positions "
                        "along the bond, relative to their weights in the fit (default 0). With many "
                        "bond positions, neighbouring terms are nearly collinear and an unpenalised fit "
                        "gives them large alternating coefficients that fail on other molecules; see "
                        "docs/guide/models.md for measured values")
    parser.add_argument("--start", default=None,
                        help="a config rhosr fit-prior wrote with the same terms (or the same without "
                        "bond_length_slopes): skip the least-squares fit and run the --l1-iterations "
                        "passes from its coefficients (a fit continued with more passes; 0 passes: "
                        "its coefficients as they are, re-checked)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_sample(store, n: int) -> list[str]:
    """``n`` train entries of ``store``, a sample seeded the same every time, in store order."""
    import numpy as np

    from rhosr.errors import InputError

    train = store.entry_ids("train")
    if not train:
        raise InputError(f"{store.path}: has no train entries to fit on")
    pick = np.random.default_rng(0).permutation(len(train))[:n]
    return [train[i] for i in sorted(pick)]


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import yaml

    from rhosr.errors import InputError
    from rhosr.io import atomic_write
    from rhosr.prior import L1_FLOOR, fit_prior
    from rhosr.store import DatasetStore
    from rhosr.train import TrainConfig

    config = TrainConfig.load(args.config)
    base = config.model_config.base
    if base.name != "fitted_prior":
        raise InputError(f"{args.config}: the model's base is {base.name}, not fitted_prior "
                         "(set model: base: fitted_prior)")
    args.l1_floor = L1_FLOOR if args.l1_floor is None else args.l1_floor
    if (args.molecules < 1 or args.check < 0 or args.l1_iterations < 0 or not 0 < args.l1_floor < 1
            or not 0 <= args.ridge < 1e6 or not 0 <= args.smooth < 1e6):
        raise InputError("--molecules must be >= 1, --check and --l1-iterations >= 0, --l1-floor in (0, 1), "
                         "--ridge and --smooth >= 0")
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give the path of the YAML file to write")
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    store = DatasetStore.open(args.store)
    if args.ids:
        try:
            ids = json.loads(Path(args.ids).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{args.ids}: not a readable JSON list of ids "
                             f"({exc.__class__.__name__})") from None
        train = set(store.entry_ids("train"))
        missing = [i for i in ids if i not in train] if isinstance(ids, list) else ["?"]
        if not isinstance(ids, list) or missing:
            raise InputError(f"{args.ids}: must list train entries of the store (a prior fitted to "
                             f"validation or test labels would leak them; first not a train entry: "
                             f"{missing[0]})")
        ids = ids[:args.molecules]
    else:
        ids = train_sample(store, args.molecules)
    start = None
    if args.start:
        start = TrainConfig.load(args.start).model_config.base
        if start.name != "fitted_prior" or not start.options.coefficients:
            raise InputError(f"{args.start}: not a fitted prior (a config written by rhosr fit-prior)")
        start = start.options
    partial = out.with_name(f"{out.name}.partial.npz")  # the passes so far: an interrupted fit resumes
    fitted = fit_prior(args.store, ids, base.options, progress=not args.no_progress,
                       l1_iterations=args.l1_iterations, l1_floor=args.l1_floor, checkpoint=partial,
                       ridge=args.ridge, smooth=args.smooth, start=start)
    if fitted["resumed"]:
        print(f"resumed after pass {fitted['resumed']} from {partial.name}")
    options = fitted["options"]
    fitted_here = bool(args.l1_iterations or not args.start)  # else no penalty was used
    n_ring = sum(">r" in row for row in options.atom_rows)
    n_lobe = sum(">" in row for row in options.atom_rows) - n_ring
    n_atom = len(options.atom_rows) - n_lobe - n_ring
    lines = [f"fitted on {len(ids)} train molecules: Err_rho SAD {np.mean(fitted['sad_err']):.2f}%, "
             f"prior {np.mean(fitted['prior_err']):.2f}% (mean); {n_atom} atom kinds, "
             f"{len(options.bond_kinds)} bond kinds" + (f", {n_lobe} lobe kinds" if n_lobe else "")
             + (f", {n_ring} ring kinds" if n_ring else "")
             + (f"; {args.l1_iterations} L1 passes" if args.l1_iterations
                else "; the coefficients as they are" if args.start else "; least squares")
             + (f" from {Path(args.start).name}" if args.start else "")
             + (f"; ridge {args.ridge:g}" if args.ridge and fitted_here else "")
             + (f"; smoothness {args.smooth:g}" if args.smooth and fitted_here else "")]
    if args.l1_iterations:
        lines.append("mean |label - prior| on them (Err_rho %, not rescaled) at the start of each L1 "
                     "pass: " + " -> ".join(f"{e:.2f}" for e in fitted["passes"][1:]))
    check = store.entry_ids("validation")[:args.check]
    if check:
        from rhosr.prior import held_out_errors

        sad, prior = held_out_errors(args.store, check, options)
        worse = [i for i, p, s in zip(check, prior, sad) if p > s]
        worst = int(np.argmax(prior))
        lines.append(f"on {len(check)} validation molecules: Err_rho SAD {np.mean(sad):.2f}%, "
                     f"prior {np.mean(prior):.2f}% (mean), {np.median(prior):.2f}% (median), worst "
                     f"{prior[worst]:.2f}% ({check[worst]}); worse than their SAD: {len(worse)}"
                     + (f" ({', '.join(worse[:5])}{', ...' if len(worse) > 5 else ''})" if worse else ""))
    seen = {row.rstrip("0123456789") for row, c in zip(options.atom_rows, options.coefficients) if any(c)}
    unseen = [e for e in options.elements if e not in seen]
    if unseen:
        lines.append(f"no train molecule has {', '.join(unseen)}: those atoms keep their SAD")
    data = config.to_dict()
    data["model"] = {**config.model_config.to_dict()}
    data["model"]["base"] = {"name": "fitted_prior", **options.to_dict()}
    TrainConfig.from_dict(data)  # what is written reads back
    header = [f"# Written by rhosr fit-prior from {Path(args.config).name} on the store "
              f"{Path(args.store).name}:",
              *(f"# {line}" for line in lines)]
    with atomic_write(out) as fh:
        fh.write("\n".join(header) + "\n")
        yaml.safe_dump(data, fh, sort_keys=False, default_flow_style=None)
    partial.unlink(missing_ok=True)
    for line in lines:
        print(line)
    print(f"-> {out}")
    return 0
