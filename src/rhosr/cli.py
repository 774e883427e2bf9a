"""The ``rhosr`` console script: parse, then call the package. One module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from rhosr import __version__

COMMANDS = {
    "sad": "SAD input density on the coarse grid (the model input)",
    "dft": "DFT label density on the fine grid (PySCF GPW)",
    "error": "Err_rho between two density cube files",
    "label": "label many molecules into a dataset store (DFT on Dask, resumable)",
    "store": "inspect, verify, export, pack or unpack a dataset store",
    "fit-prior": "fit the fitted_prior base of a training config to a store's labels",
    "train": "train or fine-tune a density model on a store",
    "predict": "predict densities with a trained model (the shipped one by default)",
    "export-onnx": "write a model folder's model.onnx (prediction without PyTorch)",
    "evaluate": "Err_rho of a model and of the SAD over a store split or cube folders",
    "onestep": "energies and orbitals from one Kohn-Sham diagonalisation of a density",
    "scf": "the full GPW SCF from the model's density or PySCF's guesses",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rhosr",
        description="Electron densities as 3D images: SAD input on a coarse grid, DFT labels "
                    "on a fine grid. Inside: Bohr, Hartree, e/Bohr^3; structure files in Angstrom.",
    )
    parser.add_argument("--version", action="version", version=f"rhosr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        module = importlib.import_module(f"rhosr.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=summary, description=module.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rhosr.errors import RhosrError, RhosrWarning

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", RhosrWarning)  # every molecule's caveat, not the first
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.run(args) or 0)
    except RhosrError as exc:
        if args.debug:
            raise
        print(f"rhosr {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"rhosr {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"rhosr {args.command}: error: out of memory", file=sys.stderr)
        return 1


def _one_line_warning(command: str):
    """``warnings.showwarning`` that prints rhosr's own caveats as ``rhosr CMD: warning: ...``."""
    from rhosr.errors import RhosrWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RhosrWarning):
            print(f"rhosr {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


if __name__ == "__main__":
    sys.exit(main())
