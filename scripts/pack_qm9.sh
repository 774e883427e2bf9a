#!/usr/bin/env bash
# Pack a QM9 store by split into data/packs/NAME/SPLIT/part-NNNN.tar (shards of ~SHARD_MB MB): the
# labelled molecules a new machine rebuilds its training store from, with no DFT:
#   rhosr store unpack data/packs/qm9_fast --store ~/.cache/rhosr/stores/qm9_fast --workers 2
# Usage: scripts/pack_qm9.sh [RUN_DIR]
#   RUN_DIR (optional): a training run folder; its train_ids.json and validation_ids.json choose
#   exactly the molecules that run trained and validated on. Without it (and for the test split)
#   every entry of the split is packed.
# Store: ${RHOSR_STORE:-$HOME/.cache/rhosr/stores/qm9_fast}; output: ${RHOSR_PACKS:-data/packs/<store name>}.
# A re-run replaces each split's shards (the same molecules give the same bytes, so git sees no change).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STORE=${RHOSR_STORE:-$HOME/.cache/rhosr/stores/qm9_fast}
OUT=${RHOSR_PACKS:-$ROOT/data/packs/$(basename "$STORE")}
RHOSR=${RHOSR:-$ROOT/.venv/bin/rhosr}
PYTHON=${PYTHON:-$(dirname "$RHOSR")/python}
SHARD_MB=${SHARD_MB:-4}
RUN=${1:-}
counts=$("$RHOSR" store info "$STORE" --json)
for split in train validation test; do
  n=$(echo "$counts" | "$PYTHON" -c "import json, sys; print(json.load(sys.stdin)['per_split'].get('$split', 0))")
  if [ "$n" = 0 ]; then echo "$split: no entries in $STORE, skipped"; continue; fi
  ids=()
  if [ -n "$RUN" ] && [ -f "$RUN/${split}_ids.json" ]; then ids=(--ids "$RUN/${split}_ids.json"); fi
  "$RHOSR" store pack "$STORE" -o "$OUT/$split" --split "$split" --shard-mb "$SHARD_MB" "${ids[@]}"
done
du -sh "$OUT"
