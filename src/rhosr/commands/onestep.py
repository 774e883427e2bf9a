"""``rhosr onestep``: energies and orbitals from one diagonalisation of the Kohn-Sham matrix of
a density (predicted, read from a cube file, or the SAD)."""

from __future__ import annotations

import argparse
import json

from rhosr.commands.common import Reporter, add_molecule_arguments

DESCRIPTION = """\
One-step DFT (paper section 2.4): build the Kohn-Sham matrix of a density on the molecule's
fine mesh (Hartree by FFT, PBE through libxc with FFT gradients, GTH pseudopotentials,
GTH-TZV2P; PySCF's GPW machinery), diagonalise it once and report the Kohn-Sham energy of the
resulting density matrix, the Harris-Foulkes energy of the input density, HOMO, LUMO, gap and
dipole moment. The density comes from the shipped model (default), --model, --density X.cube
(e.g. from `rhosr predict` or `rhosr dft`; same molecule, same box) or --sad.
Checks: a mesh or box that is not the molecule's is an error; slightly negative values
(ringing, > -0.1% of the maximum) are zeroed, deeper ones are an error; an electron count off
by more than 0.1% is an error unless --renormalize. Energies in Hartree (and eV)."""

HARTREE_EV = 27.211386245988


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_molecule_arguments(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--density", default=None, metavar="X.cube",
                        help="density on the fine mesh of the molecule's box: a cube file, or a .npy "
                             "array (3D x, y, z, or flat in C order)")
    source.add_argument("--model", default=None, help="model folder or shipped name (default: shipped)")
    source.add_argument("--sad", action="store_true", help="use the SAD density (the model's input)")
    parser.add_argument("--margin", type=float, default=4.0, help="box margin in Angstrom (default 4)")
    parser.add_argument("--preset", default="paper", help="functional/basis/pseudopotential preset")
    parser.add_argument("--renormalize", action="store_true", help="rescale a density with the wrong N_e")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--molden", default=None, metavar="OUT.molden", help="write the orbitals")
    parser.add_argument("--quiet", action="store_true")


def density_for(args, mol, report):
    """``(placed, grid, rho, source name)`` on the fine mesh of the molecule's box."""
    import numpy as np

    from rhosr.errors import InputError
    from rhosr.grid import place_in_box

    if args.density:
        from rhosr.io import read_density_file

        placed, grid = place_in_box(mol, 2, args.margin)
        cube = read_density_file(args.density)
        if cube.atoms is None:  # a bare .npy: on this molecule's fine mesh by assumption
            return placed, grid, cube.on_mesh(grid.fine_mesh, args.density).rho, args.density
        if not np.allclose(cube.atoms.cell.lengths(), grid.lengths_angstrom, atol=1e-3):
            raise InputError(
                f"{args.density}: its box {np.round(cube.atoms.cell.lengths(), 4).tolist()} A is not "
                f"this molecule's box {np.round(grid.lengths_angstrom, 4).tolist()} A "
                f"(margin {args.margin} A)"
            )
        if len(cube.atoms) != len(placed.atoms) or not np.allclose(
            cube.atoms.get_positions(), placed.atoms.get_positions(), atol=1e-3
        ):
            raise InputError(f"{args.density}: its atoms are not this molecule's atoms in its box")
        return placed, grid, cube.rho, args.density
    if args.sad:
        from rhosr.sad import sad_density

        placed, grid = place_in_box(mol, 2, args.margin)
        return placed, grid, sad_density(placed, grid, "fine"), "SAD"
    from rhosr.predict import predict

    result = predict(mol, args.model)
    report(f"predicted the density in {result.timings['sad_s'] + result.timings['model_s']:.2f} s")
    return result.placed, result.grid, result.density, f"model {args.model or 'shipped'}"


def run(args: argparse.Namespace) -> int:
    import time

    from rhosr.commands.common import read_molecule_from_args
    from rhosr.config import get_preset
    from rhosr.density_checks import checked_density
    from rhosr.dft.cell import check_memory_fits
    from rhosr.dft.onestep import make_fine_mesh_scf, one_step
    from rhosr.errors import InputError
    from rhosr.grid import FINE_KE_CUTOFF, place_in_box
    from rhosr.io import prepare_output

    report = Reporter(args.quiet)
    mol = read_molecule_from_args(args)
    prepare_output(args.json, flag="--json")
    prepare_output(args.molden, flag="--molden")
    if mol.spin:
        raise InputError("one-step DFT needs a closed shell (--spin 0)")
    preset = get_preset(args.preset)
    if not args.model:  # before predicting or reading the density (a model places it in its own box)
        check_memory_fits(*place_in_box(mol, 2, args.margin), FINE_KE_CUTOFF, preset.basis)
    placed, grid, rho, source = density_for(args, mol, report)
    rho, notes = checked_density(
        rho, grid.fine_mesh, grid.voxel_volume("fine"), mol.n_valence, args.renormalize, source
    )
    for note in notes:
        report(f"note: {note}")
    t0 = time.perf_counter()
    mf = make_fine_mesh_scf(placed, grid, preset)
    result = one_step(mf, rho)
    seconds = time.perf_counter() - t0
    out = {"molecule": mol.name, "density": source, "seconds": seconds, "notes": notes, **result.to_dict()}
    print(f"{mol.name}: one-step DFT from {source} ({seconds:.1f} s)")
    for key, label in (
        ("energy_ks", "E (Kohn-Sham, of the new density matrix)"),
        ("energy_harris", "E (Harris-Foulkes, of the input density)"),
        ("homo", "HOMO"),
        ("lumo", "LUMO"),
        ("gap", "gap"),
    ):
        print(f"  {label:42s} {out[key]:16.8f} Ha  {out[key] * HARTREE_EV:14.5f} eV")
    print(f"  {'dipole (Debye)':42s} {' '.join(f'{v:9.4f}' for v in out['dipole_debye'])}")
    if args.json:
        from rhosr.io import atomic_write

        with atomic_write(args.json) as fh:
            json.dump(out, fh, indent=2)
    if args.molden:
        write_molden(args.molden, mf.cell, result)
    return 0


def write_molden(path, cell, result) -> None:
    """Orbitals, energies and occupations in molden format (atoms in the box frame, Bohr)."""
    import os
    import tempfile

    from pyscf.tools import molden

    from rhosr.io import new_file_mode

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".molden.")
    os.fchmod(fd, new_file_mode())  # the user's umask, not mkstemp's 0600
    os.close(fd)
    try:
        molden.from_mo(cell, tmp, result.mo_coeff, ene=result.mo_energy, occ=result.mo_occ)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
