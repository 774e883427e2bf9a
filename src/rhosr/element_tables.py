"""Per-element facts computed once with PySCF and shipped, so that prediction needs no PySCF.

Importing PySCF and building its atoms costs ~1 s of a one-molecule ``rhosr predict`` (the
valence count from the GTH pseudopotential, the basis checks, the SAD atoms). These values do
not depend on the molecule, so ``rhosr/data/element_tables.npz`` holds them for every element
with a GTH-PBE pseudopotential, written by :func:`write_tables` (``python -m
rhosr.element_tables``) with the PySCF the package depends on; ``tests/test_element_tables.py``
checks them against a fresh PySCF computation. An element or basis not in the file falls back
to PySCF itself.

Per element ``X``: ``X/valence`` (GTH-PBE valence electrons), ``X/has/BASIS`` for the label
(GTH-TZV2P) and SAD (GTH-SZV) bases, ``X/nbas`` (spherical GTH-TZV2P functions), and for the
SAD atom (``X/sad/plain`` and ``X/sad/atrocious``) the arrays of
:class:`rhosr.sad.SeparableAtom`: ``exponents``, ``powers``, ``weights``, ``occupation``,
``radius``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

TABLES = Path(__file__).parent / "data" / "element_tables.npz"
SAD_FIELDS = ("exponents", "powers", "weights", "occupation", "radius")


@functools.cache
def _tables() -> dict:
    if not TABLES.exists():
        return {}
    with np.load(TABLES) as data:
        return {key: data[key] for key in data.files}


def lookup(key: str):
    """The stored array (or scalar) ``key``, or None when the table does not have it."""
    value = _tables().get(key)
    if value is None:
        return None
    return value.item() if value.ndim == 0 else value


def sad_atom_arrays(symbol: str, atrocious: bool) -> dict | None:
    """The stored SAD atom of ``symbol`` as a dict of :data:`SAD_FIELDS`, or None."""
    prefix = f"{symbol}/sad/{'atrocious' if atrocious else 'plain'}/"
    values = {f: lookup(prefix + f) for f in SAD_FIELDS}
    return None if any(v is None for v in values.values()) else values


def write_tables(path: Path = TABLES) -> int:
    """Compute every element's entries with PySCF and write them to ``path``; returns how many
    elements."""
    from ase.data import chemical_symbols

    from rhosr.molecule import LABEL_BASIS, SAD_BASIS, _pyscf_has_basis, _pyscf_valence
    from rhosr.sad import compute_separable_atom

    out: dict[str, np.ndarray] = {}
    n = 0
    for symbol in chemical_symbols[1:]:
        valence = _pyscf_valence(symbol)
        if valence is None:
            continue
        n += 1
        out[f"{symbol}/valence"] = np.array(valence)
        has = {basis: _pyscf_has_basis(symbol, basis) for basis in (LABEL_BASIS, SAD_BASIS)}
        for basis, value in has.items():
            out[f"{symbol}/has/{basis}"] = np.array(value)
        if not all(has.values()):
            continue
        from rhosr.molecule import _pyscf_n_basis_functions

        out[f"{symbol}/nbas"] = np.array(_pyscf_n_basis_functions(symbol, LABEL_BASIS))
        for atrocious in (False, True):
            try:
                atom = compute_separable_atom(symbol, atrocious)
            except Exception:  # noqa: BLE001 (left to PySCF at run time, which says why)
                continue
            prefix = f"{symbol}/sad/{'atrocious' if atrocious else 'plain'}/"
            for f in SAD_FIELDS:
                out[prefix + f] = np.asarray(getattr(atom, f))
    np.savez_compressed(path, **out)
    _tables.cache_clear()
    return n


if __name__ == "__main__":
    print(f"{write_tables()} elements -> {TABLES}")
