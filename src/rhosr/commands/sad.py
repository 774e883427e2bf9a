"""``rhosr sad``: the SAD input density of a molecule on its coarse (or fine) mesh."""

from __future__ import annotations

import argparse
import time

from rhosr.commands.common import Reporter, add_box_arguments, add_molecule_arguments

DESCRIPTION = """\
Build the superposition of atomic densities (SAD) that the model takes as input: the authors'
"atomh1e" guess (GTH-SZV pseudo-atoms, one-electron guess, projected to GTH-TZV2P, scaled to
the valence electron count) evaluated at the grid points of the molecule's periodic box.
Units: positions Angstrom in files, density e/Bohr^3 (cube files store Bohr, as the format
requires). Array axes (x, y, z)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_molecule_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="output file: .cube or .npy")
    parser.add_argument("--atrocious", action="store_true",
                        help="the paper's 'atrocious' input: every GTH-SZV exponent doubled")
    parser.add_argument("--mesh", choices=("coarse", "fine"), default="coarse",
                        help="coarse: the model input (default); fine: the label mesh")
    add_box_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rhosr.commands.common import read_molecule_from_args
    from rhosr.grid import place_in_box
    from rhosr.io import FORMATS, prepare_output, write_density
    from rhosr.sad import sad_density

    report = Reporter()
    mol = read_molecule_from_args(args)
    prepare_output(args.output, FORMATS, "-o")
    placed, grid = place_in_box(mol, args.upscale, args.margin)
    report(f"{mol.name}: {len(mol.atoms)} atoms, {mol.n_valence} valence electrons, box "
           f"{' x '.join(f'{v:.3f}' for v in grid.lengths_angstrom)} Angstrom, "
           f"{args.mesh} mesh {' x '.join(map(str, grid.mesh(args.mesh)))}")
    t0 = time.perf_counter()
    rho = sad_density(placed, grid, args.mesh, atrocious=args.atrocious)
    report(f"{'atrocious ' if args.atrocious else ''}SAD built in {time.perf_counter() - t0:.2f} s; "
           f"integral {rho.sum() * grid.voxel_volume(args.mesh):.8f} e")
    write_density(args.output, placed.atoms, rho)
    report(f"wrote {args.output}")
    return 0
