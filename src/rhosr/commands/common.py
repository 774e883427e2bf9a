"""Arguments and output helpers shared by subcommands."""

from __future__ import annotations

import argparse
import sys
import time

MOL_HELP = (
    "molecule: a structure file ASE reads (xyz, extxyz, pdb, cif, sdf, ...; first frame), "
    "qm9:INDEX (QM9 from qm9pack), or a SMILES string (needs rhosr[smiles])"
)


def add_molecule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mol", metavar="MOL", help=MOL_HELP)
    parser.add_argument("--charge", type=int, default=0, help="total charge in e (default 0)")
    parser.add_argument("--spin", type=int, default=0,
                        help="number of unpaired electrons 2S (default 0; open shells use UKS)")
    parser.add_argument("--format", dest="fmt", default=None,
                        help="ASE format name when the file suffix is ambiguous")


def add_box_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upscale", type=int, choices=(2, 4), default=2,
                        help="fine/coarse mesh ratio per axis: 2 (coarse step ~0.166 A, the "
                             "paper's QM9 model) or 4 (~0.333 A); the fine step is ~0.083 A")
    parser.add_argument("--margin", type=float, default=4.0, metavar="ANGSTROM",
                        help="empty space added to the molecule's extent per axis, in total "
                             "(default 4 Angstrom, the authors' boxes)")


def check_box_arguments(args) -> None:
    """``--margin`` (where the command has one) checked before anything is read or written
    (:func:`rhosr.grid.check_margin`)."""
    from rhosr.grid import check_margin

    if getattr(args, "margin", None) is not None:
        check_margin(args.margin)


def read_molecule_from_args(args):
    """The molecule of ``MOL``, ``--charge``, ``--spin``, ``--format``, validated, after the box
    arguments (:func:`check_box_arguments`)."""
    from rhosr.molecule import read_molecule

    check_box_arguments(args)
    return read_molecule(args.mol, charge=args.charge, spin=args.spin, fmt=args.fmt)


class Reporter:
    """Progress and timing lines on stderr (stdout stays for results)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {message}", file=sys.stderr, flush=True)
