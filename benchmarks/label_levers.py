"""Ways to make a ``fast`` label cheaper, each measured on the same molecules against ``paper``.

Each variant runs the SCF of one molecule in its authors' box on one thread and records the
SCF's CPU seconds (robust on a shared machine, unlike wall time), its cycles per stage, and the
Err_rho of the resulting label (the density matrix evaluated on the fine mesh by multigrid,
exactly as ``fast`` labels are) against the cached ``paper`` label (``paper_labels.py``) and
against the ``old`` variant's label. Variants:

- ``old``: ``fast`` before the throughput work (conv_tol 1e-9 Ha, PySCF's check cycle);
- ``no-check``: the same without the check cycle;
- ``tol-1e-7``: conv_tol 1e-7 Ha, no check cycle;
- ``coarse-start``: converge on the 50 Ha mesh to 1e-5 Ha, carry the density matrix to the
  100 Ha cell, finish there to 1e-7 Ha;
- ``model-guess``: start from the shipped model's prediction (``guess_from_density``; the CPU
  time includes the prediction and the one-step guess);
- ``precision-1e-7`` / ``precision-1e-6`` / ``precision-1e-5``: ``tol-1e-7`` with the SCF
  cell's ``precision`` (PySCF's default 1e-8); ``precision-1e-6`` is ``fast`` now;
- ``precision-1e-6-multigrid``: only the multigrid integrator's cell at 1e-6 (overlap, kinetic
  and lattice sums at 1e-8).

    OMP_NUM_THREADS=1 python benchmarks/label_levers.py --molecules qm9:30000 --variants old,tol-1e-7

Rows are appended to ``results/label_levers.jsonl`` (label densities under ``--rho-dir`` for the
Err_rho against ``old``); ``--report`` writes ``results/label_levers.md`` from that file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rhosr.config import get_preset
from rhosr.dft.cell import build_cell
from rhosr.dft.density import density_on_mesh
from rhosr.dft.label import make_scf
from rhosr.grid import place_in_box
from rhosr.labelling import set_threads
from rhosr.molecule import read_molecule

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "label_levers.jsonl"


def _multigrid_precision(precision: float):
    def apply(mf) -> None:
        from pyscf.pbc.dft.multigrid import MultiGridNumInt2

        cell = mf.cell.copy(deep=False)
        cell.precision = precision
        cell.build()
        mf._numint = MultiGridNumInt2(cell)

    return apply


# name -> SCF stages [(mesh cutoff in Hartree, conv_tol in Hartree)], check cycle, cell precision
VARIANTS = {
    "old": dict(stages=[(100.0, 1e-9)], conv_check=True),
    "no-check": dict(stages=[(100.0, 1e-9)]),
    "tol-1e-7": dict(stages=[(100.0, 1e-7)]),
    "coarse-start": dict(stages=[(50.0, 1e-5), (100.0, 1e-7)]),
    "model-guess": dict(stages=[(100.0, 1e-7)], model_guess=True),
    "precision-1e-7": dict(stages=[(100.0, 1e-7)], precision=1e-7),
    "precision-1e-6": dict(stages=[(100.0, 1e-7)], precision=1e-6),
    "precision-1e-5": dict(stages=[(100.0, 1e-7)], precision=1e-5),
    "precision-1e-6-multigrid": dict(stages=[(100.0, 1e-7)], extra=_multigrid_precision(1e-6)),
}


def run_variant(mol, stages, conv_check=False, precision=None, extra=None, model_guess=False):
    """(density matrix, per-stage rows) of one variant; CPU seconds of this process."""
    fast = get_preset("fast")
    placed, grid = place_in_box(mol, 2, 4.0)
    rows, dm = [], None
    if model_guess:
        from rhosr.dft.guess import guess_from_density
        from rhosr.predict import predict

        c0 = time.process_time()
        pred = predict(mol)
        if pred.grid != grid:
            raise ValueError("the model's box differs from the label box")
        mf = make_scf(build_cell(placed, grid, 100.0, fast.basis, fast.pseudo), fast)
        dm = guess_from_density(mf, pred.density)
        rows.append({"stage": "guess", "cycles": 0, "cpu": time.process_time() - c0})
    for ke, tol in stages:
        c0 = time.process_time()
        mf = make_scf(build_cell(placed, grid, ke, fast.basis, fast.pseudo, precision=precision), fast)
        mf.conv_tol, mf.conv_check = tol, conv_check
        if extra is not None:
            extra(mf)
        cycles = [0]
        mf.callback = lambda envs, cycles=cycles: cycles.__setitem__(0, cycles[0] + 1)
        mf.kernel(dm)
        dm = np.asarray(mf.make_rdm1())
        rows.append({"stage": f"{ke:g} Ha", "cycles": cycles[0], "converged": bool(mf.converged),
                     "cpu": time.process_time() - c0, "energy": float(mf.e_tot)})
    return placed, grid, dm, rows


def measure(molecules: list[str], variants: list[str], rho_dir: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from paper_labels import paper_label

    set_threads(1)
    rho_dir.mkdir(parents=True, exist_ok=True)
    for spec in molecules:
        mol = read_molecule(spec)
        rho_paper, _ = paper_label(mol)
        for name in variants:
            placed, grid, dm, stages = run_variant(mol, **VARIANTS[name])
            rho = density_on_mesh(placed, grid, dm, "multigrid", get_preset("fast").basis)
            np.save(rho_dir / f"{mol.name}_{name}.npy", rho)
            old = rho_dir / f"{mol.name}_old.npy"
            row = {"molecule": mol.name, "variant": name, "stages": stages,
                   "cpu": sum(s["cpu"] for s in stages), "cycles": sum(s["cycles"] for s in stages),
                   "err_paper": _err(rho, rho_paper, grid.voxel_volume(), mol.n_valence),
                   "err_old": _err(rho, np.load(old), grid.voxel_volume(), mol.n_valence)
                   if old.exists() else None}
            with open(ROWS, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def _err(rho, ref, voxel: float, n_e: float) -> float:
    from rhosr.metrics import err_rho

    return err_rho(rho, ref, voxel, n_e)


def report() -> None:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    last = {(r["molecule"], r["variant"]): r for r in rows}
    molecules = sorted({m for m, _ in last})
    lines = [
        "# Levers on the cost of a `fast` label (one thread, SCF CPU seconds)",
        "",
        "Rows from `OMP_NUM_THREADS=1 python benchmarks/label_levers.py --molecules ... --variants "
        "...` (several runs on a shared, busy machine: CPU seconds, not wall time); table by "
        "`python benchmarks/label_levers.py --report`. Ratio: CPU seconds over the `old` "
        "variant's for the same molecule. Err_rho in percent.",
        "",
        "| variant | molecules | mean CPU ratio vs old | mean cycles | mean Err_rho vs paper "
        "| max Err_rho vs paper | max Err_rho vs old |",
        "|---|---|---|---|---|---|---|",
    ]
    per_molecule = []
    for name in VARIANTS:
        got = [last[(m, name)] for m in molecules if (m, name) in last and (m, "old") in last]
        if not got:
            continue
        ratios = [r["cpu"] / last[(r["molecule"], "old")]["cpu"] for r in got]
        err_old = [r["err_old"] for r in got if r["err_old"] is not None]
        cycles = np.mean([r["cycles"] for r in got])
        lines.append(f"| {name} | {len(got)} | {np.mean(ratios):.3f} | {cycles:.1f} "
                     f"| {np.mean([r['err_paper'] for r in got]):.4f} "
                     f"| {np.max([r['err_paper'] for r in got]):.4f} "
                     f"| {max(err_old) if err_old else float('nan'):.4f} |")
        for r, ratio in zip(got, ratios):
            stages = " + ".join(f"{s['stage']}: {s['cycles']} cycles, {s['cpu']:.1f} s" for s in r["stages"])
            per_molecule.append(f"| {r['molecule']} | {name} | {r['cpu']:.1f} | {ratio:.3f} | {stages} "
                                f"| {r['err_paper']:.4f} | "
                                + (f"{r['err_old']:.4f} |" if r["err_old"] is not None else "- |"))
    lines += ["", "| molecule | variant | CPU s | ratio | stages | Err_rho vs paper | vs old |",
              "|---|---|---|---|---|---|---|", *sorted(per_molecule), ""]
    (RESULTS / "label_levers.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=["qm9:30000"], help="e.g. qm9:30000")
    parser.add_argument("--variants", default="old,tol-1e-7,precision-1e-6",
                        help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--rho-dir", type=Path, default=Path.home() / ".cache/rhosr/label_levers")
    parser.add_argument("--report", action="store_true", help="only write label_levers.md")
    args = parser.parse_args()
    if not args.report:
        measure(args.molecules, args.variants.split(","), args.rho_dir)
    report()


if __name__ == "__main__":
    main()
