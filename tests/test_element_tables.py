"""The shipped element tables equal a fresh PySCF computation; the SAD needs no PySCF."""

from __future__ import annotations

import numpy as np
import pytest

from rhosr import element_tables
from rhosr.molecule import (
    LABEL_BASIS,
    PSEUDO,
    SAD_BASIS,
    _closest_pair,
    _pyscf_has_basis,
    _pyscf_n_basis_functions,
    _pyscf_valence,
    has_basis,
    n_basis_functions,
    valence_electrons,
)
from rhosr.sad import _electrons_per_atom, atomic_density_matrix, compute_separable_atom, separable_atom


def _stored_elements() -> list[str]:
    return sorted({key.split("/")[0] for key in element_tables._tables()})


def test_element_tables_hold_every_element_pyscf_has():
    from ase.data import chemical_symbols

    stored = set(_stored_elements())
    with_pseudo = {s for s in chemical_symbols[1:] if _pyscf_valence(s) is not None}
    assert stored == with_pseudo and {"H", "C", "N", "O", "F", "P", "S", "Cl"} <= stored
    for symbol in sorted(stored):
        assert valence_electrons(symbol) == _pyscf_valence(symbol), symbol
        for basis in (LABEL_BASIS, SAD_BASIS):
            assert has_basis(symbol, basis) == _pyscf_has_basis(symbol, basis), (symbol, basis)
        if has_basis(symbol, LABEL_BASIS):
            assert n_basis_functions(symbol) == _pyscf_n_basis_functions(symbol, LABEL_BASIS), symbol


@pytest.mark.parametrize("symbol", ["H", "C", "N", "O", "F", "P", "S", "Cl", "Si"])
@pytest.mark.parametrize("atrocious", [False, True])
def test_element_tables_sad_atom_is_pyscf_s(symbol, atrocious):
    """Same terms and the same density ``sum_k n_k psi_k psi_k`` (eigenvectors of degenerate p
    orbitals may differ by a rotation, the density may not)."""
    stored, fresh = separable_atom(symbol, atrocious), compute_separable_atom(symbol, atrocious)
    np.testing.assert_array_equal(stored.exponents, fresh.exponents)
    np.testing.assert_array_equal(stored.powers, fresh.powers)
    assert stored.radius == fresh.radius
    pair = [np.einsum("k,tk,uk->tu", a.occupation, a.weights, a.weights) for a in (stored, fresh)]
    np.testing.assert_allclose(pair[0], pair[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("symbol", ["H", "O", "Cl"])
@pytest.mark.parametrize("lengths", [(9.0, 10.0, 11.0), (6.0, 15.0, 7.0)])
def test_element_tables_electrons_per_atom_is_the_periodic_overlap_trace(symbol, lengths):
    """``Tr(D S)`` with the periodic overlap from the 1D lattice sums equals PySCF's
    ``pbc_intor('int1e_ovlp')`` (small boxes, where the images overlap)."""
    from pyscf.pbc import gto as pbcgto

    cell = pbcgto.Cell()
    cell.atom = [(symbol, (0.0, 0.0, 0.0))]
    cell.a = np.diag(lengths)
    cell.unit = "B"
    cell.basis = LABEL_BASIS
    cell.pseudo = PSEUDO
    cell.spin = valence_electrons(symbol) % 2
    cell.verbose = 0
    cell.build()
    expected = np.einsum("ij,ji->", atomic_density_matrix(symbol), cell.pbc_intor("int1e_ovlp"))
    assert _electrons_per_atom(symbol, False, lengths) == pytest.approx(expected, rel=1e-10)


def test_element_tables_unknown_keys_fall_back():
    assert element_tables.lookup("Xx/valence") is None
    assert element_tables.sad_atom_arrays("Au", False) is None  # no GTH-TZV2P: not stored


def test_closest_pair_small_and_large_agree():
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 10, size=(200, 3))
    i, j, d = _closest_pair(pos)
    dist, idx = cKDTree(pos).query(pos, k=2)
    assert d == pytest.approx(dist[:, 1].min(), rel=1e-12)
    assert {i, j} == {int(np.argmin(dist[:, 1])), int(idx[np.argmin(dist[:, 1]), 1])}
    big = rng.uniform(0, 60, size=(600, 3))
    assert _closest_pair(big)[2] == pytest.approx(cKDTree(big).query(big, k=2)[0][:, 1].min())


def test_predict_imports_neither_pyscf_nor_scipy(tmp_path):
    """A one-molecule prediction of QM9 elements never loads PySCF or SciPy (their imports
    were ~1 s of the call)."""
    import subprocess
    import sys

    code = ("import sys; from rhosr.cli import main; "
            f"assert main(['predict', 'qm9:3', '-o', {str(tmp_path / 'w.cube')!r}, '--quiet']) == 0; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyscf', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr
