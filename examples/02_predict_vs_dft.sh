#!/usr/bin/env bash
# The main demo: predict the density of a QM9 test molecule (never trained on) with the model
# shipped in the package, compute its DFT label (`fast` preset), and compare both with the SAD.
# Writes out/pred.cube, out/dft.cube and pictures (out/pred.png, out/pred_error.png,
# out/pred_slices.png, out/pred.html).
set -euo pipefail
MOL=${1:-$(.venv/bin/python -c "from rhosr.qm9 import load_split; print(f'qm9:{load_split()[\"test\"][0]}')")}
OUT=${OUT:-out}
RHOSR=${RHOSR:-.venv/bin/rhosr}
mkdir -p "$OUT"
echo "== $MOL: DFT label (PySCF GPW, PBE, GTH-TZV2P, preset fast)"
TIMEFORMAT="DFT label: %R s wall"
time "$RHOSR" dft "$MOL" -o "$OUT/dft.cube" --preset fast --quiet
echo "== $MOL: model prediction, compared with the label"
"$RHOSR" predict "$MOL" -o "$OUT/pred.cube" --reference "$OUT/dft.cube" --png --html
echo "== wrote $OUT/pred.cube, $OUT/dft.cube, $OUT/pred.png, $OUT/pred_error.png, $OUT/pred_slices.png, $OUT/pred.html"
