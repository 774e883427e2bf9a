"""One-step DFT energies from predicted densities and from the SAD against the converged SCF.

For the first ``--n`` QM9 test molecules: the SCF on the fine (200 Hartree) mesh with the
``paper`` functional, basis and pseudopotential (the reference), then one-step DFT on the same
mesh from the model's density and from the SAD. MAE in meV of the total energy (Kohn-Sham
energy of the one-step density matrix, and Harris-Foulkes), HOMO, LUMO and gap, beside the
paper's Table 2 (E 3.0, HOMO 12.0, LUMO 9.5, gap 11.0 meV).

    OMP_NUM_THREADS=2 python benchmarks/onestep_qm9.py --n 30 [--model M]

The reference SCF and the SAD's one-step results do not depend on the model: they are kept in
``results/cache/onestep_qm9.jsonl`` (``result_cache.py``), so a rerun with a new model only
redoes the model's one-step, and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from rhosr.commands.onestep import HARTREE_EV
from rhosr.config import get_preset
from rhosr.dft.onestep import make_fine_mesh_scf, one_step
from rhosr.molecule import read_molecule
from rhosr.predict import model_folder, predict
from rhosr.qm9 import load_split
from rhosr.sad import sad_density

sys.path.insert(0, str(Path(__file__).parent))
from result_cache import ResultCache  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PAPER = {"energy_ks": 3.0, "homo": 12.0, "lumo": 9.5, "gap": 11.0}
KEYS = ("energy_ks", "energy_harris", "homo", "lumo", "gap")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    folder = model_folder(args.model)
    preset = get_preset("paper")
    errors = {"model": {k: [] for k in KEYS}, "SAD": {k: [] for k in KEYS}}
    cache = ResultCache("onestep_qm9")
    per_molecule = []
    for index in load_split()["test"][: args.n]:
        mol = read_molecule(f"qm9:{int(index)}")
        pred = predict(mol, folder)
        mf = make_fine_mesh_scf(pred.placed, pred.grid, preset)
        box = np.round(pred.grid.lengths, 6).tolist()
        key = f"qm9:{int(index)}|paper|fine mesh {pred.grid.fine_mesh}|box {box}"
        cached = cache.get(key)
        if cached is None:
            t0 = time.perf_counter()
            mf.kernel()
            occ = mf.mo_occ > 0
            ref = {"energy_ks": mf.e_tot, "energy_harris": mf.e_tot,
                   "homo": mf.mo_energy[occ].max(), "lumo": mf.mo_energy[~occ].min()}
            ref["gap"] = ref["lumo"] - ref["homo"]
            sad = one_step(mf, sad_density(pred.placed, pred.grid, "fine")).to_dict()
            cached = {"reference": {k: float(v) for k, v in ref.items()},
                      "SAD": {k: float(sad[k]) for k in KEYS},
                      "scf_seconds": time.perf_counter() - t0, "converged": bool(mf.converged),
                      "cycles": int(getattr(mf, "cycles", -1))}
            cache.put(key, cached)
        ref = cached["reference"]
        model = one_step(mf, pred.density).to_dict()
        row = {"index": int(index), "scf_seconds": cached["scf_seconds"], "converged": cached["converged"]}
        for name, result in (("model", model), ("SAD", cached["SAD"])):
            for k in KEYS:
                errors[name][k].append(abs(result[k] - ref[k]) * HARTREE_EV * 1000)
            row[name] = {k: errors[name][k][-1] for k in KEYS}
        per_molecule.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "# One-step DFT on QM9 test molecules: MAE against the converged SCF (meV)",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python {' '.join(sys.argv)}`; "
        f"model `{folder.name}`; reference: SCF with the `paper` settings on the same 200 Hartree mesh.",
        "",
        "| density, absolute error | E (KS of one-step dm) | E (Harris-Foulkes) | HOMO | LUMO | gap |",
        "|---|---|---|---|---|---|",
        *[
            f"| {name}, {stat} ({len(errs['homo'])} molecules) | "
            + " | ".join(f"{fn(errs[k]):.1f}" for k in KEYS)
            + " |"
            for name, errs in errors.items()
            for stat, fn in (("mean", np.mean), ("median", np.median))
        ],
        "| paper, Table 2 (ResNet) | 3.0 | - | 12.0 | 9.5 | 11.0 |",
        "",
        "Per molecule (absolute errors, meV): `onestep_qm9.json`.",
    ]
    (RESULTS / "onestep_qm9.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "onestep_qm9.json").write_text(json.dumps(per_molecule, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
