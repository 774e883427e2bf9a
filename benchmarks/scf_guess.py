"""SCF cycles and wall time from the model's guess against PySCF's ``minao`` and ``atom``.

For the first ``--n`` QM9 test molecules, ``fast`` preset, the same box for every guess (the
model's). The model guess's time includes the prediction and the one-step diagonalisation.

    OMP_NUM_THREADS=2 python benchmarks/scf_guess.py --n 30 [--model M]

The ``minao`` and ``atom`` runs do not depend on the model: they are kept in
``results/cache/scf_guess.jsonl`` (``result_cache.py``), so a rerun with a new model only redoes
the model's SCF, and an interrupted run resumes. Their wall times were measured when cached:
compare them with model times from the same machine and thread count (the table gives the
thread count of each).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from rhosr.commands.scf import run_scf
from rhosr.molecule import read_molecule
from rhosr.predict import load_predictor, model_folder
from rhosr.qm9 import load_split

sys.path.insert(0, str(Path(__file__).parent))
from result_cache import ResultCache  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GUESSES = ("model", "minao", "atom")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    folder = model_folder(args.model)
    margin = float(load_predictor(folder)[1]["grid"].get("margin_angstrom", 4.0))
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    cache = ResultCache("scf_guess")
    rows, runs = [], []
    for index in load_split()["test"][: args.n]:
        mol = read_molecule(f"qm9:{int(index)}")
        out = {"model": run_scf(mol, "model", "fast", folder, margin)}
        out["model"]["threads"] = threads
        for g in GUESSES[1:]:
            key = f"qm9:{int(index)}|fast|margin={margin}|{g}"
            if cache.get(key) is None:
                cache.put(key, {**run_scf(mol, g, "fast", folder, margin), "threads": threads})
            out[g] = cache.get(key)
        runs.append(out)
        de = max(abs(out[g]["energy"] - out["minao"]["energy"]) for g in GUESSES)
        rows.append(
            f"| {int(index)} | "
            + " | ".join(f"{out[g]['cycles']}" for g in GUESSES)
            + " | "
            + " | ".join(f"{out[g]['total_seconds']:.1f}" for g in GUESSES)
            + f" | {de:.1e} |"
        )
        print(rows[-1], flush=True)
    mean = {
        g: (np.mean([r[g]["cycles"] for r in runs]), np.mean([r[g]["total_seconds"] for r in runs]))
        for g in GUESSES
    }
    lines = [
        "# SCF from the model's density vs PySCF's guesses (`fast` preset)",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python {' '.join(sys.argv)}`; "
        f"model `{folder.name}`.",
        "",
        "| guess | mean cycles | mean wall s (incl. prediction for model) | OMP threads when measured |",
        "|---|---|---|---|",
        *[f"| {g} | {c:.1f} | {t:.1f} | {', '.join(sorted({str(r[g].get('threads', '?')) for r in runs}))} |"
          for g, (c, t) in mean.items()],
        "",
        f"Cycles saved vs minao: {100 * (1 - mean['model'][0] / mean['minao'][0]):.1f} %; wall time saved: "
        f"{100 * (1 - mean['model'][1] / mean['minao'][1]):.1f} %.",
        "",
        "| QM9 index | cycles model | minao | atom | s model | minao | atom | max |dE| vs minao (Ha) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    (RESULTS / "scf_guess.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "scf_guess.json").write_text(json.dumps(runs, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
