"""``rhosr evaluate``: Err_rho of a model and of its SAD input over many molecules."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Evaluate a model on a split of a dataset store (default: the test split, which training never
reads), or compare two folders (--cubes PRED_DIR REF_DIR): each reference NAME.cube in REF_DIR
is paired with NAME.cube or NAME.npy (e.g. `rhosr predict --format npy`) in PRED_DIR; the SAD
input is rebuilt from the reference cube's atoms and box, and N_e is the reference's integral
rounded to an integer (so charged molecules count right).

Prints and writes (-o FOLDER): per-molecule Err_rho of the model and of the SAD input (percent,
100 * integral |rho - rho_ref| / N_e), their mean / median / 90th percentile, and the error per
element inside the covalent radii of Pyykko and Atsumi (the paper's analysis), as report.md,
report.json, molecules.csv and errors.png. The error of the model's base alone (its prior: the
SAD or fitted prior it adds its output to) is reported too, on a store always and with --cubes
when --model is given."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="dataset store written by `rhosr label`")
    src.add_argument(
        "--cubes",
        nargs=2,
        metavar=("PRED_DIR", "REF_DIR"),
        help="folders of predictions (.cube or .npy) and reference cube files with the same names",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=("train", "validation", "test"),
        help="store split to evaluate (default test)",
    )
    parser.add_argument("--model", default=None,
                        help="model folder or shipped model name (default: shipped); with --cubes, "
                             "also report the error of this model's base alone (its prior)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N entries")
    parser.add_argument(
        "--rotations",
        type=int,
        default=1,
        metavar="N",
        help="average predictions over N of the 24 grid rotations (default 1)",
    )
    parser.add_argument("--tile", type=int, default=None, metavar="N", help="tiled inference (see predict)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("-o", "--output", default=None, help="folder for the report files")


def run(args: argparse.Namespace) -> int:
    from rhosr.errors import InputError
    from rhosr.evaluation import evaluate_store, write_report
    from rhosr.io import prepare_output_folder
    from rhosr.predict import check_options

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    check_options(args.tile, args.rotations)
    if args.output:  # before any work: a report folder that cannot be made fails now, not at the end
        prepare_output_folder(args.output)
    if args.store:
        results, context = evaluate_store(
            args.store, args.split, args.model, args.limit, args.rotations, args.tile, args.device
        )
    else:
        results, context = _evaluate_cubes(*args.cubes, limit=args.limit, model=args.model)
    summary = write_report(args.output, results, context) if args.output else None
    if summary is None:
        from rhosr.evaluation import summarize

        summary = summarize(results)
    m, s = summary["err_model"], summary["err_sad"]
    base = summary.get("err_base")
    base_text = (f"; the model's base ({context.get('base')}) alone mean {base['mean']:.3f} %"
                 if base else "")
    print(
        f"{summary['n_molecules']} molecules: Err_rho model mean {m['mean']:.3f} %, "
        f"median {m['median']:.3f} %, p90 {m['p90']:.3f} %; SAD input mean {s['mean']:.3f} %, "
        f"median {s['median']:.3f} %, p90 {s['p90']:.3f} %{base_text}"
    )
    for el, v in summary["elements"].items():
        print(
            f"  {el:2s} ({v['molecules']} molecules): model {v['err_model']:.3f} %, SAD {v['err_sad']:.3f} %"
        )
    if args.output:
        print(f"report: {args.output}/report.md")
    return 0


def _evaluate_cubes(pred_dir: str, ref_dir: str, limit: int | None = None, model: str | None = None):
    """Pairs of prediction and reference files; with ``model``, also the error of that model's
    base alone on each reference's box."""
    from pathlib import Path

    import numpy as np

    from rhosr.errors import InputError
    from rhosr.evaluation import base_density, evaluate_pair, shown_path
    from rhosr.grid import BOHR_ANGSTROM, Grid, check_holds
    from rhosr.io import read_cube, read_density_file
    from rhosr.molecule import Molecule, valence_electrons
    from rhosr.sad import sad_density

    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    for d in (pred_dir, ref_dir):
        if not d.is_dir():
            raise InputError(f"{d}: not a folder")
    pairs = []
    for ref_path in sorted(ref_dir.glob("*.cube")):
        pred_path = next((p for p in (pred_dir / ref_path.name, pred_dir / f"{ref_path.stem}.npy")
                          if p.exists()), None)
        if pred_path is not None:
            pairs.append((ref_path.name, pred_path, ref_path))
    pairs = pairs[:limit]
    if not pairs:
        raise InputError(f"{pred_dir} and {ref_dir} share no file names (NAME.cube or NAME.npy "
                         f"beside a reference NAME.cube)")
    net = None
    if model is not None:
        from rhosr.predict import load_predictor, model_folder

        net, meta = load_predictor(model_folder(model))
        if int(meta["grid"]["upscale"]) != 2:
            raise InputError(f"--model {model}: upscales x{meta['grid']['upscale']}; reference cubes are "
                             "compared on a x2 fine mesh")
    results = []
    for name, pred_path, ref_path in pairs:
        ref = read_cube(ref_path)
        pred = read_density_file(pred_path)
        if pred.atoms is None:
            pred = pred.on_mesh(ref.rho.shape, pred_path)
        if pred.rho.shape != ref.rho.shape:
            raise InputError(f"{name}: meshes differ ({pred.rho.shape} vs {ref.rho.shape})")
        if any(n % 2 for n in ref.rho.shape):
            raise InputError(f"{name}: the reference mesh {ref.rho.shape} is not a x2 fine mesh")
        atoms = ref.atoms
        lengths_bohr = tuple(float(v) for v in atoms.cell.lengths() / BOHR_ANGSTROM)
        grid = Grid(lengths_bohr, tuple(n // 2 for n in ref.rho.shape), 2)
        check_holds(grid, atoms.get_positions(), str(ref_path))
        n_e = int(round(ref.integral))  # a DFT density integrates to N_e: charged molecules too
        charge = sum(valence_electrons(s) for s in atoms.get_chemical_symbols()) - n_e
        mol = Molecule(atoms, charge, name=name)
        sad = sad_density(mol, grid, "coarse")
        base = None
        if net is not None:
            base = base_density(net, net.build_inputs(mol, grid), net.build_fine(mol, grid), n_e,
                                grid.voxel_volume("fine"))
        results.append(
            evaluate_pair(
                Path(name).stem,
                atoms.get_chemical_symbols(),
                atoms.get_positions() / BOHR_ANGSTROM,
                lengths_bohr,
                n_e,
                pred.rho.astype(np.float32),
                ref.rho.astype(np.float32),
                sad,
                base=base,
            )
        )
    pred_shown, ref_shown = shown_path(pred_dir), shown_path(ref_dir)
    context = {"title": f"{pred_shown} vs {ref_shown}", "predictions": pred_shown, "references": ref_shown}
    if net is not None:
        context.update(model=shown_path(model), base=net.config.base.name)
    return results, context
