"""``rhosr error``: Err_rho between two densities on the same mesh."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Print Err_rho = 100 * integral |rho_A - rho_B| dr / N_e (percent, the paper's metric) for two
densities on the same box and mesh, each a cube file or a .npy array (e/Bohr^3, axes x, y, z;
e.g. `rhosr predict -o x.npy`, or the authors' rho_22.npy).

The voxel volume and N_e come from a cube file (B's, else A's), else from --molecule (its box
by the authors' rule, --margin/--upscale as for `rhosr dft`; the mesh must be that box's fine or
coarse mesh). N_e is the valence electron count (GTH-PBE) of those atoms minus --charge, unless
--electrons is given. Two .npy files without --molecule: the integral is normalised by B's own
sum, which is the same number when B integrates to N_e (a DFT label does), and says so."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rhosr.commands.common import MOL_HELP, add_box_arguments

    parser.add_argument("a", metavar="A", help="density (.cube or .npy), e.g. a prediction or the SAD")
    parser.add_argument("b", metavar="B", help="reference density (.cube or .npy), e.g. the DFT label")
    parser.add_argument("--molecule", default=None, metavar="MOL",
                        help=f"for two .npy files: the {MOL_HELP.split(':')[0]} whose box they are on")
    add_box_arguments(parser)
    parser.add_argument("--charge", type=int, default=0, help="total charge of the molecule")
    parser.add_argument("--electrons", type=float, default=None, help="override N_e")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from rhosr.checks import check_optional
    from rhosr.density_checks import NEGATIVE_TOLERANCE
    from rhosr.errors import InputError
    from rhosr.io import read_density_file
    from rhosr.molecule import valence_electrons

    check_optional("--electrons", args.electrons, above=0)
    a, b = read_density_file(args.a), read_density_file(args.b)
    molecule = _from_molecule(args, a.rho, b.rho) if args.molecule is not None else None
    mesh = next((d.rho.shape for d in (b, a) if d.rho.ndim == 3), None) or (molecule or {}).get("mesh")
    if mesh is None:
        raise InputError(f"{args.a} and {args.b} are flat arrays: pass --molecule to give their mesh")
    a, b = (d if d.atoms is not None else d.on_mesh(mesh, path) for d, path in ((a, args.a), (b, args.b)))
    if a.rho.shape != b.rho.shape:
        raise InputError(f"meshes differ: {args.a} is {a.rho.shape}, {args.b} is {b.rho.shape}")
    for d, path in ((a, args.a), (b, args.b)):  # a density is >= 0 up to ringing (rhosr.density_checks)
        low, high = float(d.rho.min()), float(d.rho.max())
        if low < 0 and low < -NEGATIVE_TOLERANCE * max(high, 0.0):
            raise InputError(f"{path}: negative values down to {low:.3g} e/Bohr^3: not a density")
    if a.atoms is not None and b.atoms is not None and not np.allclose(
            a.atoms.cell.lengths(), b.atoms.cell.lengths(), atol=1e-4):
        raise InputError(f"boxes differ: {args.a} and {args.b} are not on the same cell")
    known = b if b.atoms is not None else a if a.atoms is not None else None
    symbols, voxel_volume = None, None
    if known is not None:
        symbols, voxel_volume = known.atoms.get_chemical_symbols(), known.voxel_volume
    elif molecule is not None:
        symbols, voxel_volume = molecule["symbols"], molecule["voxel_volume"]
    n_e = args.electrons
    if n_e is None and symbols is not None:
        n_e = sum(valence_electrons(s) for s in symbols) - args.charge
    if n_e is not None and n_e <= 0:
        raise InputError(f"{args.b}: no electrons to normalise by; pass --electrons")
    diff = float(np.abs(a.rho - b.rho).sum())
    if voxel_volume is None:  # two bare arrays: the reference's own sum stands for N_e / dV
        total = float(b.rho.sum())
        if total <= 0:
            raise InputError(f"{args.b}: sums to {total:g}; pass --molecule")
        print(f"Err_rho = {100.0 * diff / total:.4f} %  (normalised by the sum of {args.b}: "
              "no cube file or --molecule gives the voxel volume; exact when B integrates to N_e)")
        return 0
    value = 100.0 * diff * voxel_volume / n_e
    print(f"Err_rho = {value:.4f} %  (N_e = {n_e:g}; integrals {a.rho.sum() * voxel_volume:.6f} and "
          f"{b.rho.sum() * voxel_volume:.6f} e)")
    return 0


def _from_molecule(args, *arrays) -> dict:
    """Symbols, mesh and voxel volume (Bohr^3) of the mesh of ``--molecule``'s box that the
    arrays are on (3D with that shape, or flat with that many points)."""
    import numpy as np

    from rhosr.errors import InputError
    from rhosr.grid import place_in_box
    from rhosr.molecule import read_molecule

    mol = read_molecule(args.molecule, charge=args.charge)
    placed, grid = place_in_box(mol, args.upscale, args.margin)
    shape = arrays[-1].shape
    for which in ("fine", "coarse"):
        mesh = tuple(grid.mesh(which))
        if all(a.shape == mesh or (a.ndim == 1 and a.size == int(np.prod(mesh))) for a in arrays):
            return {"symbols": placed.atoms.get_chemical_symbols(), "mesh": mesh,
                    "voxel_volume": grid.voxel_volume(which)}
    raise InputError(f"the arrays' mesh {shape} is neither the fine {grid.fine_mesh} nor the "
                     f"coarse {grid.coarse_mesh} mesh of {args.molecule}'s box (margin {args.margin} A)")
