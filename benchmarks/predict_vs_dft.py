"""Prediction time against DFT label time (``fast`` preset) on the same QM9 molecules.

For each molecule, in this one process and with the same threads: the ``fast`` DFT label
(SCF + density), the shipped model's prediction (SAD + network, after one warm-up call) and,
for comparison, the paper-size network (C=32, K=5, 32 blocks; untrained weights: the cost
does not depend on them) on the same box. Prints the ratio DFT time / prediction time.

    OMP_NUM_THREADS=2 python benchmarks/predict_vs_dft.py --split test --n 5
    OMP_NUM_THREADS=1 python benchmarks/predict_vs_dft.py --qm9 5 10 30 --md smallest.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rhosr.config import get_preset
from rhosr.dft import run_label
from rhosr.metrics import err_rho
from rhosr.model import build_model
from rhosr.molecule import read_molecule
from rhosr.predict import model_folder, predict
from rhosr.qm9 import load_split

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--qm9", type=int, nargs="+", default=None, help="these QM9 indices instead of a split")
    ap.add_argument("--md", type=Path, default=RESULTS / "predict_vs_dft.md", help="where to write the table")
    ap.add_argument("--model", default=None)
    ap.add_argument("--skip-paper", action="store_true", help="do not time the paper-size network")
    args = ap.parse_args()
    indices = args.qm9 or [int(i) for i in load_split()[args.split][: args.n]]
    folder = model_folder(args.model)
    predict(read_molecule("qm9:3"), folder)  # warm-up: load the model, fill SAD caches
    paper_trunk = {"name": "srresnet", "num_feat": 32, "kernel_first": 5, "kernel": 5, "num_block": 32}
    paper = None if args.skip_paper else build_model({"trunk": paper_trunk}).eval()
    rows, ratios = [], []
    for index in indices:
        mol = read_molecule(f"qm9:{index}")
        t0 = time.perf_counter()
        result = predict(mol, folder)
        t_pred = time.perf_counter() - t0
        label = run_label(mol, get_preset("fast"))
        t_dft = label.scf_seconds + label.density_seconds
        err = err_rho(result.density, label.rho, result.grid.voxel_volume(), mol.n_valence)
        t_paper = float("nan")
        if paper is not None:
            x = torch.as_tensor(result.sad, dtype=torch.float32)[None, None]
            with torch.inference_mode():
                t0 = time.perf_counter()
                paper(x)
                t_paper = time.perf_counter() - t0
        ratios.append(t_dft / t_pred)
        rows.append(
            f"| {index} | {mol.atoms.get_chemical_formula()} | {'x'.join(map(str, result.grid.fine_mesh))} | "
            f"{t_dft:.1f} | {t_pred:.2f} | {t_dft / t_pred:.0f} | {t_paper:.1f} | {err:.2f} |"
        )
        print(rows[-1], flush=True)
    lines = [
        "# Prediction vs DFT label time (same molecules, same process)",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python "
        f"{' '.join(sys.argv)}`; model `{folder.name}`; torch threads {torch.get_num_threads()}.",
        "",
        f"DFT (`fast`) / prediction time: mean ratio **{np.mean(ratios):.0f}x** "
        f"(min {np.min(ratios):.0f}x) over {len(ratios)} {'QM9' if args.qm9 else args.split} molecules.",
        "",
        "| QM9 index | formula | fine mesh | DFT s | predict s (SAD + model) | ratio | paper-size net s "
        "| Err_rho model vs this label (%) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    args.md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
