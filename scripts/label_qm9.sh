#!/usr/bin/env bash
# Grow the QM9 training store in the background, stage by stage (each stage resumes).
# Usage: [THREADS=n] scripts/label_qm9.sh [WORKERS]   store: ${RHOSR_STORE:-$HOME/.cache/rhosr/stores/qm9_fast}
# Stages (each resumes; later ones extend earlier ones): 100 validation, 1000 train, 250 test,
# 200 validation, 3000 train (the data of issue G: training set, fixed validation, held-out test).
set -u
WORKERS=${1:-2}
STORE=${RHOSR_STORE:-$HOME/.cache/rhosr/stores/qm9_fast}
RHOSR=${RHOSR:-$(dirname "$0")/../.venv/bin/rhosr}
mkdir -p "$(dirname "$STORE")"
for stage in "validation 100" "train 1000" "test 250" "validation 200" "train 3000"; do
  set -- $stage
  "$RHOSR" label qm9 --store "$STORE" --preset fast --split "$1" --limit "$2" --workers "$WORKERS" ${THREADS:+--threads-per-worker $THREADS}
done
