#!/usr/bin/env bash
# Grow the QM9 training store in the background, stage by stage (each stage resumes).
# Usage: [THREADS=n] scripts/label_qm9.sh [WORKERS]   store: ${RHOSR_STORE:-$HOME/.cache/rhosr/stores/qm9_fast}
# Stages (each resumes; later ones extend earlier ones): 200 test, 100 validation, 300 train,
# 150 validation, 250 test, 1500 train, 3000 train.
set -u
WORKERS=${1:-2}
STORE=${RHOSR_STORE:-$HOME/.cache/rhosr/stores/qm9_fast}
RHOSR=${RHOSR:-$(dirname "$0")/../.venv/bin/rhosr}
mkdir -p "$(dirname "$STORE")"
for stage in "test 200" "validation 100" "train 300" "validation 150" "test 250" "train 1500" "train 3000"; do
  set -- $stage
  "$RHOSR" label qm9 --store "$STORE" --preset fast --split "$1" --limit "$2" --workers "$WORKERS" ${THREADS:+--threads-per-worker $THREADS}
done
