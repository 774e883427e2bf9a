"""The density of a basis and its orbitals on a periodic mesh, in torch (no PySCF).

What it computes: the valence density ``rho(r) = sum_k n_k psi_k(r)^2`` of orbitals
``psi_k = sum_mu C_mu,k chi_mu`` (or of a density matrix ``D``, factorised first) at the
points of the periodic mesh, in e/Bohr^3, axes (x, y, z); point ``(i, j, k)`` of a mesh
``(nx, ny, nz)`` sits at ``(i/nx Lx, j/ny Ly, k/nz Lz)`` in the box frame (Bohr).

The atomic orbitals ``chi_mu`` are PySCF's spherical GTOs summed over the images of the
orthorhombic box, exactly what ``cell.pbc_eval_gto('GTOval', coords)`` returns for a
Gamma-point cell with ``cell.cart = False``: the same AO order (atom by atom, shell by shell
as listed in the basis, contraction by contraction, then ``m``; p as x, y, z and l >= 2 as
``m = -l..l``), the same normalisation (PySCF's ``gto_norm`` and normalised contractions) and
the same real solid harmonics (libcint's Cartesian-to-spherical transform). The basis comes
in PySCF's plain format, ``cell._basis[symbol]``: a list of ``[l, [exponent, c1, c2, ...],
...]`` shells with raw contraction coefficients.

How: a spherical GTO is a sum of Cartesian primitives ``x^a y^b z^c exp(-alpha r^2)``, and
such a primitive summed over the images of an orthorhombic lattice is a product of three 1D
lattice sums ``X(x) Y(y) Z(z)`` (:func:`periodic_factors`, shared with :mod:`rhosr.sad`).
An orbital is then ``psi_k = sum_t W_tk X_t Y_t Z_t`` over the primitives ``t`` of every
atom, and on a block of ``(x, y)`` columns it is one matrix product over the
``(atom, exponent, c)`` groups: ``psi[k, x, y, :] = H[k, x, y, g] @ Z[g, :]``. Each
exponent has its own cut-off radius, so a block sees only the primitives that reach it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rhosr.errors import InputError

if TYPE_CHECKING:
    import torch

AO_CUTOFF = 1e-11
"""A primitive is cut where its contribution to an orbital falls below this (Bohr^-3/2)."""

DM_TOL = 1e-9
"""Eigenvalues of a density matrix below this (in magnitude) are dropped by default."""

BLOCK = (8, 8, 128)
"""Mesh points per block (x, y, z): the orbitals are held on one block at a time."""

BLOCK_BYTES = 2**26
"""Largest memory of the orbital values on one block (bytes); a block is thinned in z to fit."""


def cartesian_powers(l: int) -> list[tuple[int, int, int]]:
    """PySCF's order of the Cartesian components ``(a, b, c)`` of angular momentum ``l``."""
    return [(lx, ly, l - lx - ly) for lx in range(l, -1, -1) for ly in range(l - lx, -1, -1)]


