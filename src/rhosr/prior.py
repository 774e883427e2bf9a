"""A fitted prior: the SAD plus per-element radial corrections fitted to DFT labels.

A free atom's density (the SAD) is not an atom's density in a molecule: hydrogen gives some of
its electron away, oxygen takes some, every bonded atom contracts. The prior keeps the SAD and
adds, around each atom of a fitted element ``Z``, a spherical correction that is the same for
every atom of that element::

    prior(r) = SAD(r) + sum_A sum_k c[Z_A, k] * sum_images exp(-alpha_k |r - R_A - n L|^2)

in e/Bohr^3, ``r`` and ``R_A`` in Bohr, ``alpha_k`` in Bohr^-2 (:data:`DEFAULT_EXPONENTS`, an
even-tempered set from 0.2 to 25.6). The coefficients ``c`` are linear, so they are fitted in
closed form: least squares of ``label - SAD`` over every fine-mesh point of the training
molecules (:func:`fit_prior`, ``rhosr fit-prior``), with a small ridge. Atoms of an element
that was not fitted keep their SAD alone: a molecule with an element the prior never saw gets
exactly the SAD around it.

A periodic Gaussian on an orthorhombic lattice is a product of three 1D lattice sums
(:func:`rhosr.orbital_density.periodic_factors`), so each atom costs three short vectors and
one outer product per exponent. This module imports PySCF only through the SAD.
"""

from __future__ import annotations

import numpy as np

from rhosr.grid import BOHR_ANGSTROM, Grid
from rhosr.orbital_density import add_periodic_block, periodic_factors

DEFAULT_EXPONENTS: tuple[float, ...] = tuple(0.2 * 2.0**k for k in range(8))
"""Exponents (Bohr^-2) of the radial corrections: 0.2 to 25.6, doubling."""

GAUSSIAN_CUTOFF = 1e-9
"""A correction Gaussian is dropped where ``exp(-alpha d^2)`` falls below this."""

RIDGE = 1e-8
"""Ridge added to the diagonal of the normal equations, relative to its mean."""


def _radius(exponent: float) -> float:
    return float(np.sqrt(-np.log(GAUSSIAN_CUTOFF) / exponent))


def _atom_gaussians(centre_bohr: np.ndarray, grid: Grid, which: str, exponents) -> list:
    """Per exponent, per axis: the wrapped mesh indices within that Gaussian's reach and its 1D
    lattice sums, ``[(windows, (fx, fy, fz)), ...]`` (a sharp Gaussian touches few points)."""
    out = []
    for alpha in exponents:
        windows, factors = [], []
        for n, h, c in zip(grid.mesh(which), grid.spacing(which), centre_bohr):
            wrapped, values = periodic_factors(float(c), _radius(alpha), n, float(h),
                                               np.array([float(alpha)]), np.zeros(1, dtype=int))
            windows.append(wrapped)
            factors.append(values[0])
        out.append((windows, factors))
    return out


def correction_channels(mol, grid: Grid, which: str, elements, exponents) -> np.ndarray:
    """The fitting design ``(len(elements) * len(exponents), X, Y, Z)`` float32: channel
    ``e * n_exp + k`` is the sum over the atoms of ``elements[e]`` of their periodic Gaussian
    ``exp(-alpha_k d^2)`` (dimensionless). ``mol`` placed in the box (Angstrom)."""
    n_exp = len(exponents)
    out = np.zeros((len(elements) * n_exp, *grid.mesh(which)), dtype=np.float32)
    for symbol, position in zip(mol.symbols, mol.positions_angstrom / BOHR_ANGSTROM):
        if symbol not in elements:
            continue
        e = list(elements).index(symbol)
        for k, (windows, (fx, fy, fz)) in enumerate(_atom_gaussians(position, grid, which, exponents)):
            add_periodic_block(out[e * n_exp + k], windows, np.multiply.outer(np.multiply.outer(fx, fy), fz))
    return out


