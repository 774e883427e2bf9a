"""``rhosr scf``: the full GPW SCF, started from the model's prediction or PySCF's guesses."""

from __future__ import annotations

import argparse
import json

from rhosr.commands.common import Reporter, add_molecule_arguments

DESCRIPTION = """\
Run the PySCF GPW Kohn-Sham SCF of a molecule (as `rhosr dft`, same box) from an initial guess:
  model  - the predicted density (shipped model, or --model), carried to the SCF mesh by
           Fourier truncation; its Kohn-Sham matrix is the SCF's first Fock matrix (cycle 1
           diagonalises it: the one-step density matrix);
  minao  - PySCF's default (superposition of minimal-basis atomic densities);
  atom   - PySCF's spherically averaged atomic UHF/UKS densities.
Reports the SCF cycles, the SCF time, the time of the guess (prediction + the Kohn-Sham
potential of the density) and the final energy (Hartree)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_molecule_arguments(parser)
    parser.add_argument("--guess", choices=("model", "minao", "atom"), default="model")
    parser.add_argument("--model", default=None, help="model folder or shipped name (default: shipped)")
    parser.add_argument("--preset", default="fast", help="DFT preset (default fast)")
    parser.add_argument(
        "--margin",
        type=float,
        default=4.0,
        help="box margin in Angstrom for minao/atom (default 4; --guess model uses the model's own box)",
    )
    parser.add_argument("--json", default=None, metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--quiet", action="store_true")


def run_scf(mol, guess: str, preset_name: str = "fast", model=None, margin: float = 4.0, log=None,
            density=None) -> dict:
    """Run the SCF of ``mol`` from ``guess``; returns cycles, seconds and energy (Hartree).

    ``guess="density"`` starts from a given density instead of the model's, the same way
    (:func:`rhosr.dft.guess.start_from_density`): ``density = (placed molecule, grid, rho on the
    fine mesh)`` (e.g. a DFT label, for the best case of the model guess)."""
    import time

    from rhosr.config import get_preset
    from rhosr.dft.label import make_scf, scf_cell
    from rhosr.errors import InputError
    from rhosr.grid import place_in_box

    preset = get_preset(preset_name)
    guess_seconds, predict_seconds, dm0 = 0.0, 0.0, None
    if guess == "model":
        if mol.spin:
            raise InputError("--guess model needs a closed shell (--spin 0)")
        from rhosr.predict import predict

        t0 = time.perf_counter()
        result = predict(mol, model)  # in the model's own box (its margin)
        predict_seconds = time.perf_counter() - t0
        placed, grid, rho = result.placed, result.grid, result.density
    elif guess == "density":
        if density is None:
            raise InputError("guess 'density' needs the density (placed molecule, grid, rho)")
        placed, grid, rho = density
    else:
        placed, grid = place_in_box(mol, 2, margin)
        rho = None
    mf = make_scf(scf_cell(placed, grid, preset), preset)
    if rho is not None:
        from rhosr.dft.guess import start_from_density

        t0 = time.perf_counter()
        dm0 = start_from_density(mf, rho)
        guess_seconds = predict_seconds + time.perf_counter() - t0
    else:
        mf.init_guess = guess
    cycles = [0]

    def count(envs):
        cycles[0] = envs.get("cycle", cycles[0]) + 1
        if log is not None:
            log(f"SCF cycle {cycles[0]:3d}  E = {envs.get('e_tot', float('nan')):.10f} Ha")

    mf.callback = count
    t0 = time.perf_counter()
    mf.kernel(dm0)
    scf_seconds = time.perf_counter() - t0
    return {
        "molecule": mol.name,
        "guess": guess,
        "preset": preset.name,
        "converged": bool(mf.converged),
        "cycles": cycles[0],
        "scf_seconds": scf_seconds,
        "guess_seconds": guess_seconds,
        "predict_seconds": predict_seconds,
        "total_seconds": scf_seconds + guess_seconds,
        "energy": float(mf.e_tot),
        "conv_tol": preset.conv_tol,
    }


def run(args: argparse.Namespace) -> int:
    from rhosr.commands.common import read_molecule_from_args
    from rhosr.errors import SCFNotConvergedError
    from rhosr.io import prepare_output

    report = Reporter(args.quiet)
    mol = read_molecule_from_args(args)
    prepare_output(args.json, flag="--json")
    out = run_scf(mol, args.guess, args.preset, args.model, args.margin, log=report)
    print(
        f"{mol.name}: guess {args.guess}: {out['cycles']} cycles, SCF {out['scf_seconds']:.1f} s"
        + (
            f", guess {out['guess_seconds']:.1f} s (prediction {out['predict_seconds']:.1f} s)"
            if args.guess == "model"
            else ""
        )
        + f", total {out['total_seconds']:.1f} s; E = {out['energy']:.10f} Ha"
    )
    if args.json:
        from rhosr.io import atomic_write

        with atomic_write(args.json) as fh:
            json.dump(out, fh, indent=2)
    if not out["converged"]:
        raise SCFNotConvergedError(f"{mol.name}: SCF did not converge from the {args.guess} guess")
    return 0
