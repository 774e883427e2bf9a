"""``rhosr predict``: DFT-quality densities from a trained model, for one or many molecules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rhosr.commands.common import MOL_HELP, Reporter

DESCRIPTION = """\
Predict the valence electron density of each molecule with a trained model (the one shipped in
the package unless --model is given): the molecule is placed in the model's box, its SAD is
built on the coarse mesh and the network returns the density on the fine mesh (e/Bohr^3,
rescaled to the valence electron count of the GTH pseudopotentials).

Output: with one molecule, -o may name the file (x.cube or x.npy); otherwise -o is a folder and
each molecule is written as NAME.cube (or .npy with --format npy); missing folders are made
before any work. --png adds NAME.png (density isosurface with the atoms) and NAME_slices.png;
--html adds NAME.html (interactive, offline).
--reference REF (one molecule; a cube from `rhosr dft`, or a .npy on the same fine mesh) also
prints Err_rho of the model and of the SAD input against it and, with --png, draws the error
isosurfaces (NAME_error.png)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mols", metavar="MOL", nargs="+", help=MOL_HELP)
    parser.add_argument(
        "-o", "--output", required=True, help="output file (one molecule, .cube or .npy) or folder"
    )
    parser.add_argument(
        "--format",
        dest="out_format",
        choices=("cube", "npy"),
        default="cube",
        help="file format when -o is a folder (default cube)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model folder (model.json + model.safetensors, e.g. a training run's "
        "best/) or the name of a shipped model (default: the shipped model)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    parser.add_argument("--charge", type=int, default=0, help="total charge of every molecule")
    parser.add_argument("--spin", type=int, default=0,
                        help="unpaired electrons 2S of every molecule (default 0); the prediction is "
                             "the total valence density, and qm9-small learned closed shells only")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help="tiled inference with tiles of N coarse points per axis (models with "
        "norm: none; same result as whole-box up to rounding)",
    )
    parser.add_argument(
        "--max-memory",
        type=float,
        default=None,
        metavar="GB",
        help="choose tiles so that one forward pass stays under this many GB (default on the CPU: "
             "half the memory available now, so only boxes that would not fit are tiled)",
    )
    parser.add_argument(
        "--rotations",
        type=int,
        default=1,
        metavar="N",
        help="average the predictions over the first N of the 24 grid rotations "
        "(1-24, default 1: no averaging; cost x N)",
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "onnx", "torch"),
        help="what runs the network: onnx (ONNX Runtime, the model folder's model.onnx; starts "
             "~1.5 s faster, CPU and whole box only), torch (PyTorch), or auto (default: onnx where "
             "it can, torch for --device cuda, --tile, --rotations, boxes too large for memory and "
             "folders without a current model.onnx; same result to float rounding)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads the network runs on (default: every CPU, or OMP_NUM_THREADS when set)",
    )
    parser.add_argument(
        "--base-only",
        action="store_true",
        help="skip the network: the model's base alone (for qm9-unet its fitted prior, through the "
             "ReLU and rescaled to N_e), faster; the model card gives both errors (Err_rho of the "
             "model and of its base). Needs a base on the fine mesh (fitted_prior, sad_fine)",
    )
    parser.add_argument("--png", action="store_true", help="also write isosurface and slice PNGs")
    parser.add_argument("--html", action="store_true", help="also write an interactive HTML view")
    parser.add_argument(
        "--reference",
        default=None,
        metavar="REF",
        help="DFT density of the (single) molecule: print Err_rho of model and SAD",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _targets(args, names: list[str]) -> list[Path]:
    from rhosr.errors import InputError
    from rhosr.io import FORMATS, prepare_output, prepare_output_folder

    out = Path(args.output)
    if out.suffix.lower() in FORMATS:
        if len(names) > 1:
            raise InputError(f"-o {out}: {len(names)} molecules need an output folder, not a file")
        prepare_output(out, flag="-o")
        return [out]
    if out.suffix and not out.is_dir():  # x.txt: a file name in an unknown format, not a folder
        raise InputError(f"-o {out}: unknown output format; name a file x{' or x'.join(FORMATS)} "
                         "(one molecule) or a folder (a new folder's name has no suffix)")
    prepare_output_folder(out, "-o")
    stems, seen = [], {}
    for name in names:  # two molecules with the same name get distinct files
        seen[name] = seen.get(name, 0) + 1
        stems.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return [out / f"{stem}.{args.out_format}" for stem in stems]


def run(args: argparse.Namespace) -> int:
    from rhosr.checks import check_optional
    from rhosr.predict import check_options

    report = Reporter(args.quiet)
    check_options(args.tile, args.rotations, args.max_memory, args.runtime)
    check_optional("--threads", args.threads, integer=True, low=1)
    with _one_blas_thread():
        return _run(args, report)


def _one_blas_thread():
    """NumPy's BLAS on one thread for the prediction (unless ``OPENBLAS_NUM_THREADS`` is set):
    its only BLAS work is small products (the prior's and the SAD's blocks), and idle OpenBLAS
    threads spin on the cores the network, the next molecule's inputs and the file writing
    need (``benchmarks/batch_threads.py`` measures both settings)."""
    import os
    from contextlib import nullcontext

    if "OPENBLAS_NUM_THREADS" in os.environ:
        return nullcontext()
    import numpy  # noqa: F401  (threadpoolctl limits the BLAS libraries already loaded)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _run(args: argparse.Namespace, report) -> int:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from rhosr.errors import InputError
    from rhosr.io import read_density_file
    from rhosr.molecule import read_molecule
    from rhosr.predict import load_predictor, model_folder, predict, runtime_for

    if args.reference and len(args.mols) > 1:
        raise InputError("--reference compares one molecule; give a single MOL")
    from rhosr.qm9 import prefetch

    prefetch(int(spec[4:]) for spec in args.mols if spec.startswith("qm9:") and spec[4:].isdigit())
    mols = [read_molecule(spec, charge=args.charge, spin=args.spin) for spec in args.mols]
    reference = read_density_file(args.reference) if args.reference else None  # a bad file fails now
    targets = _targets(args, [m.name for m in mols])
    folder = model_folder(args.model)
    runtime = runtime_for(args.tile, args.rotations, args.runtime)
    net, meta = load_predictor(folder, args.device, runtime, args.threads)
    if args.threads and getattr(net, "runtime", "torch") != "onnxruntime":
        import torch

        torch.set_num_threads(args.threads)
    if args.base_only:
        from rhosr.predict import check_base_only

        check_base_only(net, args.tile, args.rotations)  # before any molecule is predicted
    val = meta.get("val_err")
    engine = "onnxruntime" if getattr(net, "runtime", "torch") == "onnxruntime" else "PyTorch"
    report(
        f"model {folder.name} ({net.describe()}, x{net.upscale}; validation Err_rho "
        f"{'n/a' if val is None else f'{val:.2f}%'}) on {args.device} with {engine}"
        + (": its base only (--base-only), the network is not run" if args.base_only else "")
    )
    # A batch writes each molecule's file on a second thread while the next one is predicted
    # (formatting and writing a cube, 0.1-0.8 s, overlaps the network), and computes the next
    # molecule's inputs (SAD channels, the base's fine-mesh array) on a third; the lines still
    # print in order, each once its file is complete. Comparisons, pictures and tiled boxes (too
    # large to hold two at once) stay in sequence.
    overlap = len(mols) > 1 and not (args.reference or args.png or args.html)
    writer = ThreadPoolExecutor(max_workers=1) if overlap else None
    preparer = ThreadPoolExecutor(max_workers=1) if overlap else None
    ahead = preparer.submit(_prepare_ahead, net, meta, mols[0], args.base_only) if preparer else None
    pending = None
    t_start = time.perf_counter()
    try:
        for i, (mol, target) in enumerate(zip(mols, targets)):
            t0 = time.perf_counter()
            prepared = ahead.result() if ahead is not None else None
            ahead = (preparer.submit(_prepare_ahead, net, meta, mols[i + 1], args.base_only)
                     if preparer is not None and i + 1 < len(mols) else None)
            with _TileProgress(mol.name, args.quiet) as progress:
                result = predict(mol, folder, args.device, tile=args.tile, max_memory_gb=args.max_memory,
                                 rotations=args.rotations, progress=progress, runtime=args.runtime,
                                 prepared=prepared, base_only=args.base_only, onnx_threads=args.threads)
            del prepared
            predicted_s = time.perf_counter() - t0
            if pending is not None:
                _report_written(*pending)
                pending = None
            if writer is not None and result.timings["tile"] is None:
                pending = (mol, result, target, predicted_s, writer.submit(_timed_write, target, result))
                continue
            _report_written(mol, result, target, predicted_s, _timed_write(target, result))
            if args.reference:
                _compare(args, mol, result, target, reference)
            elif args.png:
                _pictures(result, target)
            if args.html:
                from rhosr.pictures import html_view

                html_view(target.with_suffix(".html"), result.density, result.grid, result.placed.atoms)
        if pending is not None:
            _report_written(*pending)
    finally:
        if writer is not None:
            writer.shutdown(wait=True)
        if preparer is not None:
            preparer.shutdown(wait=True, cancel_futures=True)
    if len(mols) > 1:
        print(
            f"{len(mols)} molecules, {(time.perf_counter() - t_start) / len(mols):.2f} s per molecule on "
            "average",
            file=sys.stderr,
        )
    return 0


PREPARE_AHEAD_MAX_POINTS = 16_000_000
"""A molecule whose fine mesh has more points (a tiled box) has its inputs computed in turn, not
ahead: two such boxes' arrays at once could exceed the memory the tiles keep to."""


def _prepare_ahead(net, meta: dict, mol, base_only: bool = False):
    """The next molecule placed in its box and, for a box of at most
    :data:`PREPARE_AHEAD_MAX_POINTS` fine points, its inputs computed (rhosr.predict.prepare;
    ``base_only``: the base's fine array alone).
    An error is left to the prediction itself, which raises it in order."""
    import math

    from rhosr.predict import prepare

    try:
        prepared = prepare(meta, mol)
        if math.prod(prepared.grid.fine_mesh) <= PREPARE_AHEAD_MAX_POINTS:
            prepared.build(net, base_only)
        return prepared
    except Exception:  # noqa: BLE001  (the molecule's own predict() call reports it)
        return None


def _timed_write(target: Path, result) -> float:
    """Write one prediction's file; seconds it took."""
    import time

    from rhosr.errors import InputError
    from rhosr.io import write_density

    t0 = time.perf_counter()
    try:
        write_density(target, result.placed.atoms, result.density)
    except OSError as exc:
        raise InputError(f"{target}: could not write it ({exc.strerror or exc})") from None
    return time.perf_counter() - t0


def _report_written(mol, result, target: Path, predicted_s: float, written) -> None:
    """The line of one molecule, once its file is written (``written``: seconds, or the future
    of the writing thread, whose error is raised here)."""
    written_s = written if isinstance(written, float) else written.result()
    t = result.timings
    print(
        f"{mol.name}: {len(mol.atoms)} atoms, {result.n_electrons:.4f} e, fine mesh "
        f"{'x'.join(map(str, result.grid.fine_mesh))}; SAD {t['sad_s']:.2f} s, model {t['model_s']:.2f} s"
        f"{_tile_note(t['tile'])}, predicted in {predicted_s:.2f} s, written in {written_s:.2f} s "
        f"-> {target}",
        flush=True,
    )


class _TileProgress:
    """A progress bar over the tiles of one molecule (shown only when it is tiled)."""

    def __init__(self, name: str, quiet: bool):
        self.name, self.quiet, self.bar = name, quiet, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"{self.name} tiles", unit="tile", disable=self.quiet or None)
        if done == 1 and self.bar.n >= total:  # the next rotation starts over
            self.bar.reset()
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _tile_note(tile) -> str:
    return "" if tile is None else f" (tiles of {tile} coarse points)"