def prior_density(mol, grid: Grid, which: str, elements, exponents, coefficients) -> np.ndarray:
    """The prior ``(X, Y, Z)`` float32 in e/Bohr^3 on the ``which`` mesh (see the module
    docstring); ``coefficients[e][k]`` in e/Bohr^3 for ``elements[e]`` and ``exponents[k]``."""
    from rhosr.sad import sad_channels, sad_fine

    rho = sad_fine(mol, grid).astype(np.float64) if which == "fine" else sad_channels(mol, grid, which)[0]
    coeff = np.asarray(coefficients, dtype=float)
    for symbol, position in zip(mol.symbols, mol.positions_angstrom / BOHR_ANGSTROM):
        if symbol not in elements:
            continue
        c = coeff[list(elements).index(symbol)]
        for ck, (windows, (fx, fy, fz)) in zip(c, _atom_gaussians(position, grid, which, exponents)):
            if ck:
                add_periodic_block(rho, windows, ck * np.multiply.outer(np.multiply.outer(fx, fy), fz))
    return rho.astype(np.float32)


def fit_prior(store_path: str, ids: list[str], elements, exponents=DEFAULT_EXPONENTS,
              progress: bool = True) -> dict:
    """Least-squares coefficients ``(len(elements), len(exponents))`` of ``label - SAD`` over
    the fine mesh of the store entries ``ids`` (a ridge of :data:`RIDGE` times the mean diagonal).

    Returns ``{"coefficients": [[...], ...], "sad_err": [...], "prior_err": [...]}``: the
    coefficients (e/Bohr^3) and, per molecule, Err_rho (%) of the SAD and of the fitted prior."""
    from tqdm import tqdm

    from rhosr.inputs import entry_molecule
    from rhosr.sad import sad_fine
    from rhosr.store import DatasetStore

    store = DatasetStore.open(store_path)
    n = len(elements) * len(exponents)
    normal, rhs = np.zeros((n, n)), np.zeros(n)
    for entry_id in tqdm(ids, desc="fitting the prior", unit="mol", disable=not progress):
        entry = store.read_entry(entry_id, ("label",))
        grid = Grid.from_dict(entry.meta["grid"])
        mol = entry_molecule(entry.meta)
        design = correction_channels(mol, grid, "fine", elements, exponents).reshape(n, -1)
        residual = (np.asarray(entry.label, np.float64) - sad_fine(mol, grid)).ravel().astype(np.float32)
        normal += (design @ design.T).astype(np.float64)
        rhs += (design @ residual).astype(np.float64)
    used = np.diag(normal) > 0  # an element no training molecule has keeps zero corrections
    coeff = np.zeros(n)
    if used.any():
        sub = normal[np.ix_(used, used)]
        sub = sub + RIDGE * np.mean(np.diag(sub)) * np.eye(len(sub))
        coeff[used] = np.linalg.solve(sub, rhs[used])
    coefficients = coeff.reshape(len(elements), len(exponents))
    sad_err, prior_err = held_out_errors(store_path, ids, elements, exponents, coefficients)
    return {"coefficients": coefficients.tolist(), "sad_err": sad_err, "prior_err": prior_err}


def held_out_errors(store_path: str, ids: list[str], elements, exponents, coefficients
                    ) -> tuple[list[float], list[float]]:
    """Per store entry, Err_rho (%) of the SAD and of the prior (rescaled to N_e) against its label."""
    from rhosr.inputs import entry_molecule
    from rhosr.sad import sad_fine
    from rhosr.store import DatasetStore

    store = DatasetStore.open(store_path)
    sad_err, prior_err = [], []
    for entry_id in ids:
        entry = store.read_entry(entry_id, ("label",))
        grid = Grid.from_dict(entry.meta["grid"])
        mol = entry_molecule(entry.meta)
        label = np.asarray(entry.label, np.float64)
        dv, n_e = grid.voxel_volume("fine"), mol.n_valence
        sad_err.append(100 * np.abs(sad_fine(mol, grid) - label).sum() * dv / n_e)
        prior = prior_density(mol, grid, "fine", elements, exponents, coefficients)
        prior_err.append(100 * np.abs(rescaled(prior, n_e, dv) - label).sum() * dv / n_e)
    return sad_err, prior_err


def rescaled(rho: np.ndarray, n_electrons: float, voxel_volume: float) -> np.ndarray:
    """``max(rho, 0)`` scaled to integrate to ``n_electrons`` (what the model does to its output)."""
    rho = np.maximum(np.asarray(rho, np.float64), 0.0)
    return rho * (n_electrons / (rho.sum() * voxel_volume))
