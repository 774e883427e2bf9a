"""The registry of input channel builders: what the model reads, computed from the structure
and the grid. A new input is one class here (or in its own module) plus :func:`register_input`.

An input class has ``Options`` (a frozen dataclass read strictly from the model config),
``channels`` (how many channels it makes), ``store_array`` (the name of the store array that
already holds it on the coarse mesh, or None: then it is computed from the entry's atoms when
read), ``is_sad`` (a single whole-molecule SAD channel, which the ``sad_*`` bases build on) and
``build(mol, grid, which)``: ``(channels, X, Y, Z)`` float32 in e/Bohr^3 on the ``coarse`` or
``fine`` mesh of ``grid``, for a molecule already placed in its box.

Labelling, the training dataset, prediction and evaluation all build inputs through here
(:func:`model_inputs` for a molecule, :func:`entry_inputs` for a store entry). This module
imports neither PySCF nor ASE until an input is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rhosr.errors import InputError
from rhosr.registry import Registry

if TYPE_CHECKING:
    from rhosr.grid import Grid
    from rhosr.molecule import Molecule

INPUTS = Registry("input")
register_input = INPUTS.register  # class decorator: available as ``inputs: [NAME, ...]``
get_input = INPUTS.get_class


@dataclass(frozen=True)
class NoOptions:
    """An input (or base) without settings."""


@register_input("sad")
class SADInput:
    """The superposition of atomic densities, the authors' recipe (:func:`rhosr.sad.sad_density`)."""

    Options = NoOptions
    store_array = "sad"
    is_sad = True
    atrocious = False

    def __init__(self, options: NoOptions | None = None):
        self.options = options or NoOptions()

    @property
    def channels(self) -> int:
        return 1

    def build(self, mol: Molecule, grid: Grid, which: str = "coarse") -> np.ndarray:
        from rhosr.sad import sad_channels

        return sad_channels(mol, grid, which, self.atrocious).astype(np.float32)


@register_input("sad_atrocious")
class AtrociousSADInput(SADInput):
    """The SAD from GTH-SZV with every exponent doubled (the authors' "atrocious" input)."""

    store_array = "sad_atrocious"
    atrocious = True


MAX_ELEMENTS = 118
_SYMBOL = re.compile(r"^[A-Z][a-z]?$")


@dataclass(frozen=True)
class ElementsOptions:
    elements: tuple[str, ...] = ()  # one channel per element, in this order

    def __post_init__(self):
        object.__setattr__(self, "elements", tuple(self.elements))
        if not 1 <= len(self.elements) <= MAX_ELEMENTS:
            raise InputError("model config: sad_elements needs a list of 1 to 118 elements, e.g. "
                             "{name: sad_elements, elements: [H, C, N, O, F]}")
        bad = [e for e in self.elements if not (isinstance(e, str) and _SYMBOL.match(e))]
        if not bad:
            from ase.data import chemical_symbols

            bad = [e for e in self.elements if e not in chemical_symbols[1:]]
        if bad or len(set(self.elements)) != len(self.elements):
            raise InputError(f"model config: sad_elements: {bad[0] if bad else 'repeated element'!r} "
                             "in elements; give distinct element symbols")


@register_input("sad_elements")
class ElementSADInput:
    """One SAD channel per element of a fixed list: channel ``c`` holds the atoms of
    ``elements[c]``, scaled as in the whole SAD. An atom of an element not in the list is in no
    channel of this input (it is still in the ``sad`` channel and the base, and ``predict``
    warns that the model never saw it)."""

    Options = ElementsOptions
    store_array = None
    is_sad = False

    def __init__(self, options: ElementsOptions):
        self.options = options

    @property
    def channels(self) -> int:
        return len(self.options.elements)

    def build(self, mol: Molecule, grid: Grid, which: str = "coarse") -> np.ndarray:
        from rhosr.sad import sad_channels

        return sad_channels(mol, grid, which, elements=self.options.elements).astype(np.float32)


