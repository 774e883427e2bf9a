#!/usr/bin/env bash
# A model on molecules with elements QM9 never had (S, Cl, P), against its own prior and the SAD.
# The five geometries are in benchmarks/data/scl_p/ (RDKit from SMILES, committed). Each is
# labelled with `rhosr dft --preset fast` (kept in WORK/ref and reused), predicted with
# `rhosr predict`, and compared with `rhosr evaluate --cubes ... --model MODEL`, which also
# reports the error of the model's base alone (its prior).
# Usage: benchmarks/unseen_elements.sh [MODEL] [WORK]   (default: the shipped default model;
#        WORK ${TMPDIR:-/tmp}/rhosr_unseen). Writes benchmarks/results/unseen_elements.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RHOSR=${RHOSR:-$ROOT/.venv/bin/rhosr}
PYTHON=${PYTHON:-$(dirname "$RHOSR")/python}
MODEL=${1:-$("$PYTHON" -c "from rhosr.predict import DEFAULT_MODEL; print(DEFAULT_MODEL)")}
WORK=${2:-${TMPDIR:-/tmp}/rhosr_unseen}
mkdir -p "$WORK/ref"
for xyz in "$ROOT"/benchmarks/data/scl_p/*.xyz; do
  name=$(basename "$xyz" .xyz)
  [ -f "$WORK/ref/$name.cube" ] || "$RHOSR" dft "$xyz" -o "$WORK/ref/$name.cube" --preset fast --quiet
done
rm -rf "$WORK/pred" "$WORK/report"
"$RHOSR" predict "$ROOT"/benchmarks/data/scl_p/*.xyz -o "$WORK/pred/" --quiet --model "$MODEL"
"$RHOSR" evaluate --cubes "$WORK/pred" "$WORK/ref" --model "$MODEL" -o "$WORK/report"
{
  echo "# Molecules with S, Cl and P (never in QM9): the model against its prior and the SAD"
  echo
  echo "Command: \`benchmarks/unseen_elements.sh $MODEL\`; references: \`rhosr dft --preset fast\` on the"
  echo "five geometries of \`benchmarks/data/scl_p/\` (thiophene, chlorobenzene, dimethyl sulfoxide,"
  echo "methylphosphine, 2-chloroethanol)."
  echo
  sed -n '/^[0-9]* molecules/,$p' "$WORK/report/report.md"
  echo
  echo "Per molecule (Err_rho %):"
  echo
  echo "| molecule | model | the model's base alone | SAD input |"
  echo "|---|---|---|---|"
  tail -n +2 "$WORK/report/molecules.csv" | awk -F, '{printf "| %s | %.2f | %.2f | %.2f |\n", $1, $4, $6, $5}'
} > "$ROOT/benchmarks/results/unseen_elements.md"
cat "$ROOT/benchmarks/results/unseen_elements.md"