def _pictures(result, target: Path, reference=None) -> None:
    from rhosr.pictures import error_png, isosurface_png, slices_png

    atoms = result.placed.atoms
    isosurface_png(target.with_suffix(".png"), result.density, result.grid, atoms)
    panels = {"prediction": result.density}
    if reference is not None:
        panels["DFT reference"] = reference
        error_png(
            target.with_name(target.stem + "_error.png"), result.density - reference, result.grid, atoms
        )
    slices_png(target.with_name(target.stem + "_slices.png"), panels, result.grid, atoms)


def _compare(args, mol, result, target: Path, ref) -> None:
    """Err_rho of the model and the SAD against ``ref`` (a cube, or a bare .npy on the same fine
    mesh, read by :func:`rhosr.io.read_density_file`)."""
    import numpy as np

    from rhosr.errors import InputError
    from rhosr.metrics import err_rho
    from rhosr.sad import sad_density

    if ref.atoms is None:
        ref = ref.on_mesh(result.density.shape, args.reference)
    if ref.rho.shape != result.density.shape or (ref.atoms is not None and not np.allclose(
        ref.atoms.cell.lengths(), result.grid.lengths_angstrom, atol=1e-4
    )):
        raise InputError(
            f"{args.reference}: its box or mesh {ref.rho.shape} is not the model's "
            f"{result.grid.fine_mesh} for this molecule (make it with `rhosr dft` and the same margin)"
        )
    dv, n_e = result.grid.voxel_volume("fine"), mol.n_valence
    sad_fine = sad_density(result.placed, result.grid, "fine")
    print(
        f"{mol.name}: Err_rho model {err_rho(result.density, ref.rho, dv, n_e):.3f} %, "
        f"SAD input {err_rho(sad_fine, ref.rho, dv, n_e):.3f} %  (vs {args.reference})",
        flush=True,
    )
    if args.png:
        _pictures(result, target, ref.rho)
