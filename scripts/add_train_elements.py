"""Record in a model's ``model.json`` which elements its training molecules held.

    python scripts/add_train_elements.py MODEL_DIR --source qm9 --split train --limit N

For models trained before checkpoints recorded ``train_elements`` themselves: the training
molecules are re-read from their source (for a QM9 store, the first N molecules of the seeded
split's order, which is the order ``rhosr label`` labels them in), so the counts are measured,
not typed. ``rhosr predict`` warns about elements the model never or rarely saw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--source", required=True, help="what `rhosr label` read: qm9, a folder, ...")
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, required=True, help="how many molecules it trained on")
    args = ap.parse_args()
    from rhosr.molecule import element_counts
    from rhosr.sources import read_source

    items = read_source(args.source, args.split)[: args.limit]
    counts = element_counts(item.symbols for item in items)
    path = Path(args.model_dir) / "model.json"
    meta = json.loads(path.read_text())
    if meta.get("train_entries") not in (None, len(items)):
        raise SystemExit(f"{path}: trained on {meta['train_entries']} entries, not {len(items)}")
    meta["train_elements"] = counts
    path.write_text(json.dumps(meta, indent=2))
    print(f"{path}: train_elements {meta['train_elements']} ({len(items)} molecules)")


if __name__ == "__main__":
    main()
