"""Tiled inference on a ~1000-atom water cluster: time and peak memory, tiled vs whole box.

Builds the 7x7x7 water cluster of ``sad_scaling.py`` (1029 atoms), then predicts its density
with a model (default: the shipped one) in a fresh subprocess per setting, so that each peak
memory (``ru_maxrss``) is its own: whole box (if asked) and tiles under ``--max-memory`` GB.
Where both ran, prints the largest relative difference between them.

    OMP_NUM_THREADS=2 python benchmarks/predict_large.py --max-memory 2 [--whole] [--model M]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent

CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {here!r})
from sad_scaling import water_cluster
from rhosr.predict import predict
mol = water_cluster(({n}, {n}, {n}))
t0 = time.perf_counter()
result = predict(mol, {model!r}, max_memory_gb={max_memory!r})
elapsed = time.perf_counter() - t0
np.save({out!r}, result.density)
print(json.dumps({{"atoms": len(mol.atoms), "fine_mesh": result.grid.fine_mesh, "seconds": elapsed,
                  "sad_s": result.timings["sad_s"], "model_s": result.timings["model_s"],
                  "tile": result.timings["tile"], "electrons": result.n_electrons,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}}))
"""


def run(n: int, model, max_memory, out: str) -> dict:
    code = CHILD.format(here=str(HERE), n=n, model=model, max_memory=max_memory, out=out)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=7, help="waters per cube edge (7: 1029 atoms)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-memory", type=float, default=2.0, help="GB for one tile's forward pass")
    ap.add_argument("--whole", action="store_true", help="also run the whole box at once")
    ap.add_argument("--out", default=str(HERE / "results" / "predict_large.md"))
    args = ap.parse_args()
    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = [("tiled", args.max_memory)] + ([("whole box", None)] if args.whole else [])
        arrays = {}
        for name, mem in settings:
            path = f"{tmp}/{name.replace(' ', '_')}.npy"
            r = run(args.n, args.model, mem, path)
            arrays[name] = np.load(path)
            rows.append((name, r))
            print(name, r, flush=True)
        diff = None
        if len(arrays) == 2:
            a, b = arrays["tiled"], arrays["whole box"]
            diff = float(np.abs(a - b).max() / np.abs(b).max())
    lines = [
        "# Tiled inference of a 1029-atom water cluster",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} "
        f"{' '.join(['python', *sys.argv])}`"
        " (time and memory depend on the model's architecture, not on its weights)",
        "",
        "| setting | atoms | fine mesh | tile (coarse) | SAD s | model s | total s | peak memory GB "
        "| electrons |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['atoms']} | {'x'.join(map(str, r['fine_mesh']))} | {r['tile']} | "
            f"{r['sad_s']:.1f} | {r['model_s']:.1f} | {r['seconds']:.1f} | {r['peak_gb']:.2f} | "
            f"{r['electrons']:.3f} |"
        )
    if diff is not None:
        lines += ["", f"Largest |tiled - whole| / max(whole): {diff:.2e}"]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
