"""Rendering a label from its density matrix without PySCF: speed and accuracy on QM9.

For entries of a store (their density matrices), on the fine (label) mesh, one thread, in one
run: seconds per molecule for ``rhosr.orbital_density.render_density`` (float64 and float32;
the time includes building the basis from plain data and factorising the density matrix),
PySCF's multigrid ``get_rho`` (the ``fast`` preset's label) and PySCF's exact evaluation at
the mesh points (the ``paper`` preset's label); Err_rho (%) of the render against both.
Also the SAD input on the coarse mesh: ``render_sad`` against ``rhosr.sad.sad_density``.
Each render is timed as the best of ``--repeat`` runs (the machine may be shared).

Run: ``OMP_NUM_THREADS=1 python benchmarks/render_density.py STORE [--n 3]``; writes
results/render_density.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from rhosr.dft import build_cell, density_on_mesh
from rhosr.grid import BOHR_ANGSTROM, Grid
from rhosr.metrics import err_rho
from rhosr.molecule import Molecule
from rhosr.orbital_density import orbitals_from_dm, render_density, render_sad
from rhosr.sad import atomic_density_matrix, sad_density
from rhosr.store import DatasetStore

RESULTS = Path(__file__).parent / "results"


def best_time(fn, repeat: int):
    """Best of ``repeat`` calls: (CPU seconds of this process, wall seconds, result). With one
    thread the CPU time is the time on one core, whatever else shares the machine."""
    cpu, wall, out = [], [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return min(cpu), min(wall), out


def measure(store: DatasetStore, entry_id: str, repeat: int, exact: bool) -> dict:
    entry = store.read_entry(entry_id, arrays=("dm",))
    meta = entry.meta
    grid = Grid(tuple(meta["grid"]["lengths_bohr"]), tuple(meta["grid"]["coarse_mesh"]),
                int(meta["grid"]["upscale"]))
    positions = np.asarray(meta["positions_bohr"])
    mol = Molecule(Atoms(meta["symbols"], positions * BOHR_ANGSTROM), int(meta["charge"]),
                   int(meta["spin"]), name=entry_id)
    basis = build_cell(mol, grid)._basis  # the plain-data basis a pack carries
    n_e, dv = float(meta["n_electrons"]), grid.voxel_volume()
    args = (mol.symbols, positions, basis, grid.lengths, grid.fine_mesh)
    row = {"id": entry_id, "formula": mol.atoms.get_chemical_formula(), "mesh": grid.fine_mesh}
    row["t64"], row["w64"], rho64 = best_time(lambda: render_density(*args, dm=entry.dm), repeat)
    row["t32"], row["w32"], rho32 = best_time(
        lambda: render_density(*args, dm=entry.dm, dtype=torch.float32), repeat)
    row["t_mg"], row["w_mg"], rho_mg = best_time(
        lambda: density_on_mesh(mol, grid, entry.dm, "multigrid"), 1)
    row["err64_mg"] = err_rho(rho64, rho_mg, dv, n_e)
    row["err_n"] = abs(rho64.sum() * dv - n_e)
    # the compact form a pack can carry: the orbitals of the density matrix, stored as float32
    orbitals, occupations = orbitals_from_dm(entry.dm)
    rho_orb32 = render_density(*args, orbitals=orbitals.astype(np.float32),
                               occupations=occupations.astype(np.float32))
    row["err_orb32"] = err_rho(rho_orb32, rho64, dv, n_e)
    row["n_orb"] = orbitals.shape[1]
    row["orb_kb"], row["dm_kb"] = orbitals.size * 4 / 1e3, entry.dm.size * 8 / 1e3
    if exact:
        row["t_exact"], _, rho_exact = best_time(lambda: density_on_mesh(mol, grid, entry.dm, "exact"), 1)
        row["err64_exact"] = err_rho(rho64, rho_exact, dv, n_e)
        row["err32_exact"] = err_rho(rho32.astype(np.float64), rho_exact, dv, n_e)
        row["err_mg_exact"] = err_rho(rho_mg, rho_exact, dv, n_e)
    atomic = {s: atomic_density_matrix(s) for s in set(mol.symbols)}
    sad_density(mol, grid, "coarse")  # fills PySCF's per-element caches once
    row["t_sad_pyscf"], _, sad_ref = best_time(lambda: sad_density(mol, grid, "coarse"), repeat)
    row["t_sad"], _, sad = best_time(lambda: render_sad(mol.symbols, positions, basis, atomic, n_e,
                                                     grid.lengths, grid.mesh("coarse")), repeat)
    row["err_sad"] = err_rho(sad, sad_ref, grid.voxel_volume("coarse"), n_e)
    return row


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=3, help="number of entries (first in id order)")
    parser.add_argument("--ids", nargs="*", help="entry ids (instead of --n)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-exact", action="store_true", help="skip PySCF's exact evaluation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = DatasetStore.open(args.store)
    ids = args.ids or store.entry_ids()[: args.n]
    rows = []
    for entry_id in ids:
        rows.append(measure(store, entry_id, args.repeat, not args.no_exact))
        r = rows[-1]
        print(f"{entry_id} {r['formula']} mesh {r['mesh']}: render {r['t64']:.2f} s (f64) "
              f"{r['t32']:.2f} s (f32), multigrid {r['t_mg']:.2f} s, exact {fmt(r.get('t_exact'), '.1f')} s; "
              f"Err vs exact {fmt(r.get('err64_exact'), '.1e')}%, vs multigrid {r['err64_mg']:.1e}%",
              flush=True)
    header = ("| entry | formula | fine mesh | render f64 s (wall) | render f32 s (wall) "
              "| PySCF multigrid s (wall) | PySCF exact s | Err f64 vs exact % | Err f32 vs exact % "
              "| Err f64 vs multigrid % "
              "| Err multigrid vs exact % | abs(N - N_e) f64 |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        mesh = "x".join(map(str, r["mesh"]))
        lines.append(
            f"| {r['id']} | {r['formula']} | {mesh} | {r['t64']:.2f} ({r['w64']:.2f}) "
            f"| {r['t32']:.2f} ({r['w32']:.2f}) | {r['t_mg']:.2f} ({r['w_mg']:.2f}) "
            f"| {fmt(r.get('t_exact'), '.1f')} | {fmt(r.get('err64_exact'), '.1e')} "
            f"| {fmt(r.get('err32_exact'), '.1e')} | {r['err64_mg']:.1e} "
            f"| {fmt(r.get('err_mg_exact'), '.1e')} | {r['err_n']:.1e} |")
    sad_lines = ["| entry | coarse mesh | render_sad s | rhosr.sad (PySCF, cached) s | Err_rho % |",
                 "|---|---|---|---|---|"]
    for r in rows:
        coarse = "x".join(str(n // 2) for n in r["mesh"])
        sad_lines.append(f"| {r['id']} | {coarse} | {r['t_sad']:.2f} | {r['t_sad_pyscf']:.2f} "
                         f"| {r['err_sad']:.1e} |")
    orb_lines = ["| entry | orbitals kept | float32 orbitals kB | float64 density matrix kB "
                 "| Err_rho % of a render from the float32 orbitals |", "|---|---|---|---|---|"]
    for r in rows:
        orb_lines.append(f"| {r['id']} | {r['n_orb']} "
                         f"| {r['orb_kb']:.0f} | {r['dm_kb']:.0f} | {r['err_orb32']:.1e} |")
    print("\n".join(lines + [""] + sad_lines + [""] + orb_lines))
    command = "OMP_NUM_THREADS=1 python benchmarks/render_density.py STORE " + " ".join(sys.argv[2:])
    text = (
        "# Rendering labels without PySCF\n\n"
        f"Command: `{command.strip()}` (one thread; STORE a `fast` QM9 store).\n\n"
        "Times are CPU seconds of the one-threaded process (the time on one core), best of "
        f"{args.repeat} renders; wall seconds in brackets, on {os.cpu_count()} CPU cores shared "
        "with other jobs. PySCF's evaluations are timed once.\n\n"
        "Label density on the fine mesh from the stored density matrix:\n\n"
        + "\n".join(lines)
        + "\n\nSAD input on the coarse mesh from the per-element atomic density matrices:\n\n"
        + "\n".join(sad_lines)
        + "\n\nThe compact form: the density matrix's orbitals (`orbitals_from_dm`, tol 1e-9) stored "
        "as float32, rendered in float64 against the render from the density matrix:\n\n"
        + "\n".join(orb_lines) + "\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "render_density.md").write_text(text)


if __name__ == "__main__":
    main()