def solid_harmonics(l: int) -> np.ndarray:
    """``(2l+1, n_cart)``: real spherical harmonics ``r^l Y_lm`` as sums of ``x^a y^b z^c``.

    Rows in PySCF's order (p: x, y, z; l >= 2: m = -l..l), columns in
    :func:`cartesian_powers` order; ``Y_lm`` normalised on the unit sphere, with libcint's
    signs (the transpose of ``pyscf.gto.cart2sph(l)``). Helgaker, Jorgensen and Olsen,
    *Molecular Electronic-Structure Theory*, eq. (6.4.47)-(6.4.50).
    """
    index = {p: i for i, p in enumerate(cartesian_powers(l))}
    rows = []
    for m in range(-l, l + 1):
        am = abs(m)
        twice_vm = 0 if m >= 0 else 1
        norm = math.sqrt(2 * math.factorial(l + am) * math.factorial(l - am) / (2 if m == 0 else 1))
        norm /= 2**am * math.factorial(l)
        row = np.zeros(len(index))
        for t in range((l - am) // 2 + 1):
            for u in range(t + 1):
                for twice_v in range(twice_vm, am + 1, 2):  # v = v_m, v_m + 1, ... <= |m|/2
                    sign = (-1) ** (t + (twice_v - twice_vm) // 2)
                    coeff = sign * 0.25**t * math.comb(l, t) * math.comb(l - t, am + t)
                    coeff *= math.comb(t, u) * math.comb(am, twice_v)
                    py = 2 * u + twice_v
                    row[index[(2 * t + am - py, py, l - 2 * t - am)]] += norm * coeff
        rows.append(row * math.sqrt((2 * l + 1) / (4 * math.pi)))
    if l == 1:  # PySCF orders p as x, y, z (m = 1, -1, 0)
        rows = [rows[2], rows[0], rows[1]]
    return np.array(rows)


def gto_norm(l: int, exponent: np.ndarray) -> np.ndarray:
    """PySCF's ``gto_norm``: ``1 / sqrt(int_0^inf r^(2l+2) exp(-2 alpha r^2) dr)``."""
    return 1.0 / np.sqrt(_gaussian_int(2 * l + 2, 2.0 * np.asarray(exponent, dtype=float)))


def _gaussian_int(n: int, alpha: np.ndarray) -> np.ndarray:
    """``int_0^inf x^n exp(-alpha x^2) dx``."""
    n1 = 0.5 * (n + 1)
    return math.gamma(n1) / (2.0 * alpha**n1)


def normalised_contraction(l: int, exponents: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """PySCF's contraction coefficients ``(n_prim, n_ctr)`` of normalised radial functions
    ``sum_p c_p r^l exp(-alpha_p r^2)`` from raw ones (``make_bas_env``)."""
    cs = coeffs * gto_norm(l, exponents)[:, None]
    overlap = _gaussian_int(2 * l + 2, exponents[:, None] + exponents[None, :])
    return cs / np.sqrt(np.einsum("pi,pq,qi->i", cs, overlap, cs))


@dataclass(frozen=True)
class ElementBasis:
    """One element's spherical AOs as sums of Cartesian primitives.

    ``chi_mu(r) = sum_t ao_weights[t, mu] x^a y^b z^c exp(-exponents[t] |r|^2)`` with
    ``(a, b, c) = powers[t]`` (Bohr, relative to the atom); ``radii(cutoff)[t]`` (Bohr) is where the
    term's largest weight times ``r^(a+b+c) exp(-alpha r^2)`` falls below the AO cut-off.
    """

    exponents: np.ndarray  # (n_terms,)
    powers: np.ndarray  # (n_terms, 3)
    ao_weights: np.ndarray  # (n_terms, n_ao)
    _radii: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def nao(self) -> int:
        return self.ao_weights.shape[1]

    @classmethod
    def from_pyscf_format(cls, shells: Sequence) -> ElementBasis:
        """From PySCF's plain list ``[[l, [exponent, c1, ...], ...], ...]`` (a kappa integer
        after ``l`` is allowed and ignored, as for non-relativistic spherical AOs)."""
        columns: list[dict[tuple[float, int, int, int], float]] = []
        for shell in shells:
            l = int(shell[0])
            prims = shell[2:] if isinstance(shell[1], (int, np.integer)) else shell[1:]
            prims = np.asarray(prims, dtype=float)
            if prims.ndim != 2 or prims.shape[1] < 2 or l < 0:
                raise InputError(f"basis shell {shell!r} is not [l, [exponent, c1, ...], ...]")
            coeffs = normalised_contraction(l, prims[:, 0], prims[:, 1:])
            harmonics = solid_harmonics(l)  # (2l+1, n_cart)
            powers = cartesian_powers(l)
            for ictr in range(coeffs.shape[1]):
                for m in range(2 * l + 1):
                    column: dict[tuple[float, int, int, int], float] = {}
                    for alpha, cp in zip(prims[:, 0], coeffs[:, ictr]):
                        for (a, b, c), h in zip(powers, harmonics[m]):
                            if cp != 0.0 and h != 0.0:
                                key = (float(alpha), a, b, c)
                                column[key] = column.get(key, 0.0) + cp * h
                    columns.append(column)
        keys = sorted({k for column in columns for k in column}, key=lambda k: (-k[0], k[1:]))
        row = {k: i for i, k in enumerate(keys)}
        ao_weights = np.zeros((len(keys), len(columns)))
        for mu, column in enumerate(columns):
            for k, w in column.items():
                ao_weights[row[k], mu] = w
        return cls(
            exponents=np.array([k[0] for k in keys]),
            powers=np.array([k[1:] for k in keys], dtype=int).reshape(-1, 3),
            ao_weights=ao_weights,
        )

    def radii(self, cutoff: float = AO_CUTOFF) -> np.ndarray:
        """Per term, the radius (Bohr) beyond which ``max|w| r^l exp(-alpha r^2) < cutoff``."""
        if cutoff not in self._radii:
            self._radii[cutoff] = self._compute_radii(cutoff)
        return self._radii[cutoff]

    def _compute_radii(self, cutoff: float) -> np.ndarray:
        r = np.arange(0.0, 200.0, 0.01)
        out = np.empty(len(self.exponents))
        for t, (alpha, powers) in enumerate(zip(self.exponents, self.powers)):
            weight = np.abs(self.ao_weights[t]).max()
            value = weight * r ** powers.sum() * np.exp(-alpha * r * r)
            above = np.nonzero(value >= cutoff)[0]
            out[t] = r[min(above[-1] + 1, len(r) - 1)] if above.size else 0.0
        return out


class GaussianBasis:
    """The spherical AOs of a molecule (PySCF's order) as Cartesian primitives per atom."""

    def __init__(self, symbols: Sequence[str], elements: Mapping[str, ElementBasis]):
        missing = sorted(set(symbols) - set(elements))
        if missing:
            raise InputError(f"no basis for element(s) {', '.join(missing)}")
        self.symbols = list(symbols)
        self.elements = dict(elements)
        sizes = [self.elements[s].nao for s in self.symbols]
        self.ao_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    @classmethod
    def from_pyscf_format(
        cls, symbols: Sequence[str], basis_by_element: Mapping[str, Sequence]
    ) -> GaussianBasis:
        """From per-element shells in PySCF's plain format (``cell._basis``)."""
        elements = {s: _element_basis(basis_by_element[s]) for s in set(symbols) if s in basis_by_element}
        return cls(symbols, elements)

    @property
    def nao(self) -> int:
        return int(self.ao_offsets[-1])

    def terms(self, cutoff: float = AO_CUTOFF):
        """All primitives of the molecule: atom index, exponent, powers, radius (Bohr) and
        the ``(n_terms, nao)`` map from AO coefficients to primitive weights."""
        atom, exponents, powers, radii, blocks = [], [], [], [], []
        for ia, s in enumerate(self.symbols):
            el = self.elements[s]
            atom.append(np.full(len(el.exponents), ia))
            exponents.append(el.exponents)
            powers.append(el.powers)
            radii.append(el.radii(cutoff))
            block = np.zeros((len(el.exponents), self.nao))
            block[:, self.ao_offsets[ia]:self.ao_offsets[ia + 1]] = el.ao_weights
            blocks.append(block)
        return (np.concatenate(atom), np.concatenate(exponents), np.concatenate(powers),
                np.concatenate(radii), np.concatenate(blocks))

    def eval_ao(
        self,
        positions_bohr: np.ndarray,
        lengths_bohr: Sequence[float],
        coords: np.ndarray,
        cutoff: float = AO_CUTOFF,
    ) -> np.ndarray:
        """``(n_points, nao)`` periodic AO values at any points ``coords`` (Bohr, box frame),
        as PySCF's ``cell.pbc_eval_gto('GTOval', coords)``."""
        atom, exponents, powers, radii, ao_weights = self.terms(cutoff)
        positions = np.asarray(positions_bohr, dtype=float)
        coords = np.asarray(coords, dtype=float)
        product = np.ones((len(coords), len(exponents)))
        for axis, length in enumerate(lengths_bohr):
            d = coords[:, None, axis] - positions[atom, axis][None, :]  # (n_points, n_terms)
            d -= length * np.round(d / length)
            n_images = int(np.ceil(radii.max() / length)) + 1
            factor = np.zeros_like(d)
            for n in range(-n_images, n_images + 1):
                dn = d - n * length
                inside = np.abs(dn) <= radii
                factor += np.where(inside, dn ** powers[:, axis] * np.exp(-exponents * dn * dn), 0.0)
            product *= factor
        return product @ ao_weights


    def overlap(
        self,
        positions_bohr: np.ndarray,
        lengths_bohr: Sequence[float],
        cutoff: float = AO_CUTOFF,
        spacing: float = 0.02,
    ) -> np.ndarray:
        """``(nao, nao)`` periodic overlap ``S = int_box chi_mu chi_nu dr`` of the lattice-summed
        AOs, as PySCF's ``cell.pbc_intor('int1e_ovlp')``; ``Tr(D S)`` is the electron count.

        Each primitive product is separable, so ``S`` is a product of 1D integrals over one
        period, taken by the trapezoid rule on ``spacing`` (Bohr; spectrally exact for these
        smooth periodic functions).
        """
        atom, exponents, powers, radii, ao_weights = self.terms(cutoff)
        positions = np.asarray(positions_bohr, dtype=float).reshape(len(self.symbols), 3)
        s_terms = np.ones((len(exponents), len(exponents)))
        for axis, length in enumerate(lengths_bohr):
            n = int(np.ceil(length / spacing))
            table = np.zeros((len(exponents), n))
            for t in range(len(exponents)):
                idx, values = periodic_factors(positions[atom[t], axis], radii[t], n, length / n,
                                               exponents[t:t + 1], powers[t:t + 1, axis])
                table[t, idx] = values[0]
            s_terms *= (table @ table.T) * (length / n)
        return ao_weights.T @ s_terms @ ao_weights


_ELEMENT_CACHE: dict[str, ElementBasis] = {}


def _element_basis(shells: Sequence) -> ElementBasis:
    """:meth:`ElementBasis.from_pyscf_format`, remembered by the shells' text."""
    key = repr(shells)
    if key not in _ELEMENT_CACHE:
        _ELEMENT_CACHE[key] = ElementBasis.from_pyscf_format(shells)
    return _ELEMENT_CACHE[key]


def periodic_factors(
    centre: float, radius: float, n: int, spacing: float, exponents: np.ndarray, powers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """1D lattice sums ``sum_images d^p exp(-alpha d^2)`` on a periodic line of ``n`` points.

    ``d`` is the distance (Bohr) from ``centre`` to each image of the points ``i * spacing``
    within ``radius``; returns the wrapped point indices it reaches (sorted) and the values
    ``(n_terms, len(indices))`` for the terms ``exponents[t]``, ``powers[t]``.
    """
    idx = np.arange(int(np.ceil((centre - radius) / spacing)), int(np.floor((centre + radius) / spacing)) + 1)
    d = idx * spacing - centre
    values = d ** powers[:, None] * np.exp(-exponents[:, None] * d * d)
    if len(idx) and idx[0] >= 0 and idx[-1] < n:  # inside the box: nothing wraps (most calls)
        return idx, values
    wrapped, inverse = np.unique(idx % n, return_inverse=True)
    if len(wrapped) == len(idx):  # no plane reached twice: a permutation
        folded = np.empty_like(values)
        folded[:, inverse] = values
        return wrapped, folded
    folded = np.zeros((len(values), len(wrapped)))
    np.add.at(folded.T, inverse, values.T)  # images of the same plane, summed in order
    return wrapped, folded


def add_periodic_block(array: np.ndarray, windows: Sequence[np.ndarray], block: np.ndarray) -> None:
    """``array[np.ix_(*windows)] += block`` for windows of distinct indices, by plain slices:
    each window is cut into runs of consecutive indices (a window that wraps around the box
    makes two), and each run combination is one slice assignment, much faster than fancy
    indexing or ``np.add.at`` on large blocks. A window with a repeated index is refused."""
    windows = [np.asarray(window) for window in windows]
    if all(len(w) and (np.diff(w) == 1).all() for w in windows):  # one run each (most calls)
        array[tuple(slice(int(w[0]), int(w[0]) + len(w)) for w in windows)] += block
        return
    runs = []
    for window in windows:
        if len(np.unique(window)) != len(window):
            raise ValueError("add_periodic_block: a window repeats an index")
        breaks = np.flatnonzero(np.diff(window) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(window)]])
        runs.append([(int(window[a]), int(window[a]) + (b - a), a, b) for a, b in zip(starts, stops)])
    for rx in runs[0]:
        for ry in runs[1]:
            for rz in runs[2]:
                array[rx[0]:rx[1], ry[0]:ry[1], rz[0]:rz[1]] += block[rx[2]:rx[3], ry[2]:ry[3], rz[2]:rz[3]]


def orbitals_from_dm(dm: np.ndarray, tol: float = DM_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Factorise a symmetric AO density matrix: ``dm ~= orbitals @ diag(occupations) @ orbitals.T``.

    Eigenpairs with ``|eigenvalue| <= tol`` are dropped, so the spectral norm of the error is
    at most ``tol``, and the density error is at most ``tol * sum_mu chi_mu(r)^2`` at every
    point: Err_rho <= about ``100 * tol * nao / N_e`` percent (normalised AOs, which also
    overlap their own images a little). A spin pair ``(2, nao, nao)`` is summed first.
    Returns ``orbitals (nao, n_kept)`` (orthonormal columns) and ``occupations (n_kept,)``,
    largest first: the eigenvalues of ``dm`` itself
    (not natural occupations, which would need the overlap), possibly negative.
    """
    dm = np.asarray(dm, dtype=np.float64)
    if dm.ndim == 3:
        dm = dm.sum(axis=0)
    if dm.ndim != 2 or dm.shape[0] != dm.shape[1]:
        raise InputError(f"a density matrix must be square (nao, nao), got shape {dm.shape}")
    occupations, vectors = np.linalg.eigh(0.5 * (dm + dm.T))
    keep = np.nonzero(np.abs(occupations) > tol)[0][::-1]
    return vectors[:, keep], occupations[keep]


def render_density(
    symbols: Sequence[str],
    positions_bohr: np.ndarray,
    basis_by_element: Mapping[str, Sequence] | GaussianBasis,
    lengths_bohr: Sequence[float],
    mesh: Sequence[int],
    *,
    dm: np.ndarray | None = None,
    orbitals: np.ndarray | None = None,
    occupations: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    cutoff: float = AO_CUTOFF,
    block: tuple[int, int, int] = BLOCK,
) -> np.ndarray:
    """Valence density (e/Bohr^3) on the periodic mesh, axes (x, y, z), as a numpy array.

    Give either ``dm`` (spin-summed or ``(2, nao, nao)``, PySCF's AO order; factorised by
    :func:`orbitals_from_dm`) or ``orbitals (nao, n_orb)`` with ``occupations (n_orb,)``.
    ``positions_bohr (n_atoms, 3)`` in the box frame; ``basis_by_element`` in PySCF's plain
    format (or a :class:`GaussianBasis`). See :func:`render_density_tensor` for the rest.
    """
    rho = render_density_tensor(
        symbols, positions_bohr, basis_by_element, lengths_bohr, mesh, dm=dm, orbitals=orbitals,
        occupations=occupations, device=device, dtype=dtype, cutoff=cutoff, block=block,
    )
    return rho.cpu().numpy()


def render_density_tensor(
    symbols: Sequence[str],
    positions_bohr: np.ndarray,
    basis_by_element: Mapping[str, Sequence] | GaussianBasis,
    lengths_bohr: Sequence[float],
    mesh: Sequence[int],
    *,
    dm: np.ndarray | None = None,
    orbitals: np.ndarray | None = None,
    occupations: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    cutoff: float = AO_CUTOFF,
    block: tuple[int, int, int] = BLOCK,
) -> torch.Tensor:
    """:func:`render_density` as a tensor ``(nx, ny, nz)`` on ``device`` (CPU or CUDA).

    ``cutoff`` (Bohr^-3/2) is where a primitive's contribution to an AO is dropped;
    ``block`` is the number of mesh points (x, y, z) per block: the memory is about
    ``n_orbitals * prod(block)`` values (at most ``BLOCK_BYTES``), and only the primitives that
    reach a block are used. Small blocks suit a CPU's caches; on a GPU larger ones (e.g.
    ``(32, 32, 128)``) launch fewer kernels. ``dtype`` defaults to float64.
    """
    import torch  # here, not at the top: the SAD and prediction use this module without it

    dtype = torch.float64 if dtype is None else dtype
    basis = (basis_by_element if isinstance(basis_by_element, GaussianBasis)
             else GaussianBasis.from_pyscf_format(symbols, basis_by_element))
    if list(symbols) != basis.symbols:
        raise InputError("the basis was built for other symbols")
    orbitals, occupations = _orbitals(basis.nao, dm, orbitals, occupations)
    positions = np.asarray(positions_bohr, dtype=float).reshape(len(basis.symbols), 3)
    mesh = tuple(int(n) for n in mesh)
    lengths = tuple(float(x) for x in lengths_bohr)
    if len(mesh) != 3 or min(mesh) < 1 or len(lengths) != 3 or min(lengths) <= 0:
        raise InputError(f"mesh {mesh} and box lengths {lengths} must be three positive numbers")
    device = torch.device(device)
    atom, exponents, powers, radii, ao_weights = basis.terms(cutoff)
    weights = ao_weights @ orbitals  # (n_terms, n_orb): psi_k = sum_t weights[t, k] x^a y^b z^c e^..
    # 1D lattice-sum tables per axis, one row per (atom, exponent, power) group
    tables, group_of_term, supports = [], [], []
    for axis in range(3):
        keys = np.stack([atom, exponents, powers[:, axis]], axis=1)
        unique, group = np.unique(keys, axis=0, return_inverse=True)
        group = group.ravel()
        radius = np.zeros(len(unique))
        np.maximum.at(radius, group, radii)
        table = np.zeros((len(unique), mesh[axis]))
        for g, (ia, alpha, p) in enumerate(unique):
            idx, values = periodic_factors(positions[int(ia), axis], radius[g], mesh[axis],
                                           lengths[axis] / mesh[axis], np.array([alpha]),
                                           np.array([int(p)]))
            table[g, idx] = values[0]
        tables.append(table)
        group_of_term.append(group)
        supports.append(table != 0.0)
    n_orb = orbitals.shape[1]
    rho = torch.zeros(mesh, dtype=dtype, device=device)
    if n_orb == 0:
        return rho
    fx, fy, fz = (torch.as_tensor(t, dtype=dtype, device=device) for t in tables)
    w = torch.as_tensor(weights, dtype=dtype, device=device)
    occ = torch.as_tensor(occupations, dtype=dtype, device=device)
    gx, gy, gz = group_of_term
    bx, by, bz = (min(n, b) for n, b in zip(mesh, block))
    itemsize = torch.finfo(dtype).bits // 8
    bz = max(1, min(bz, BLOCK_BYTES // (n_orb * bx * by * itemsize)))  # many orbitals: thinner blocks
    for x0 in range(0, mesh[0], bx):
        x1 = min(mesh[0], x0 + bx)
        in_x = supports[0][gx, x0:x1].any(axis=1)
        for y0 in range(0, mesh[1], by):
            y1 = min(mesh[1], y0 + by)
            active = np.nonzero(in_x & supports[1][gy, y0:y1].any(axis=1))[0]
            if active.size == 0:
                continue
            z_groups, z_index = np.unique(gz[active], return_inverse=True)
            t = torch.as_tensor(active, device=device)
            # h[g, (k, x, y)] = sum over the terms t of z-group g: w[t, k] X_t(x) Y_t(y)
            terms = (w[t][:, :, None, None]
                     * fx[torch.as_tensor(gx[active], device=device), None, x0:x1, None]
                     * fy[torch.as_tensor(gy[active], device=device), None, None, y0:y1])
            h = torch.zeros((len(z_groups),) + terms.shape[1:], dtype=dtype, device=device)
            h.index_add_(0, torch.as_tensor(z_index.ravel(), device=device), terms)
            h = h.reshape(len(z_groups), -1)
            for z0 in range(0, mesh[2], bz):
                z1 = min(mesh[2], z0 + bz)
                rows = np.nonzero(supports[2][z_groups, z0:z1].any(axis=1))[0]
                if rows.size == 0:
                    continue
                r = torch.as_tensor(rows, device=device)
                zf = fz[torch.as_tensor(z_groups[rows], device=device), z0:z1]  # (n_rows, bz)
                psi = (h[r].T @ zf).reshape(n_orb, x1 - x0, y1 - y0, z1 - z0)
                rho[x0:x1, y0:y1, z0:z1] = torch.tensordot(occ, psi * psi, dims=1)
    return rho


def render_sad(
    symbols: Sequence[str],
    positions_bohr: np.ndarray,
    basis_by_element: Mapping[str, Sequence],
    atomic_dms: Mapping[str, np.ndarray],
    n_electrons: float,
    lengths_bohr: Sequence[float],
    mesh: Sequence[int],
    **options,
) -> np.ndarray:
    """The SAD density (e/Bohr^3, axes x, y, z) of per-element atomic density matrices.

    The molecular density matrix is block-diagonal in ``atomic_dms[symbol]`` (PySCF's AO
    order of the element's basis, e.g. :func:`rhosr.sad.atomic_density_matrix`), scaled so
    that ``Tr(D S) = n_electrons`` with ``S`` the periodic overlap, as
    :func:`rhosr.sad.sad_density` does. ``options`` go to :func:`render_density`.
    """
    basis = GaussianBasis.from_pyscf_format(symbols, basis_by_element)
    missing = sorted(set(symbols) - set(atomic_dms))
    if missing:
        raise InputError(f"no atomic density matrix for element(s) {', '.join(missing)}")
    per_element = {s: orbitals_from_dm(atomic_dms[s]) for s in set(symbols)}
    electrons = {s: _atom_electrons(basis.elements[s], atomic_dms[s], lengths_bohr) for s in set(symbols)}
    n_raw = sum(electrons[s] for s in symbols)
    blocks, occupations = [], []
    for ia, s in enumerate(symbols):
        vectors, occ = per_element[s]
        block = np.zeros((basis.nao, vectors.shape[1]))
        block[basis.ao_offsets[ia]:basis.ao_offsets[ia + 1]] = vectors
        blocks.append(block)
        occupations.append(occ * (n_electrons / n_raw))
    return render_density(symbols, positions_bohr, basis, lengths_bohr, mesh,
                          orbitals=np.concatenate(blocks, axis=1),
                          occupations=np.concatenate(occupations), **options)


def _atom_electrons(element: ElementBasis, dm: np.ndarray, lengths_bohr: Sequence[float]) -> float:
    """``Tr(D_A S_AA)`` of one atom in the periodic box (images included)."""
    basis = GaussianBasis(["X"], {"X": element})
    overlap = basis.overlap(np.zeros((1, 3)), lengths_bohr)
    return float(np.einsum("ij,ji->", np.asarray(dm, dtype=float), overlap))


def _orbitals(nao, dm, orbitals, occupations) -> tuple[np.ndarray, np.ndarray]:
    """The orbitals and occupations to render, from exactly one of ``dm`` or ``orbitals``."""
    if (dm is None) == (orbitals is None):
        raise InputError("give either a density matrix or orbitals with occupations")
    if dm is not None:
        dm = np.asarray(dm, dtype=np.float64)
        if dm.shape[-2:] != (nao, nao):
            raise InputError(f"density matrix of shape {dm.shape} does not match {nao} AOs")
        return orbitals_from_dm(dm)
    orbitals = np.asarray(orbitals, dtype=np.float64)
    if orbitals.ndim == 1:
        orbitals = orbitals[:, None]
    if occupations is None:
        raise InputError("orbitals need their occupations")
    occupations = np.asarray(occupations, dtype=np.float64).ravel()
    if orbitals.shape[0] != nao or orbitals.shape[1] != len(occupations):
        raise InputError(f"orbitals of shape {orbitals.shape} with {len(occupations)} "
                         f"occupations do not match {nao} AOs")
    return orbitals, occupations
