"""A fitted prior: the SAD plus corrections around atoms and along bonds, fitted to DFT labels.

A free atom's density (the SAD) is not an atom's density in a molecule: hydrogen gives some of
its electron away, oxygen takes some, every bonded atom contracts, and electrons gather between
bonded atoms. The prior keeps the SAD and adds two kinds of terms, each the same for every atom
(or bond) of the same kind::

    prior(r) = SAD(r) + sum_A sum_k c[kind(A), k] G_k(r - R_A)
                      + sum_(A,B) bonded sum_p sum_m b[kind(A,B), p, m] G'_m(r - ((1 - f_p) R_A + f_p R_B))

with ``G_k(d) = sum_images exp(-alpha_k |d - n L|^2)`` (periodic), ``r``, ``R`` in Bohr,
coefficients in e/Bohr^3, exponents in Bohr^-2. The kind of an atom is its element, or with
``typed`` its element and number of bonded neighbours (``C4`` for an sp3 carbon, ``C3``, ``O1``
for a carbonyl oxygen, ...); the kind of a bond is the pair of its atoms' kinds (``C4-H1``,
``C3-O1``), and its terms sit at the fractions ``bond_positions`` of the way from the first kind
(alphabetically) to the second; a bond between two atoms of the same kind has the same terms
at ``f`` and ``1 - f``. Two atoms are bonded when they are closer than :data:`BOND_FACTOR` times
the sum of their covalent radii (ASE's, Cordero et al.).

Radial terms cannot bend: lone pairs and pi density sit off the atoms and off the bond lines.
With ``lobe_distances`` (typed only) an atom with one to three bonds also gets atom-like terms
(the ``exponents``, rows of their own kind in the atom table) at those distances opposite its
bonds (``O1>b0.7``: lone pairs, the back of an X-H bond) and on both sides of the plane of its
bonds (``C3>p0.7``: pi density); with ``bond_pi_distances`` a bond between two such planar atoms
gets a pair on both sides of its midpoint (``C3-C3>p0.8``). With ``ring_distances`` every bond
of a 3- or 4-membered ring gets a pair in the ring's plane, out of and into the ring
(``C4-O2>r3@0.7``, ``C4-O2>r3@-0.7``): strained rings' bonds are bent. Directions come from the
bonds, so every term turns with the molecule. With ``bond_length_slopes`` every bond term (and
bond pi term) has a twin of its own (``C3-C3/dL``) whose coefficients are multiplied by the
bond's stretch (:func:`bond_stretch`): kinds typed by neighbour counts cannot tell an aromatic
C3-C3 bond from a double or a single one, its length can. A fit records the range of stretches
each bond kind has in its molecules (``bond_stretch_ranges``, :func:`stretch_ranges`), and a
bond's stretch is clipped into its kind's range: a slope is a line through the fitted lengths,
not beyond them (measured on QM9: validation 1.85% -> 1.83%, worst 3.94% -> 2.93%, same
coefficients).

Everything is linear in the coefficients, so they are fitted in closed form: least squares of
``label - SAD`` over every fine-mesh point of the training molecules (:func:`fit_prior`,
``rhosr fit-prior``), optionally penalised (a ridge, or a smoothness penalty along bonds:
:func:`solve_normal`); then, optionally, a few passes of iteratively
reweighted least squares towards the least absolute deviation, the metric Err_rho counts (least
squares weighs each residual by its size, Err_rho does not).

An atom of a typed kind the fit never saw, of an element it did see (an ammonium ``N4``), is
treated as the fitted kind of that element one bonded neighbour away (:func:`nearest_atom_kind`,
:data:`NEAREST_MAX_CHANGE`), its bonds too: an ``N4`` is corrected as an ``N3`` with ``C4-N3``
and ``H1-N3`` bonds, not left at its free-atom SAD. A bond kind the fit never saw between two
fitted atom kinds (a nitro group's ``N3-O1``) borrows nothing: it is new chemistry, and on QM9
test the nitro groups borrowing the terms of the nearest fitted N-O bond were 15-20% Err_rho
against 5% at the SAD. The fit itself never remaps (its kinds are the ones its molecules have).
An element outside ``elements``, or a kind with no fitted kind that near, adds nothing; with
bond or lobe terms, neither do an atom with such a bond and its other bonds. A molecule with an
element the prior never saw gets exactly the SAD around it and its neighbours.

How much each kind of term buys on QM9 is measured by ``benchmarks/prior_variants.py``.

A periodic Gaussian on an orthorhombic lattice is a product of three 1D lattice sums
(:func:`rhosr.orbital_density.periodic_factors`), so each term costs three short vectors and
one outer product. This module imports neither PyTorch nor PySCF (the SAD does not need it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosr.errors import InputError
from rhosr.grid import BOHR_ANGSTROM, Grid
from rhosr.orbital_density import add_periodic_block, periodic_factors

DEFAULT_EXPONENTS: tuple[float, ...] = tuple(0.2 * 2.0**k for k in range(8))
"""Exponents (Bohr^-2) of the atom terms: 0.2 to 25.6, doubling."""

DEFAULT_BOND_EXPONENTS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
"""Exponents (Bohr^-2) of the bond terms."""

BOND_FACTOR = 1.2
"""Two atoms are bonded when closer than this times the sum of their covalent radii."""

MAX_NEIGHBOURS = 4
"""A typed atom's neighbour count is capped here (``C4`` for four or more)."""

GAUSSIAN_CUTOFF = 1e-9
"""A correction Gaussian is dropped where ``exp(-alpha d^2)`` falls below this."""

NEAREST_MAX_CHANGE = 1
"""An unseen atom kind borrows the terms of a fitted kind of its element at most this many
bonded neighbours away. On QM9 test an ``N4`` ammonium corrected as ``N3`` (with ``C4-N3`` and
``H1-N3`` bonds) fell from 8.7% to 5.8% Err_rho. Bond kinds borrow nothing of their own: a
nitro group's ``N3-O1`` corrected as the oxime ``N2-O2`` rose from 5.0% (at the SAD) to 19.9%,
as the nitroso ``N2-O1`` (one neighbour away, fitted on one molecule) to 17.2%."""

SLOPE_UNIT = 0.1
"""Angstrom: a bond's stretch (its length less the sum of its atoms' covalent radii) is counted
in these units by the ``bond_length_slopes`` terms (so their coefficients are the size of the
others')."""

SLOPE_SUFFIX = "/dL"
"""Appended to a bond kind (``C3-C3/dL``) for the terms that grow with the bond's stretch."""

