"""Box and grids: the authors' rule for the periodic box and its coarse and fine meshes.

Conventions used everywhere in rhosr (and the 24 grid rotations, at the end):

- The box is orthorhombic with its corner at the origin; lengths ``(Lx, Ly, Lz)`` in Bohr.
- Grid point ``(i, j, k)`` of a mesh ``(nx, ny, nz)`` sits at ``(i/nx*Lx, j/ny*Ly, k/nz*Lz)``.
- Density arrays have axes ``(x, y, z)`` in C order, values in e/Bohr^3.
- The fine mesh is ``upscale`` times the coarse mesh per axis, so coarse point ``(i, j, k)``
  is fine point ``(upscale*i, upscale*j, upscale*k)``.

The rule, read from the authors' published data (documentation: The data recipe):
each box length is the molecule's extent plus ``margin`` (4 Angstrom in total by default),
rounded up to a whole number of coarse steps, minus 1e-4 Angstrom. The coarse step is the
spacing of a 50 Hartree plane-wave mesh, ``pi/sqrt(2*50)`` Bohr (~0.166 Angstrom), for the
x2 model and twice that for the x4 model; the fine step is then ~0.083 Angstrom (200 Hartree).
The molecule is translated so that the plain mean of its atomic positions sits at the box
centre.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from rhosr.checks import check_number
from rhosr.errors import InputError

if TYPE_CHECKING:
    from rhosr.molecule import Molecule

BOHR_ANGSTROM: float = 0.52917721092
"""One Bohr in Angstrom: PySCF's ``pyscf.lib.parameters.BOHR``, which the authors' boxes were
built with (tests check they agree; written out so that this module needs no PySCF)."""

FINE_KE_CUTOFF: float = 200.0
"""Plane-wave cutoff (Hartree) whose spacing is the fine (label) mesh: 400 Ry, as in the paper."""

BOX_SHRINK_ANGSTROM: float = 1e-4
"""The authors subtract this from each rounded box length (Angstrom)."""

SUPPORTED_UPSCALES = (2, 4)

MIN_MARGIN_ANGSTROM: float = 2.0
"""Smallest margin accepted (Angstrom): the periodic images of the outermost atoms sit about
``margin`` away from the molecule, and closer than a bond length or so they bind to it (the
models were trained with 4)."""

MAX_BOX_ANGSTROM: float = 1000.0
"""Largest box length accepted (Angstrom): a box holds one molecule and its margin."""


def plane_wave_spacing(ke_cutoff: float) -> float:
    """Real-space grid spacing (Bohr) of a plane-wave cutoff ``ke_cutoff`` (Hartree)."""
    return math.pi / math.sqrt(2.0 * ke_cutoff)


def coarse_spacing(upscale: int) -> float:
    """Coarse step (Bohr) for a model that upscales by ``upscale`` per axis."""
    if upscale not in SUPPORTED_UPSCALES:
        raise InputError(f"upscale must be one of {SUPPORTED_UPSCALES}, got {upscale}")
    return upscale * plane_wave_spacing(FINE_KE_CUTOFF)


@dataclass(frozen=True)
class Grid:
    """A periodic orthorhombic box with a coarse (input) and a fine (label) mesh.

    ``lengths`` are in Bohr; ``coarse_mesh`` is ``(nx, ny, nz)``; the fine mesh is
    ``upscale * coarse_mesh``.
    """

    lengths: tuple[float, float, float]
    coarse_mesh: tuple[int, int, int]
    upscale: int = 2

    def __post_init__(self):
        lengths, mesh = np.asarray(self.lengths, dtype=float), np.asarray(self.coarse_mesh)
        if lengths.shape != (3,) or not np.all(np.isfinite(lengths)) or np.any(lengths <= 0):
            raise InputError(f"a box needs three finite, positive lengths (Bohr), got {self.lengths}")
        if mesh.shape != (3,) or np.any(mesh < 1):
            raise InputError(f"a mesh needs three positive point counts, got {self.coarse_mesh}")
        coarse_spacing(self.upscale)  # a supported upscale

    @property
    def fine_mesh(self) -> tuple[int, int, int]:
        return tuple(self.upscale * n for n in self.coarse_mesh)  # type: ignore[return-value]

    @property
    def lengths_angstrom(self) -> np.ndarray:
        return np.asarray(self.lengths) * BOHR_ANGSTROM

    @property
    def volume(self) -> float:
        """Box volume in Bohr^3."""
        return float(np.prod(self.lengths))

    def mesh(self, which: str = "fine") -> tuple[int, int, int]:
        if which == "fine":
            return self.fine_mesh
        if which == "coarse":
            return self.coarse_mesh
        raise ValueError(f"which must be 'fine' or 'coarse', got {which!r}")

    def voxel_volume(self, which: str = "fine") -> float:
        """Volume of one voxel of the chosen mesh, Bohr^3."""
        return self.volume / float(np.prod(self.mesh(which)))

    def spacing(self, which: str = "fine") -> np.ndarray:
        """Step per axis of the chosen mesh, Bohr."""
        return np.asarray(self.lengths) / np.asarray(self.mesh(which))

    def axes(self, which: str = "fine") -> list[np.ndarray]:
        """Coordinates (Bohr) of the grid planes along x, y and z."""
        return [np.arange(n) * h for n, h in zip(self.mesh(which), self.spacing(which))]

    def points(self, which: str = "fine") -> np.ndarray:
        """All grid points, shape ``(nx*ny*nz, 3)`` in Bohr, x slowest (C order)."""
        x, y, z = np.meshgrid(*self.axes(which), indexing="ij")
        return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)

    def to_dict(self) -> dict:
        return {
            "lengths_bohr": [float(v) for v in self.lengths],
            "coarse_mesh": [int(n) for n in self.coarse_mesh],
            "upscale": int(self.upscale),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        return cls(tuple(d["lengths_bohr"]), tuple(d["coarse_mesh"]), int(d["upscale"]))


def box_for_positions(
    positions_angstrom: np.ndarray, upscale: int = 2, margin_angstrom: float = 4.0
) -> tuple[Grid, np.ndarray]:
    """Apply the authors' box rule.

    Returns the grid and the positions (Angstrom) translated so that their mean sits at the
    box centre. ``margin_angstrom`` is the total empty space added to the extent per axis.
    """
    check_margin(margin_angstrom)
    pos = np.asarray(positions_angstrom, dtype=float).reshape(-1, 3)
    if pos.size == 0 or not np.all(np.isfinite(pos)):
        raise InputError("a box needs at least one atom with finite positions")
    step_angstrom = coarse_spacing(upscale) * BOHR_ANGSTROM
    extent = pos.max(axis=0) - pos.min(axis=0)
    if np.any(extent + margin_angstrom > MAX_BOX_ANGSTROM):
        raise InputError(
            f"the box would be {' x '.join(f'{v:.4g}' for v in extent + margin_angstrom)} Angstrom "
            f"(extent + margin); rhosr boxes hold one molecule, at most {MAX_BOX_ANGSTROM:g} Angstrom "
            "per axis (are the positions in Angstrom?)")
    n_coarse = np.ceil((extent + margin_angstrom) / step_angstrom - 1e-9).astype(int)
    n_coarse = np.maximum(n_coarse, 1)
    lengths_angstrom = n_coarse * step_angstrom - BOX_SHRINK_ANGSTROM
    centred = pos - pos.mean(axis=0) + lengths_angstrom / 2
    grid = Grid(
        lengths=tuple(float(v) for v in lengths_angstrom / BOHR_ANGSTROM),
        coarse_mesh=tuple(int(n) for n in n_coarse),
        upscale=upscale,
    )
    return grid, centred


def check_holds(grid: Grid, positions_angstrom: np.ndarray, source: str) -> None:
    """InputError unless every atom (Angstrom, box frame) lies inside the box of ``grid``."""
    pos = np.asarray(positions_angstrom, dtype=float).reshape(-1, 3)
    lengths = grid.lengths_angstrom
    outside = np.any((pos < -1e-6) | (pos > lengths + 1e-6), axis=1)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise InputError(
            f"{source}: atom {i + 1} at {np.round(pos[i], 3).tolist()} Angstrom lies outside the box "
            f"{np.round(lengths, 3).tolist()} Angstrom; a box must hold its molecule")


def check_margin(margin_angstrom: float) -> float:
    """The margin (Angstrom) if it is a finite number >= :data:`MIN_MARGIN_ANGSTROM`."""
    return check_number("margin", margin_angstrom, low=MIN_MARGIN_ANGSTROM,
                        hint="Angstrom of empty space around the molecule per axis, where its "
                             "periodic images begin; default 4")


def place_in_box(
    mol: Molecule, upscale: int = 2, margin_angstrom: float = 4.0
) -> tuple[Molecule, Grid]:
    """The molecule moved into its box (the authors' rule) and the box's grid."""
    grid, positions = box_for_positions(mol.positions_angstrom, upscale, margin_angstrom)
    atoms = mol.atoms.copy()
    atoms.set_positions(positions)
    atoms.set_cell(grid.lengths_angstrom)
    atoms.set_pbc(True)
    return replace(mol, atoms=atoms), grid


# -- the 24 proper grid rotations ---------------------------------------------------------------
# A proper rotation by multiples of 90 degrees permutes the axes and negates some of them. On a
# periodic grid whose point ``i`` sits at ``i*h`` from the box corner, negating an axis maps
# index ``i`` to ``(-i) mod n`` - not ``n - 1 - i`` as ``torch.flip``/``rot90`` do. With ``flip``
# the coarse point ``i`` (fine point ``2i``) lands on fine point ``2n_c - 1 - 2i`` but its coarse
# image on ``n_c - 1 - i``, i.e. fine ``2n_c - 2 - 2i``: the fine grid slides one voxel against
# the coarse one. ``rotate_grid`` negates by ``(-i) mod n``, so the rotated coarse input is
# exactly the SAD of the rotated molecule on its own coarse grid. Training augments with them,
# prediction averages over them.


def proper_rotations() -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """The 24 proper rotations of the cube as ``(perm, signs)``: new axis ``d`` is old axis
    ``perm[d]`` times ``signs[d]``."""
    out = []
    for perm in itertools.permutations(range(3)):
        parity = np.linalg.det(np.eye(3)[list(perm)])
        for signs in itertools.product((1, -1), repeat=3):
            if parity * np.prod(signs) > 0:
                out.append((perm, signs))
    return out


ROTATIONS = proper_rotations()


def rotate_grid(array, perm, signs):
    """Rotate the last three (spatial) axes of a numpy array or a torch tensor."""
    is_numpy = isinstance(array, np.ndarray)
    lead = array.ndim - 3
    axes = list(range(lead)) + [lead + p for p in perm]
    out = np.transpose(array, axes) if is_numpy else array.permute(*axes)
    for d, s in enumerate(signs):
        if s < 0:
            axis = lead + d
            n = out.shape[axis]
            index = (-np.arange(n)) % n
            if is_numpy:
                out = np.take(out, index, axis=axis)
            else:
                import torch

                out = out.index_select(axis, torch.as_tensor(index, device=out.device))
    return out


def inverse_rotation(perm, signs):
    """The ``(perm, signs)`` that undoes :func:`rotate_grid` with ``(perm, signs)``."""
    inv = [0, 0, 0]
    for d, p in enumerate(perm):
        inv[p] = d
    return tuple(inv), tuple(signs[inv[a]] for a in range(3))


def rotate_positions(positions_bohr: np.ndarray, lengths_bohr, perm, signs) -> tuple[np.ndarray, tuple]:
    """The same rotation applied to atoms (Bohr, box frame) and the box lengths."""
    lengths = np.asarray(lengths_bohr)
    new = positions_bohr[:, list(perm)] * np.asarray(signs)
    new_lengths = lengths[list(perm)]
    return np.mod(new, new_lengths), tuple(float(v) for v in new_lengths)
