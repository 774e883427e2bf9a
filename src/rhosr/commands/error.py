"""``rhosr error``: Err_rho between two densities on the same mesh."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Print Err_rho = 100 * integral |rho_A - rho_B| dr / N_e (percent, the paper's metric) for two
cube files on the same box and mesh. N_e is the valence electron count of B's atoms (GTH-PBE)
minus --charge, unless --electrons is given."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A.cube", help="density, e.g. the SAD or a prediction")
    parser.add_argument("b", metavar="B.cube", help="reference density, e.g. the DFT label")
    parser.add_argument("--charge", type=int, default=0, help="total charge of the molecule")
    parser.add_argument("--electrons", type=float, default=None, help="override N_e")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from rhosr.errors import InputError
    from rhosr.io import read_cube
    from rhosr.metrics import err_rho
    from rhosr.molecule import valence_electrons

    a, b = read_cube(args.a), read_cube(args.b)
    if a.rho.shape != b.rho.shape:
        raise InputError(f"meshes differ: {args.a} is {a.rho.shape}, {args.b} is {b.rho.shape}")
    if not np.allclose(a.atoms.cell.lengths(), b.atoms.cell.lengths(), atol=1e-4):
        raise InputError(f"boxes differ: {args.a} and {args.b} are not on the same cell")
    if args.electrons is not None:
        n_e = args.electrons
    else:
        n_e = sum(valence_electrons(s) for s in b.atoms.get_chemical_symbols()) - args.charge
    if n_e <= 0:
        raise InputError(f"{args.b}: no electrons to normalise by; pass --electrons")
    value = err_rho(a.rho, b.rho, b.voxel_volume, n_e)
    print(f"Err_rho = {value:.4f} %  (N_e = {n_e:g}; integrals {a.integral:.6f} and {b.integral:.6f} e)")
    return 0