LINEAR_SINE = 0.3
"""Two bonds whose directions' cross product is shorter than this (within 17 degrees of a line)
define no plane."""

BACK_MIN = 0.3
"""An atom whose unit bond vectors sum to less than this (a trigonal or linear centre) has no
back lobe."""

RIDGE = 1e-8
"""Ridge added to the diagonal of the normal equations, relative to its mean."""

L1_FLOOR = 1e-5
"""e/Bohr^3: the least-absolute-deviation passes of :func:`fit_prior` weight a mesh point by
``1 / max(|residual|, L1_FLOOR)`` (a residual this small counts as this small; the valence
labels' residuals are ~1e-3)."""


def _check_exponents(values, what: str) -> None:
    if any(not isinstance(a, (int, float)) or not 0.01 <= a <= 1e4 for a in values):
        raise InputError(f"model config: fitted_prior: {what} must be numbers in [0.01, 1e4] (Bohr^-2)")


@dataclass(frozen=True)
class PriorOptions:
    """The ``fitted_prior`` base (see the module docstring). ``elements``: the elements that get
    terms; ``exponents``: of the atom terms; ``coefficients[row][k]``: per atom kind (``kinds``
    when ``typed``, else ``elements``); ``bond_positions``: fractions along a bond (empty: no
    bond terms); ``bond_exponents``; ``bond_coefficients[row]``: per bond kind (``bond_kinds``),
    ``len(bond_positions) * len(bond_exponents)`` values, position-major. ``kinds``, ``bond_kinds``
    and both coefficient tables are what ``rhosr fit-prior`` fills in."""

    elements: tuple[str, ...] = ("H", "C", "N", "O", "F")
    exponents: tuple[float, ...] = DEFAULT_EXPONENTS
    coefficients: tuple[tuple[float, ...], ...] = ()
    typed: bool = False
    kinds: tuple[str, ...] = ()
    bond_positions: tuple[float, ...] = ()
    bond_exponents: tuple[float, ...] = DEFAULT_BOND_EXPONENTS
    bond_kinds: tuple[str, ...] = ()
    bond_coefficients: tuple[tuple[float, ...], ...] = ()
    lobe_distances: tuple[float, ...] = ()
    bond_pi_distances: tuple[float, ...] = ()
    ring_distances: tuple[float, ...] = ()
    bond_length_slopes: bool = False
    bond_stretch_ranges: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        from rhosr.inputs import ElementsOptions

        for name in ("elements", "exponents", "kinds", "bond_positions", "bond_exponents", "bond_kinds",
                     "lobe_distances", "bond_pi_distances", "ring_distances"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("coefficients", "bond_coefficients"):
            object.__setattr__(self, name, tuple(tuple(row) for row in getattr(self, name)))
        ElementsOptions(self.elements)  # the same checks as the per-element inputs
        if not self.exponents:
            raise InputError("model config: fitted_prior: exponents must be 1 or more numbers")
        _check_exponents(self.exponents, "exponents")
        _check_exponents(self.bond_exponents, "bond_exponents")
        if any(not isinstance(f, (int, float)) or not 0 < f < 1 for f in self.bond_positions):
            raise InputError("model config: fitted_prior: bond_positions must be fractions in (0, 1), "
                             "e.g. [0.25, 0.5, 0.75]")
        if self.bond_positions and not self.bond_exponents:
            raise InputError("model config: fitted_prior: bond terms need bond_exponents")
        for name in ("lobe_distances", "bond_pi_distances", "ring_distances"):
            values = getattr(self, name)
            if any(not isinstance(d, (int, float)) or not 0 < d <= 4 for d in values):
                raise InputError(f"model config: fitted_prior: {name} must be distances in (0, 4] Bohr")
            if values and not self.typed:
                raise InputError(f"model config: fitted_prior: {name} needs typed: true (the directions "
                                 "come from each atom's bonds)")
        if not isinstance(self.bond_length_slopes, bool):
            raise InputError("model config: fitted_prior: bond_length_slopes must be true or false")
        ranges = self.bond_stretch_ranges
        if not isinstance(ranges, dict) or any(
                not isinstance(k, str) or not isinstance(v, (list, tuple)) or len(v) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) or v[0] > v[1]
                for k, v in ranges.items()):
            raise InputError("model config: fitted_prior: bond_stretch_ranges must map bond kinds to "
                             "[lowest, highest] stretches (what rhosr fit-prior writes)")
        object.__setattr__(self, "bond_stretch_ranges",
                           {k: [float(v[0]), float(v[1])] for k, v in sorted(ranges.items())})
        if self.bond_length_slopes and not (self.bond_positions or self.bond_pi_distances):
            raise InputError("model config: fitted_prior: bond_length_slopes needs bond terms "
                             "(bond_positions or bond_pi_distances)")
        rows = self.atom_rows
        if self.coefficients and (len(self.coefficients) != len(rows) or any(
                len(row) != len(self.exponents) for row in self.coefficients)):
            raise InputError(f"model config: fitted_prior: coefficients must be {len(rows)} rows "
                             f"({'kinds' if self.typed else 'elements'}) of {len(self.exponents)} numbers "
                             "(exponents)")
        width = len(self.bond_positions) * len(self.bond_exponents)
        if len(self.bond_coefficients) != len(self.bond_kinds) or any(
                len(row) != width for row in self.bond_coefficients):
            raise InputError(f"model config: fitted_prior: bond_coefficients must be one row per bond "
                             f"kind ({len(self.bond_kinds)}) of {width} numbers (positions x exponents)")

    @property
    def atom_rows(self) -> tuple[str, ...]:
        """The atom kinds (and, with lobes, the lobe kinds) the rows of ``coefficients`` belong to."""
        return self.kinds if self.typed else self.elements

    def to_dict(self) -> dict:
        """Plain lists, numbers to 6 significant digits (what a config file holds)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("coefficients", "bond_coefficients"):
                value = [[float(f"{c:.6g}") for c in row] for row in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _radius(exponent: float) -> float:
    return float(np.sqrt(-np.log(GAUSSIAN_CUTOFF) / exponent))


def _gaussians(centre_bohr: np.ndarray, grid: Grid, which: str, exponents) -> list:
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


def bonds(mol) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of atoms closer than :data:`BOND_FACTOR` times the sum of
    their covalent radii (Angstrom, ASE's table)."""
    from ase.data import atomic_numbers, covalent_radii

    pos = np.asarray(mol.positions_angstrom, dtype=float)
    radii = np.array([covalent_radii[atomic_numbers[s]] for s in mol.symbols])
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    close = dist < BOND_FACTOR * (radii[:, None] + radii[None])
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(close, 1)))]


