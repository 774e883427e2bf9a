#!/usr/bin/env bash
# From a finished training run to the shipped default model and every figure issue G asks for,
# one resumable step after another (a step whose output exists is skipped; delete it to redo).
#   scripts/finish_model.sh RUN_DIR NAME [STORE]
# RUN_DIR: the run folder (`rhosr train --out`); NAME: the shipped model's name (e.g. qm9-bonded);
# STORE: the fast QM9 store it trained on (default ~/.cache/rhosr/stores/qm9_fast).
# Steps: export the run into benchmarks/results/training/NAME; `rhosr evaluate` on the store's
# test and validation splits; ship it (scripts/ship_model.py: weights, card, model.onnx); the
# S/Cl/P comparison; the one-step and SCF-start benchmarks on 30 test molecules; prediction
# against DFT through the command line. Run on a quiet machine (the timings are part of it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=${1:?RUN_DIR}
NAME=${2:?NAME}
STORE=${3:-$HOME/.cache/rhosr/stores/qm9_fast}
RHOSR=${RHOSR:-$ROOT/.venv/bin/rhosr}
PYTHON=${PYTHON:-$(dirname "$RHOSR")/python}
RESULTS=$ROOT/benchmarks/results
SLUG=${NAME//-/_}
cd "$ROOT"
step() { echo "== $*"; }

step "export the run"
"$PYTHON" scripts/export_run.py "$RUN" "$RESULTS/training/$SLUG" --no-weights  # the weights ship

for split in test validation; do
  out=$RESULTS/${SLUG}_$split
  if [ ! -f "$out/report.json" ]; then
    step "evaluate on the $split split"
    OMP_NUM_THREADS=2 "$RHOSR" evaluate --store "$STORE" --split "$split" --model "$RUN/best" -o "$out"
  fi
done

step "ship $NAME"
"$PYTHON" scripts/ship_model.py "$RUN" --name "$NAME" --test-report "$RESULTS/${SLUG}_test" \
  --validation-report "$RESULTS/${SLUG}_validation" \
  --command-train "${TRAIN_CMD:-rhosr train --store STORE --config $(basename "$RUN") --out runs/$(basename "$RUN")}" \
  --command-eval "rhosr evaluate --store STORE --split test --model $NAME -o benchmarks/results/${SLUG}_test"

step "molecules with S, Cl, P"
benchmarks/unseen_elements.sh "$NAME"

step "one-step DFT and the SCF start (30 test molecules)"
OMP_NUM_THREADS=2 "$PYTHON" benchmarks/onestep_qm9.py --n 30 --model "$NAME"
OMP_NUM_THREADS=2 "$PYTHON" benchmarks/scf_guess.py --n 30 --model "$NAME" --guesses minao --label-store "$STORE" --fresh

step "prediction against DFT through the command line"
"$PYTHON" benchmarks/predict_cli_vs_dft.py --n 10 --model "$NAME"
echo "done: set DEFAULT_MODEL in src/rhosr/predict.py to $NAME, then update README and docs"