def periodic_group(symbol: str) -> int | None:
    """The IUPAC group (1-18) of a main-group or transition element up to xenon, None beyond
    (lanthanides and heavier are not grouped here)."""
    from ase.data import atomic_numbers

    z = atomic_numbers.get(symbol, 0)
    if z in (1, 2):
        return 1 if z == 1 else 18
    for start, end in ((3, 10), (11, 18)):  # periods 2 and 3: groups 1, 2, then 13-18
        if start <= z <= end:
            k = z - start
            return k + 1 if k < 2 else k + 11
    if 19 <= z <= 54:  # periods 4 and 5: all 18 groups
        return (z - 19) % 18 + 1
    return None


@dataclass(frozen=True)
class GroupsOptions:
    groups: tuple[int, ...] = ()  # one channel per periodic-table group, in this order

    def __post_init__(self):
        object.__setattr__(self, "groups", tuple(self.groups))
        if (not self.groups or len(set(self.groups)) != len(self.groups)
                or any(not (isinstance(g, int) and 1 <= g <= 18) for g in self.groups)):
            raise InputError("model config: sad_groups needs a list of distinct groups from 1 to 18, "
                             "e.g. {name: sad_groups, groups: [1, 14, 15, 16, 17]}")


@register_input("sad_groups")
class GroupSADInput:
    """One SAD channel per periodic-table group of a fixed list: channel ``c`` holds the atoms
    whose element is in group ``groups[c]`` (H in group 1), scaled as in the whole SAD. On QM9
    (H, C, N, O, F) with groups ``[1, 14, 15, 16, 17]`` these are exactly the ``sad_elements``
    channels; a molecule with an element the training set never had, but of a group it had
    (P, S, Cl for QM9), puts that atom where its lighter group mate went, instead of in no
    channel. Atoms of other groups are in no channel (they stay in ``sad`` and the base)."""

    Options = GroupsOptions
    store_array = None
    is_sad = False

    def __init__(self, options: GroupsOptions):
        self.options = options

    @property
    def channels(self) -> int:
        return len(self.options.groups)

    def build(self, mol: Molecule, grid: Grid, which: str = "coarse") -> np.ndarray:
        from rhosr.sad import sad_channels

        channel_of = {s: self.options.groups.index(g) for s in set(mol.symbols)
                      if (g := periodic_group(s)) in self.options.groups}
        return sad_channels(mol, grid, which, channel_of=channel_of,
                            n_channels=self.channels).astype(np.float32)


def model_inputs(builders, mol: Molecule, grid: Grid) -> np.ndarray:
    """The model's coarse input ``(C, X, Y, Z)`` for a placed molecule: each builder's channels."""
    return np.concatenate([b.build(mol, grid, "coarse") for b in builders], axis=0)


def entry_molecule(meta: dict) -> Molecule:
    """The placed molecule of a store entry's metadata (box frame, its charge and spin)."""
    from rhosr.molecule import Molecule
    from rhosr.store import entry_atoms

    return Molecule(entry_atoms(meta), int(meta.get("charge", 0)), int(meta.get("spin", 0)),
                    name=str(meta.get("id", "entry")))


def entry_inputs(builders, entry, grid: Grid) -> np.ndarray:
    """The model's coarse input ``(C, X, Y, Z)`` float32 for a store entry read with
    :meth:`rhosr.store.DatasetStore.read_entry`: stored arrays where the entry has them, the
    rest computed from its atoms."""
    parts = []
    mol = None
    for b in builders:
        stored = getattr(entry, b.store_array, None) if b.store_array else None
        if stored is not None:
            parts.append(np.asarray(stored, np.float32)[None])
            continue
        mol = mol or entry_molecule(entry.meta)
        parts.append(b.build(mol, grid, "coarse"))
    return np.concatenate(parts, axis=0)