@dataclass(frozen=True)
class Site:
    """One centre of terms: an atom (``position`` None) or a point along a bond (the index of
    its fraction in ``bond_positions``, mirrored for a symmetric bond); ``row`` is its kind."""

    row: str
    position: int | None
    centre_bohr: tuple[float, float, float]
    atoms: tuple[int, ...] = ()
    weight: float = 1.0


def bond_stretch(symbol_a: str, symbol_b: str, centre_a, centre_b, within=None) -> float:
    """The bond's length less the sum of the two covalent radii (ASE's), in :data:`SLOPE_UNIT`
    (centres in Bohr): ~-2 for a C-C triple bond, ~+1 for a single one. ``within``: a
    ``[lowest, highest]`` range the value is clipped into (the stretches a fit saw for the bond's
    kind: a slope is never extrapolated past them)."""
    from ase.data import atomic_numbers, covalent_radii

    length = float(np.linalg.norm(np.asarray(centre_a) - np.asarray(centre_b))) * BOHR_ANGSTROM
    reference = covalent_radii[atomic_numbers[symbol_a]] + covalent_radii[atomic_numbers[symbol_b]]
    stretch = (length - reference) / SLOPE_UNIT
    return stretch if within is None else min(max(stretch, within[0]), within[1])


def _split_kind(kind: str) -> tuple[str, int] | None:
    """``"C4"`` -> ``("C", 4)``; None for an untyped kind (a bare element)."""
    match = re.fullmatch(r"([A-Z][a-z]?)(\d+)", kind)
    return (match[1], int(match[2])) if match else None


def nearest_atom_kind(kind: str, known) -> str:
    """``kind`` itself when ``known`` has it, else the known kind of the same element whose
    number of bonded neighbours differs by at most :data:`NEAREST_MAX_CHANGE` (the nearest;
    ties: the fewer), else ``kind``."""
    parsed = _split_kind(kind)
    if kind in known or parsed is None:
        return kind
    element, n = parsed
    found = [(abs(other[1] - n), other[1], k) for k in known
             if (other := _split_kind(k)) is not None and other[0] == element
             and abs(other[1] - n) <= NEAREST_MAX_CHANGE]
    return min(found)[2] if found else kind


def sites(mol, options: PriorOptions, nearest: bool = False) -> list[Site]:
    """The term centres of a placed molecule (see the module docstring); atoms of elements
    outside ``options.elements`` (and their bonds) have none. ``nearest``: atom kinds
    ``options`` has no coefficients for are read as the nearest fitted kind
    (:func:`nearest_atom_kind`; prediction; the fit's own sites are never remapped)."""
    symbols = list(mol.symbols)
    centres = np.asarray(mol.positions_angstrom, dtype=float) / BOHR_ANGSTROM
    pairs = bonds(mol) if (options.typed or options.bond_positions) else []
    neighbours: list[list[int]] = [[] for _ in symbols]
    for i, j in pairs:
        neighbours[i].append(j)
        neighbours[j].append(i)
    kind = [f"{s}{min(len(ns), MAX_NEIGHBOURS)}" if options.typed else s
            for s, ns in zip(symbols, neighbours)]
    if nearest and options.typed:
        known_atoms = {k for k in options.kinds if ">" not in k and "-" not in k}
        kind = [nearest_atom_kind(k, known_atoms) for k in kind]
    out = [Site(kind[i], None, tuple(centres[i]), (i,))
           for i, s in enumerate(symbols) if s in options.elements]
    positions = options.bond_positions
    for i, j in pairs:
        if symbols[i] not in options.elements or symbols[j] not in options.elements:
            continue
        if kind[j] < kind[i]:
            i, j = j, i
        if options.bond_length_slopes:
            stretch = bond_stretch(symbols[i], symbols[j], centres[i], centres[j],
                                   options.bond_stretch_ranges.get(f"{kind[i]}-{kind[j]}"))
        for p, f in enumerate(positions):
            q = p
            if kind[i] == kind[j]:  # the same terms at f and 1 - f
                mirror = [m for m, g in enumerate(positions) if abs(g - (1 - f)) < 1e-9]
                q = min([p, *mirror])
            centre = tuple((1 - f) * centres[i] + f * centres[j])
            out.append(Site(f"{kind[i]}-{kind[j]}", q, centre, (i, j)))
            if options.bond_length_slopes:
                out.append(Site(f"{kind[i]}-{kind[j]}{SLOPE_SUFFIX}", q, centre, (i, j), stretch))
    if options.lobe_distances or options.bond_pi_distances:
        out += _lobe_sites(symbols, kind, centres, pairs, neighbours, options)
    if options.ring_distances:
        out += _ring_sites(symbols, kind, centres, pairs, neighbours, options)
    return out


