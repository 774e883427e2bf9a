"""QM9 geometries from the PyPI package ``qm9pack`` (shipped with it: no download).

``qm9pack``'s own ``get_data`` needs ``pkg_resources`` and loads every column with pandas, so
we read its CSV files directly, streaming, and keep only the symbols and the geometry
(Angstrom). Indices are QM9's own (1 = CH4, 2 = NH3, ...); qm9pack holds the 130,831
molecules of the "consistent" subset, so some indices are absent.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from rhosr.errors import InputError

_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


def data_folder() -> Path:
    """The folder of qm9pack's CSV files (found without importing qm9pack)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("QM9 molecules need the 'qm9pack' package: pip install qm9pack")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _parse_xyz(text: str) -> np.ndarray:
    """qm9pack stores positions as Python-literal text, sometimes with Mathematica '*^'."""
    return np.asarray(ast.literal_eval(text.replace("*^", "e")), dtype=float).reshape(-1, 3)


def iter_qm9(indices: Iterable[int] | None = None) -> Iterator[tuple[int, list[str], np.ndarray]]:
    """Yield ``(index, symbols, positions_angstrom)`` in file order.

    With ``indices`` given, only those are parsed and iteration stops once all were found.
    """
    wanted = None if indices is None else set(int(i) for i in indices)
    csv.field_size_limit(1 << 30)
    for part in _PARTS:
        with open(data_folder() / part, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            col_index = header.index("Index")
            col_elements = header.index("Elements")
            col_xyz = header.index("XYZ_Ang")
            for row in reader:
                index = int(row[col_index])
                if wanted is not None and index not in wanted:
                    continue
                symbols = list(ast.literal_eval(row[col_elements]))
                yield index, symbols, _parse_xyz(row[col_xyz])
                if wanted is not None:
                    wanted.discard(index)
                    if not wanted:
                        return


_PREFETCHED: dict[int, tuple[list[str], np.ndarray]] = {}


def prefetch(indices: Iterable[int]) -> None:
    """Read these QM9 molecules in one pass over the files (each :func:`load_qm9` alone scans
    them up to its molecule: ~0.4 s for an index near the end), for :func:`load_qm9` to return."""
    wanted = {int(i) for i in indices} - set(_PREFETCHED)
    if len(wanted) > 1:
        for index, symbols, positions in iter_qm9(wanted):
            _PREFETCHED[index] = (symbols, positions)


def load_qm9(index: int) -> tuple[list[str], np.ndarray]:
    """Symbols and positions (Angstrom) of QM9 molecule ``index``."""
    if int(index) in _PREFETCHED:
        symbols, positions = _PREFETCHED[int(index)]
        return list(symbols), positions.copy()
    for _, symbols, positions in iter_qm9([index]):
        return symbols, positions
    raise InputError(f"QM9 index {index} is not in qm9pack (valid: 1..133885, consistent subset)")


# -- the committed split ----------------------------------------------------------------------
SPLIT_SEED = 20261127
SPLIT_SIZES = {"test": 10_000, "validation": 1_000}
SPLIT_FILE = Path(__file__).parent / "data" / "qm9_split.npz"


def make_split(seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The seeded QM9 split: 10,000 test and 1,000 validation molecules, the rest training.

    DeepDFT's split, which the paper followed, holds out 10,000 test molecules; its split file
    is not available offline, so ours is drawn the same size from a seeded permutation of the
    molecules qm9pack ships. Every split keeps the permuted order, so its first N molecules are
    a random sample for any N (QM9's index order is by size: the first molecules are the
    smallest, and a store labelled in index order would be a biased sample).
    """
    available = np.array([index for index, _, _ in iter_qm9()], dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(available)
    n_test, n_val = SPLIT_SIZES["test"], SPLIT_SIZES["validation"]
    return {"test": perm[:n_test], "validation": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}


def load_split() -> dict[str, np.ndarray]:
    """The committed split (``rhosr/data/qm9_split.npz``), written by ``make_split``."""
    with np.load(SPLIT_FILE) as data:
        return {name: data[name] for name in ("train", "validation", "test")}


if __name__ == "__main__":  # python -m rhosr.qm9 writes the committed split file
    SPLIT_FILE.parent.mkdir(exist_ok=True)
    np.savez_compressed(SPLIT_FILE, **make_split(), seed=SPLIT_SEED)
    print({name: len(v) for name, v in load_split().items()}, "->", SPLIT_FILE)
