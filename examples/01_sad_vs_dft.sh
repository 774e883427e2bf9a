#!/usr/bin/env bash
# The demo: SAD input and DFT label of a QM9 molecule, and how far apart they are.
# Until the trained model ships (issue C) this is the whole data path of rhosr.
set -euo pipefail
MOL=${1:-qm9:3}     # water; any QM9 index, structure file or SMILES works
OUT=${OUT:-out}
RHOSR=${RHOSR:-.venv/bin/rhosr}
mkdir -p "$OUT"
"$RHOSR" sad "$MOL" -o "$OUT/sad_fine.cube" --mesh fine
"$RHOSR" sad "$MOL" -o "$OUT/sad_coarse.cube"
"$RHOSR" dft "$MOL" -o "$OUT/dft.cube" --preset fast --json "$OUT/dft.json" --quiet
echo "SAD input vs DFT label (fine mesh):"
"$RHOSR" error "$OUT/sad_fine.cube" "$OUT/dft.cube"