def _unit(v: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-9 else None


def plane_normals(centres: np.ndarray, neighbours: list[list[int]]) -> dict[int, np.ndarray]:
    """Unit normals (sign arbitrary) of the plane of each atom's bonds: with three neighbours
    the plane through them, with two the plane of the atom and both (none when the three are
    within 17 degrees of a line), with one the normal of its neighbour when that neighbour has
    three (a carbonyl oxygen takes its carbon's plane). Atoms with four or more: none."""
    out: dict[int, np.ndarray] = {}
    for a, ns in enumerate(neighbours):
        n = None
        if len(ns) == 3:
            n = _unit(np.cross(centres[ns[1]] - centres[ns[0]], centres[ns[2]] - centres[ns[0]]))
        elif len(ns) == 2:
            u, v = (_unit(centres[b] - centres[a]) for b in ns)
            if u is not None and v is not None and np.linalg.norm(np.cross(u, v)) > LINEAR_SINE:
                n = _unit(np.cross(u, v))
        if n is not None:
            out[a] = n
    for a, ns in enumerate(neighbours):
        if len(ns) == 1 and ns[0] in out and len(neighbours[ns[0]]) == 3:
            out[a] = out[ns[0]]
    return out


def _lobe_sites(symbols, kind, centres, pairs, neighbours, options: PriorOptions) -> list[Site]:
    """Off-atom sites (rows in the atom table, terms of ``exponents``), for atoms with one to
    three bonds: ``K>bD`` at distance D (Bohr) opposite the sum of the bond directions (lone
    pairs, the back of an X-H bond; none when that sum is shorter than :data:`BACK_MIN`),
    ``K>pD`` at +-D along the plane normal (pi density, out-of-plane lone pairs), and for a bond
    whose atoms both have normals, ``K1-K2>pD`` at +-D from its midpoint."""
    normals = plane_normals(centres, neighbours)
    known = [s in options.elements for s in symbols]
    out = []
    for a, ns in enumerate(neighbours):
        if not known[a] or not 1 <= len(ns) < MAX_NEIGHBOURS:
            continue
        pull = sum(_unit(centres[b] - centres[a]) for b in ns)
        if np.linalg.norm(pull) > BACK_MIN:
            back = _unit(-pull)
            out += [Site(f"{kind[a]}>b{d:g}", None, tuple(centres[a] + d * back), (a,))
                    for d in options.lobe_distances]
        if a in normals:
            out += [Site(f"{kind[a]}>p{d:g}", None, tuple(centres[a] + sign * d * normals[a]), (a,))
                    for d in options.lobe_distances for sign in (1, -1)]
    for i, j in pairs:
        if not (known[i] and known[j] and i in normals and j in normals):
            continue
        first, second = sorted((kind[i], kind[j]))
        middle = 0.5 * (centres[i] + centres[j])
        n_i, n_j = normals[i], normals[j]  # a twisted bond: the mean plane, whatever the atom order
        normal = _unit(n_i + np.copysign(1.0, float(n_i @ n_j)) * n_j)
        if normal is None:
            continue
        out += [Site(f"{first}-{second}>p{d:g}", None, tuple(middle + sign * d * normal), (i, j))
                for d in options.bond_pi_distances for sign in (1, -1)]
        if options.bond_length_slopes:
            stretch = bond_stretch(symbols[i], symbols[j], centres[i], centres[j],
                                   options.bond_stretch_ranges.get(f"{first}-{second}"))
            out += [Site(f"{first}-{second}>p{d:g}{SLOPE_SUFFIX}", None, tuple(middle + sign * d * normal),
                         (i, j), stretch) for d in options.bond_pi_distances for sign in (1, -1)]
    return out


def small_rings(pairs: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    """The 3- and 4-membered rings of a bond graph (atom index pairs, :func:`bonds`), each once,
    as atom tuples in ring order."""
    from collections import defaultdict

    adjacent: dict[int, set[int]] = defaultdict(set)
    for i, j in pairs:
        adjacent[i].add(j)
        adjacent[j].add(i)
    rings = set()
    for i, j in pairs:
        for k in adjacent[i] & adjacent[j]:
            rings.add(tuple(sorted((i, j, k))))
    found = [tuple(r) for r in sorted(rings)]
    fours = set()
    for i, j in pairs:
        for k in adjacent[j] - {i}:
            for m in adjacent[k] & adjacent[i] - {j, k}:
                # i-j-k-m-i, unless a chord closes a 3-ring inside it (then it is two 3-rings)
                if k in adjacent[i] or m in adjacent[j]:
                    continue
                ring = (i, j, k, m)
                start = ring.index(min(ring))
                ring = ring[start:] + ring[:start]
                fours.add(min(ring, (ring[0], *ring[:0:-1])))
    return found + sorted(fours)


def _ring_sites(symbols, kind, centres, pairs, neighbours, options: PriorOptions) -> list[Site]:
    """Strained-ring sites (rows in the atom table, terms of ``exponents``): for every bond of a
    3- or 4-membered ring, ``K1-K2>rN@D`` at distance D (Bohr) from the bond's midpoint, in the
    ring's plane, away from the ring's centre, and ``K1-K2>rN@-D`` as far towards it. Terms on the
    bond line, fitted mostly on unstrained bonds, cannot follow a strained ring's bent bonds (on
    QM9 the prior's error grows with the number of 3-rings a molecule has;
    ``benchmarks/prior_heldout.py`` breaks it down). A bond in two small rings gets sites for
    each."""
    known = [s in options.elements for s in symbols]
    out = []
    for ring in small_rings(pairs):
        if not all(known[a] for a in ring):
            continue
        centroid = centres[list(ring)].mean(axis=0)
        for a, b in zip(ring, ring[1:] + ring[:1]):
            axis = _unit(centres[b] - centres[a])
            middle = 0.5 * (centres[a] + centres[b])
            out_dir = middle - centroid
            outward = None if axis is None else _unit(out_dir - (out_dir @ axis) * axis)
            if outward is None:
                continue
            first, second = sorted((kind[a], kind[b]))
            out += [Site(f"{first}-{second}>r{len(ring)}@{sign * d:g}", None,
                         tuple(middle + sign * d * outward), tuple(sorted((a, b))))
                    for d in options.ring_distances for sign in (1, -1)]
    return out


def kept_sites(mol, options: PriorOptions, bond_rows, nearest: bool = False) -> list[Site]:
    """:func:`sites` less those of atoms the prior leaves at their SAD: with bond or lobe terms,
    an atom with a bond of a kind outside ``bond_rows`` (the fitted ones) or to an element outside
    ``options.elements``, and every site of its bonds (and its lobes, whose directions that bond
    sets). Its own terms were fitted for other surroundings (a CF3 carbon fitted without any
    C4-F1 bond). So is an atom all of whose bonded neighbours are left at their SAD (the
    hydrogens of a CH3 on a sulfur: their terms were fitted beside a corrected carbon and its
    bond terms; without this rule ``benchmarks/unseen_elements.sh`` measured dimethyl sulfoxide
    at 22.8% Err_rho under the shipped prior, against 14.4% for the plain SAD); one step, no
    cascade. The fit and the prior use the same rule. ``nearest``: as in :func:`sites` (atom
    kinds only; a bond kind the fit never saw still counts as unseen)."""
    found = sites(mol, options, nearest)
    if not (options.bond_positions or options.lobe_distances or options.bond_pi_distances
            or options.ring_distances):
        return found
    bond_rows = set(bond_rows)
    pairs = bonds(mol)
    strange = {a for site in found if site.position is not None and site.row not in bond_rows
               for a in site.atoms}
    strange |= {a for i, j in pairs if not {mol.symbols[i], mol.symbols[j]} <= set(options.elements)
                for a in (i, j)}
    neighbours: dict[int, set[int]] = {}
    for i, j in pairs:
        neighbours.setdefault(i, set()).add(j)
        neighbours.setdefault(j, set()).add(i)
    strange |= {a for a, ns in neighbours.items() if ns <= strange}
    return [site for site in found if not strange.intersection(site.atoms)]


def _blocks(site: Site, grid: Grid, which: str, options: PriorOptions):
    exponents = options.exponents if site.position is None else options.bond_exponents
    centre = np.array(site.centre_bohr)
    for k, (windows, (fx, fy, fz)) in enumerate(_gaussians(centre, grid, which, exponents)):
        yield k, windows, np.multiply.outer(np.multiply.outer(fx, fy), fz)


def columns(options: PriorOptions, atom_rows, bond_rows) -> dict:
    """The fit's unknowns in order: ``(row, None, k)`` for the atom kinds, then ``(row, p, k)``
    for the bond kinds (position index p, exponent index k) -> column index."""
    keys = [(r, None, k) for r in atom_rows for k in range(len(options.exponents))]
    keys += [(r, p, k) for r in bond_rows for p in range(len(options.bond_positions))
             for k in range(len(options.bond_exponents))]
    return {key: n for n, key in enumerate(keys)}


def design(mol, grid: Grid, which: str, options: PriorOptions, index: dict) -> tuple[list[int], np.ndarray]:
    """The fitting design of one placed molecule: the column indices it touches (``index``
    from :func:`columns`) and their channels ``(n, X, Y, Z)`` float32 (dimensionless sums of
    Gaussians); sites of kinds outside ``index`` are left out."""
    bond_rows = {row for row, p, _ in index if p is not None}
    found = kept_sites(mol, options, bond_rows)

    def n_terms(site: Site) -> int:
        return len(options.exponents if site.position is None else options.bond_exponents)

    # the columns first, so the design is one array filled in place (not a copy of per-column
    # arrays: at ~400 columns of ~10^6 points, allocating and copying 2 GB twice cost more than
    # the Gaussians)
    cols = sorted({col for site in found for k in range(n_terms(site))
                   if (col := index.get((site.row, site.position, k))) is not None})
    slot = {col: n for n, col in enumerate(cols)}
    stacked = np.zeros((len(cols), *grid.mesh(which)), dtype=np.float32)
    for site in found:
        for k, windows, block in _blocks(site, grid, which, options):
            col = index.get((site.row, site.position, k))
            if col is not None:
                weighted = block * site.weight if site.weight != 1 else block
                add_periodic_block(stacked[slot[col]], windows, weighted)
    return cols, stacked


def correction_channels(mol, grid: Grid, which: str, options: PriorOptions) -> np.ndarray:
    """The design of the atom terms for ``options.atom_rows`` (all of them, in order):
    ``(len(atom_rows) * len(exponents), X, Y, Z)`` float32."""
    index = columns(options, options.atom_rows, ())
    cols, stacked = design(mol, grid, which, options, index)
    out = np.zeros((len(index), *grid.mesh(which)), dtype=np.float32)
    out[cols] = stacked
    return out


def prior_density(mol, grid: Grid, which: str, options: PriorOptions) -> np.ndarray:
    """The prior ``(X, Y, Z)`` float32 in e/Bohr^3 on the ``which`` mesh of a placed molecule
    (see the module docstring); atom kinds the fit never saw are read as the nearest fitted kind.

    On the fine mesh, the wide terms (exponents up to :func:`smooth_exponent_limit`) are summed
    on the coarse mesh and carried to the fine one by Fourier interpolation, which is exact for
    them to about :data:`GAUSSIAN_CUTOFF` (their spectrum is that small at the coarse mesh's
    Nyquist frequency): ~8x fewer points for the terms whose reach is the whole box."""
    from rhosr.sad import sad_channels, sad_fine

    rho = sad_fine(mol, grid).astype(np.float64) if which == "fine" else sad_channels(mol, grid, which)[0]
    limit = smooth_exponent_limit(grid) if which == "fine" and grid.upscale > 1 else 0.0
    smooth = np.zeros(grid.mesh("coarse")) if limit > 0 else None
    atom = dict(zip(options.atom_rows, options.coefficients))
    bond = dict(zip(options.bond_kinds, options.bond_coefficients))
    n_bond = len(options.bond_exponents)
    merged: dict = {}  # (centre, a bond term?) -> coefficients: a slope term joins its twin's block
    for site in kept_sites(mol, options, bond, nearest=True):
        if site.position is None:
            c = atom.get(site.row)
        else:
            row = bond.get(site.row)
            c = None if row is None else row[site.position * n_bond:(site.position + 1) * n_bond]
        if c is None or not any(c):
            continue
        key = (site.centre_bohr, site.position is not None)
        merged[key] = merged.get(key, 0.0) + site.weight * np.asarray(c, dtype=np.float64)
    wide_sites = []
    for (centre, is_bond), c in merged.items():
        exponents = np.asarray(options.bond_exponents if is_bond else options.exponents, dtype=np.float64)
        used = c != 0
        wide = used & (exponents <= limit)
        if wide.any():
            wide_sites.append((centre, exponents[wide], c[wide]))
        if (used & ~wide).any():
            _add_site(rho, centre, grid, which, exponents[used & ~wide], c[used & ~wide])
    if smooth is not None:
        _add_sites_dense(smooth, wide_sites, grid, "coarse")
        rho += fourier_upsampled(smooth, grid.mesh("fine"))
    return rho.astype(np.float32)


def smooth_exponent_limit(grid: Grid) -> float:
    """Bohr^-2: the largest exponent whose periodic Gaussian the coarse mesh of ``grid``
    represents to :data:`GAUSSIAN_CUTOFF`: the Gaussian's Fourier transform,
    ``exp(-G^2 / (4 alpha))``, has fallen to the cutoff at the coarse Nyquist frequency ``pi / h``
    (``h`` the coarsest spacing, Bohr); 1.2 for QM9's grids (0.2, 0.4 and 0.8 of the atom terms,
    0.5 and 1 of the bond terms)."""
    nyquist = np.pi / float(np.max(grid.spacing("coarse")))
    return nyquist**2 / (4 * -np.log(GAUSSIAN_CUTOFF))


def fourier_upsampled(coarse: np.ndarray, fine_mesh: tuple[int, int, int]) -> np.ndarray:
    """The periodic band-limited interpolant of ``coarse`` ``(X, Y, Z)`` on the finer mesh
    ``fine_mesh`` of the same box (both from the origin): its discrete Fourier coefficients below
    the coarse Nyquist frequency (that one dropped), zero above."""
    spectrum = np.fft.rfftn(coarse.astype(np.float32), axes=(0, 1, 2))  # float32: ~2x faster, enough
    padded = np.zeros((*fine_mesh[:2], fine_mesh[2] // 2 + 1), dtype=np.complex64)
    keep = [(n - 1) // 2 for n in coarse.shape]  # the highest frequency below Nyquist, per axis
    for sx in (slice(0, keep[0] + 1), slice(-keep[0], None) if keep[0] else slice(0, 0)):
        for sy in (slice(0, keep[1] + 1), slice(-keep[1], None) if keep[1] else slice(0, 0)):
            padded[sx, sy, :keep[2] + 1] = spectrum[sx, sy, :keep[2] + 1]
    scale = np.prod(fine_mesh) / coarse.size
    return np.fft.irfftn(padded, s=fine_mesh, axes=(0, 1, 2)) * scale


DENSE_ROWS = 256
"""Terms :func:`_add_sites_dense` multiplies out at a time (bounds its memory: 256 rows of
``X * Y`` float64 values, ~8 MB for a QM9 molecule's coarse mesh, ~44 MB for a 147^2 one)."""


def _add_sites_dense(rho: np.ndarray, sites: list, grid: Grid, which: str) -> None:
    """``rho += sum over sites and terms c_k G_k(r - centre)`` for ``sites`` ``[(centre_bohr,
    exponents, coefficients), ...]``, each term as :func:`_add_site` has it (the same windows
    and 1D lattice sums) but written into rows spanning the whole mesh, so that all of them
    are one matrix product ``(X * Y, terms) @ (terms, Z)`` (in chunks of :data:`DENSE_ROWS`)
    instead of a periodic block per site: meant for the wide terms, whose windows wrap around
    most of the box anyway."""
    mesh = grid.mesh(which)
    rows = [np.zeros((sum(len(e) for _, e, _ in sites), n)) for n in mesh]
    r = 0
    for centre, exponents, coefficients in sites:
        windows, factors = _site_factors(centre, grid, which, exponents)
        factors[0] = factors[0] * coefficients[:, None]
        for axis, (wrapped, values) in enumerate(zip(windows, factors)):
            rows[axis][r:r + len(exponents), wrapped] = values
        r += len(exponents)
    fx, fy, fz = rows
    flat = rho.reshape(mesh[0] * mesh[1], mesh[2])
    for start in range(0, r, DENSE_ROWS):
        part = slice(start, min(start + DENSE_ROWS, r))
        xy = (fx[part, :, None] * fy[part, None, :]).reshape(part.stop - part.start, -1)
        flat += xy.T @ fz[part]


def _site_factors(centre_bohr, grid: Grid, which: str, exponents: np.ndarray) -> tuple[list, list]:
    """Per axis, the wrapped mesh indices within the widest term's reach and every term's 1D
    lattice sums there: ``([wx, wy, wz], [fx, fy, fz])``, ``f`` of shape ``(terms, len(w))``."""
    radius = _radius(float(exponents.min()))
    windows, factors = [], []
    for n, h, x in zip(grid.mesh(which), grid.spacing(which), centre_bohr):
        wrapped, values = periodic_factors(float(x), radius, n, float(h), exponents,
                                           np.zeros(len(exponents), dtype=int))
        windows.append(wrapped)
        factors.append(values)
    return windows, factors


def _add_site(rho: np.ndarray, centre_bohr, grid: Grid, which: str, exponents: np.ndarray,
              coefficients: np.ndarray) -> None:
    """``rho += sum_k c_k G_k(r - centre)`` for one site's centre, as one block on the widest term's
    window: per axis the 1D lattice sums of every term, then one matrix product (the terms are
    rank one each) and one periodic add; ~4x faster than a block per term."""
    windows, (fx, fy, fz) = _site_factors(centre_bohr, grid, which, exponents)
    xy = ((coefficients[:, None] * fx)[:, :, None] * fy[:, None, :]).reshape(len(exponents), -1)
    add_periodic_block(rho, windows, (xy.T @ fz).reshape(len(windows[0]), len(windows[1]), len(windows[2])))


def fit_prior(store_path: str, ids: list[str], options: PriorOptions | None = None,
              progress: bool = True, l1_iterations: int = 0, l1_floor: float = L1_FLOOR,
              checkpoint: str | os.PathLike | None = None, ridge: float = 0.0, smooth: float = 0.0,
              start: PriorOptions | None = None) -> dict:
    """Coefficients of ``label - SAD`` over the fine mesh of the store entries ``ids``, for the
    terms ``options`` asks for; the atom and bond kinds are those the molecules have.

    First the least-squares fit (closed form, with the penalties ``ridge`` and ``smooth`` of
    :func:`solve_normal`), then ``l1_iterations`` passes of
    iteratively reweighted least squares towards the least *absolute* deviation, the metric
    Err_rho counts: each pass weights every mesh point by ``1 / max(|residual|, l1_floor)``
    (e/Bohr^3) of the previous coefficients. Each pass reads and
    builds every molecule's design again (one pass costs what the least-squares fit costs). With
    ``checkpoint`` (a ``.npz`` path) the coefficients are saved after every pass, and a fit of
    the same molecules, terms, floor and penalties that finds the file starts after its last pass.

    With ``start`` (a fitted prior with the same terms, e.g. an earlier fit's) the least-squares
    fit is skipped and the passes start from its coefficients (kinds it lacks start at zero): a
    fit continued with more passes.

    Returns ``{"options": PriorOptions, "sad_err": [...], "prior_err": [...], "passes": [...]}``:
    ``options`` with kinds and coefficients filled in; per molecule, Err_rho (%) of the SAD and
    of the fitted prior (rescaled to N_e); per pass, the mean Err_rho (%, not rescaled) of the
    coefficients that pass started from (the first pass started from none: the SAD's); and
    ``resumed``, the passes read from ``checkpoint``."""
    from rhosr.io import atomic_write  # imports ASE, which the model's import path must not

    if l1_iterations < 0 or not 0 < l1_floor < 1:
        raise InputError("fit-prior: l1 iterations must be >= 0 and the floor in (0, 1) e/Bohr^3")
    if not (0 <= ridge < 1e6 and 0 <= smooth < 1e6):
        raise InputError("fit-prior: the ridge and the smoothness penalty must be numbers >= 0 (relative "
                         "to each term's own weight)")
    options = dataclasses.replace(options or PriorOptions(), bond_stretch_ranges={})  # its own, below
    system = PriorSystem.of(store_path, ids, options)
    first = None if start is None else system.coefficients_of(start)
    key = repr((list(ids), options.to_dict(), sorted(system.index.items()), float(l1_floor), float(ridge),
                float(smooth)) + (() if first is None else (first.tolist(),)))
    coeff, passes = _read_checkpoint(checkpoint, key)
    if len(passes) > l1_iterations + 1:  # saved by a fit with more passes: these coefficients went past
        coeff, passes = None, []
    resumed = len(passes)
    if not passes and first is not None:
        coeff, passes = first, [float("nan")]  # as if its passes were this fit's
    for n_pass in range(len(passes), l1_iterations + 1):
        what = "fitting the prior" if n_pass == 0 else f"L1 pass {n_pass}/{l1_iterations}"
        normal, rhs, start_err = system.normal_equations(coeff, l1_floor, what, progress)
        coeff = solve_normal(normal, rhs, ridge, smooth, system.neighbour_pairs())
        passes.append(start_err)
        if checkpoint is not None:
            with atomic_write(checkpoint, "wb") as fh:
                np.savez(fh, key=key, coeff=coeff, passes=np.array(passes))
    fitted = system.fitted(coeff)
    if options.bond_length_slopes:
        ranges = stretch_ranges(system.molecules.values(), options)
        fitted = dataclasses.replace(fitted, bond_stretch_ranges=ranges)
    sad_err, prior_err = held_out_errors(store_path, ids, fitted)
    return {"options": fitted, "sad_err": sad_err, "prior_err": prior_err, "passes": passes,
            "resumed": resumed}


def stretch_ranges(molecules, options: PriorOptions) -> dict[str, list[float]]:
    """``{bond kind: [lowest, highest] stretch}`` (:func:`bond_stretch`, unclipped) over the bonds
    of ``molecules`` (placed molecules) that have slope terms: what a fit of them saw, and so the
    range its slopes are used in (a C3-N2 bond fitted between -2.2 and -0.8 and met at -0.5 in a
    seven-membered ring would otherwise extrapolate a line fitted on other bonds)."""
    options = dataclasses.replace(options, bond_stretch_ranges={})
    seen: dict[str, list[float]] = {}
    for mol in molecules:
        for site in sites(mol, options):
            if site.row.endswith(SLOPE_SUFFIX):
                kind = site.row[: -len(SLOPE_SUFFIX)].split(">")[0]
                low, high = seen.get(kind, (site.weight, site.weight))
                seen[kind] = [min(low, site.weight), max(high, site.weight)]
    return {k: [math.floor(low * 1e4) / 1e4, math.ceil(high * 1e4) / 1e4]  # written to 4 decimals, widened
            for k, (low, high) in sorted(seen.items())}


def _read_checkpoint(path, key: str) -> tuple[np.ndarray | None, list[float]]:
    """``(coefficients, passes)`` saved by an interrupted fit with the same ``key`` (molecules,
    terms, columns, floor); ``(None, [])`` without one."""
    if path is None or not Path(path).exists():
        return None, []
    try:
        with np.load(path) as saved:
            if str(saved["key"]) != key:
                return None, []
            return saved["coeff"], [float(e) for e in saved["passes"]]
    except (OSError, ValueError, KeyError):  # a damaged file: start again
        return None, []


NORMAL_CHUNK = 1 << 16
"""Mesh points per float64 block of :func:`_normal_equations` (~0.5 MB a column). The products
are float64: with terms close together along a bond (7 positions) the columns are nearly
dependent, and normal equations summed from float32 products gave a fit 3x worse on its own
molecules than the float64 ones (``benchmarks/results/prior_variants_positions.md``)."""


@dataclass(frozen=True)
class PriorSystem:
    """The unknowns of a fit: the molecules (store entry id -> placed molecule), the atom and
    bond kinds they have (rows) and the column of each term (:func:`columns`)."""

    store_path: str
    molecules: dict
    options: PriorOptions
    atom_rows: tuple[str, ...]
    bond_rows: tuple[str, ...]
    index: dict

    @classmethod
    def of(cls, store_path: str, ids: list[str], options: PriorOptions) -> PriorSystem:
        from rhosr.inputs import entry_molecule
        from rhosr.store import DatasetStore

        store = DatasetStore.open(store_path)
        molecules = {i: entry_molecule(store.entry_meta(i)) for i in ids}
        found = [sites(m, options) for m in molecules.values()]
        atom_rows = (sorted({s.row for ss in found for s in ss if s.position is None}) if options.typed
                     else list(options.elements))
        bond_rows = sorted({s.row for ss in found for s in ss if s.position is not None})
        return cls(store_path, molecules, options, tuple(atom_rows), tuple(bond_rows),
                   columns(options, atom_rows, bond_rows))

    def normal_equations(self, coeff: np.ndarray | None = None, floor: float = L1_FLOOR,
                         what: str = "fitting the prior", progress: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, float]:
        """``(D W D^T, D W r, mean Err_rho %)`` summed over the molecules (see
        :func:`_normal_equations`)."""
        from rhosr.store import DatasetStore

        store = DatasetStore.open(self.store_path)
        return _normal_equations(store, list(self.molecules), self.molecules, self.options, self.index,
                                 coeff, floor, what, progress)

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """Column pairs ``(i, j)``: the same bond kind and exponent at neighbouring positions
        (what the smoothness penalty of :func:`solve_normal` ties together)."""
        n_positions, n_exponents = len(self.options.bond_positions), len(self.options.bond_exponents)
        return [(self.index[(row, p, k)], self.index[(row, p + 1, k)]) for row in self.bond_rows
                for p in range(n_positions - 1) for k in range(n_exponents)]

    def coefficients_of(self, fitted: PriorOptions) -> np.ndarray:
        """The coefficient vector (column order) of ``fitted``, a prior with the same terms as
        ``options`` (or the same without ``bond_length_slopes``); a kind ``fitted`` lacks, and
        every slope term it lacks, gets zeros (the inverse of :meth:`fitted`)."""
        def layout(o: PriorOptions) -> PriorOptions:
            return dataclasses.replace(o, kinds=(), coefficients=(), bond_kinds=(), bond_coefficients=(),
                                       bond_length_slopes=o.bond_length_slopes and not adds_slopes,
                                       bond_stretch_ranges={})

        adds_slopes = self.options.bond_length_slopes and not fitted.bond_length_slopes
        if layout(fitted) != layout(self.options):
            raise InputError("the fitted prior to start from has other terms (elements, exponents, "
                             "positions or distances) than the config's fitted_prior")
        coeff = np.zeros(len(self.index))
        atom = dict(zip(fitted.atom_rows, fitted.coefficients))
        bond = dict(zip(fitted.bond_kinds, fitted.bond_coefficients))
        n_exponents = len(self.options.bond_exponents)
        for (row, p, k), col in self.index.items():
            if p is None and row in atom:
                coeff[col] = atom[row][k]
            elif p is not None and row in bond:
                coeff[col] = bond[row][p * n_exponents + k]
        return coeff

    def fitted(self, coeff: np.ndarray) -> PriorOptions:
        """``options`` with the kinds and the coefficients ``coeff`` (in column order) filled in."""
        options = self.options
        n_atom = len(self.atom_rows) * len(options.exponents)
        width = len(options.bond_positions) * len(options.bond_exponents)
        return dataclasses.replace(
            options,
            kinds=self.atom_rows if options.typed else (),
            coefficients=tuple(tuple(r) for r in coeff[:n_atom].reshape(len(self.atom_rows),
                                                                        len(options.exponents)).tolist()),
            bond_kinds=self.bond_rows,
            bond_coefficients=tuple(tuple(r) for r in coeff[n_atom:].reshape(len(self.bond_rows), width)
                                    .tolist()))


def _normal_equations(store, ids, molecules, options: PriorOptions, index: dict, coeff, floor: float,
                      what: str, progress: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """``(D W D^T, D W r, mean Err_rho %)`` summed over the molecules, ``r = label - SAD`` on the
    fine mesh, ``W = 1`` without ``coeff``, else ``1 / max(|r - D^T coeff|, floor)``."""
    from tqdm import tqdm

    from rhosr.sad import sad_fine

    n = len(index)
    normal, rhs, errs = np.zeros((n, n)), np.zeros(n), []
    for entry_id in tqdm(ids, desc=what, unit="mol", disable=not progress):
        entry = store.read_entry(entry_id, ("label",))
        grid = Grid.from_dict(entry.meta["grid"])
        mol = molecules[entry_id]
        cols, channels = design(mol, grid, "fine", options, index)
        d = channels.reshape(len(cols), -1)
        del channels
        residual = (np.asarray(entry.label, np.float64) - sad_fine(mol, grid)).ravel()
        # the fit's prediction in float32, as the design is (a float64 product would copy d)
        left = residual if coeff is None else residual - coeff[cols].astype(np.float32) @ d
        errs.append(100 * float(np.abs(left).sum()) * grid.voxel_volume("fine") / mol.n_valence)
        # D W D^T as (D sqrt(W)) (D sqrt(W))^T: a product of one array with its own transpose,
        # which NumPy hands to BLAS's symmetric rank-k update (half the flops of a general product)
        root_weights = None if coeff is None else 1.0 / np.sqrt(np.maximum(np.abs(left), floor))
        block_normal, block_rhs = np.zeros((len(cols), len(cols))), np.zeros(len(cols))
        # float64 products, a chunk of points at a time, in a buffer allocated once per molecule
        # (a fresh ~100 MB array per chunk spent most of the time in the kernel's page faults)
        chunk = min(NORMAL_CHUNK, d.shape[1])
        buffer = np.empty((len(cols), chunk))
        for start in range(0, d.shape[1], chunk):
            width = min(chunk, d.shape[1] - start)
            block = buffer[:, :width]
            block[...] = d[:, start:start + width]
            target = residual[start:start + width]
            if root_weights is not None:
                block *= root_weights[start:start + width]
                target = target * root_weights[start:start + width]
            block_normal += block @ block.T
            block_rhs += block @ target
        normal[np.ix_(cols, cols)] += block_normal
        rhs[cols] += block_rhs
        del d, left, root_weights
    return normal, rhs, float(np.mean(errs)) if errs else 0.0


def solve_normal(normal: np.ndarray, rhs: np.ndarray, ridge: float = 0.0, smooth: float = 0.0,
                 neighbours: list[tuple[int, int]] = ()) -> np.ndarray:
    """The coefficients of the normal equations ``normal c = rhs`` with two penalties added,
    each relative to the weight its terms have in the fit, so the same numbers mean the same for
    a sharp atom term and a wide bond term, and for the least-squares and the reweighted passes:
    ``ridge`` times each column's own diagonal entry (``ridge * d_i c_i^2``), and ``smooth``
    times ``sqrt(d_i d_j) (c_i - c_j)^2`` for each pair ``(i, j)`` of ``neighbours`` (the same
    bond term at neighbouring positions along its bond, :meth:`PriorSystem.neighbour_pairs`);
    plus :data:`RIDGE` times the mean diagonal against exact singularity. A column no molecule
    touches (a kind, or a mirrored position, no molecule has) keeps zero.

    Why: terms a fraction of a bond apart are nearly collinear, and least squares gives them large
    coefficients of alternating signs that cancel on the bond lengths and angles of the training
    molecules but not on every other molecule's (``benchmarks/prior_ridge.py`` measures it). The ridge
    shrinks every coefficient; the smoothness penalty only the alternation along a bond."""
    coeff = np.zeros(len(rhs))
    diag = np.diag(normal).copy()
    used = diag > 0
    if used.any():
        penalised = np.array(normal, dtype=np.float64)
        penalised[np.diag_indices_from(penalised)] += ridge * diag
        for i, j in neighbours:
            if used[i] and used[j]:
                w = smooth * np.sqrt(diag[i] * diag[j])
                penalised[i, i] += w
                penalised[j, j] += w
                penalised[i, j] -= w
                penalised[j, i] -= w
        sub = penalised[np.ix_(used, used)]
        sub = sub + RIDGE * np.mean(diag[used]) * np.eye(len(sub))
        coeff[used] = np.linalg.solve(sub, rhs[used])
    return coeff


def held_out_errors(store_path: str, ids: list[str], options: PriorOptions
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
        prior = prior_density(mol, grid, "fine", options)
        prior_err.append(100 * np.abs(rescaled(prior, n_e, dv) - label).sum() * dv / n_e)
    return sad_err, prior_err


def rescaled(rho: np.ndarray, n_electrons: float, voxel_volume: float) -> np.ndarray:
    """``max(rho, 0)`` scaled to integrate to ``n_electrons`` (what the model does to its output)."""
    rho = np.maximum(np.asarray(rho, np.float64), 0.0)
    return rho * (n_electrons / (rho.sum() * voxel_volume))
