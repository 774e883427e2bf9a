"""DFT label cost per preset and each preset's distance from the ``paper`` reference.

For each QM9 molecule: the ``paper`` label (200 Hartree SCF mesh, conv_tol 1e-11, exact
density) and every other preset's label; Err_rho of each against ``paper``, SCF and density
seconds, SCF cycles, energy difference. Writes results/dft_presets.md.

Run: ``OMP_NUM_THREADS=1 python benchmarks/dft_presets.py [--qm9 30000 44747 89009]``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from rhosr.config import PRESETS
from rhosr.dft import run_label
from rhosr.metrics import err_rho
from rhosr.molecule import read_molecule

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qm9", type=int, nargs="+", default=[30000, 44747, 89009])
    args = parser.parse_args()
    rows, per_preset = [], {name: {"err": [], "seconds": []} for name in PRESETS}
    for index in args.qm9:
        mol = read_molecule(f"qm9:{index}")
        labels = {name: run_label(mol, preset) for name, preset in PRESETS.items()}
        ref = labels["paper"]
        for name, lab in labels.items():
            err = err_rho(lab.rho, ref.rho, ref.grid.voxel_volume(), mol.n_valence)
            seconds = lab.scf_seconds + lab.density_seconds
            per_preset[name]["err"].append(err)
            per_preset[name]["seconds"].append(seconds)
            rows.append(f"| {index} | {lab.mol.atoms.get_chemical_formula()} | {name} | {err:.4f} | "
                        f"{1e6 * (lab.energy - ref.energy):.1f} | {lab.cycles} | {lab.scf_seconds:.1f} | "
                        f"{lab.density_seconds:.1f} | {seconds:.1f} |")
            print(rows[-1], flush=True)
    summary = [
        f"| {name} | {np.mean(v['err']):.4f} | {np.max(v['err']):.4f} | {np.mean(v['seconds']):.1f} |"
        for name, v in per_preset.items()
    ]
    lines = [
        "# DFT presets: cost and distance from the paper's settings",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python "
        f"benchmarks/dft_presets.py --qm9 {' '.join(map(str, args.qm9))}` (authors' boxes).",
        "",
        "| preset | mean Err_rho vs paper (%) | max (%) | mean seconds per molecule |",
        "|---|---|---|---|",
        *summary,
        "",
        "| QM9 index | formula | preset | Err_rho vs paper (%) | E - E_paper (micro-Hartree) | cycles "
        "| SCF s | density s | total s |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    (RESULTS / "dft_presets.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
