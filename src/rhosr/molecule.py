"""Reading and validating molecules.

A molecule argument (``MOL`` on the command line) is, in this order of precedence:

1. ``qm9:INDEX`` - a QM9 molecule by its index, from the ``qm9pack`` package;
2. an existing file - anything ASE reads (xyz, extxyz, pdb, cif, sdf, ...); the first frame;
3. ``smiles:STRING`` or a bare SMILES string - embedded with RDKit (ETKDG, then MMFF),
   which is the optional ``rhosr[smiles]`` extra.

Positions are in Angstrom at this edge; everything after the box is in Bohr. ``spin`` is
PySCF's ``2S`` (number of unpaired electrons); ``charge`` is the total charge in e.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from rhosr.checks import check_number
from rhosr.errors import InputError, RhosrWarning

MIN_DISTANCE_ANGSTROM = 0.5
PSEUDO = "gth-pbe"
LABEL_BASIS = "gth-tzv2p"
SAD_BASIS = "gth-szv"


@dataclass
class Molecule:
    """Atoms (ASE, Angstrom) with the total charge and spin (2S) of the electronic state."""

    atoms: Atoms
    charge: int = 0
    spin: int = 0
    name: str = "molecule"

    @property
    def symbols(self) -> list[str]:
        return self.atoms.get_chemical_symbols()

    @property
    def positions_angstrom(self) -> np.ndarray:
        return self.atoms.get_positions()

    @property
    def n_valence(self) -> int:
        """Valence electron count of the GTH pseudopotentials, minus the charge."""
        return sum(valence_electrons(s) for s in self.symbols) - self.charge


@functools.cache
def valence_electrons(symbol: str) -> int:
    """Valence electrons of ``symbol`` in the GTH-PBE pseudopotential; InputError if none."""
    from rhosr.element_tables import lookup

    value = lookup(f"{symbol}/valence")
    if value is None:
        value = _pyscf_valence(symbol)
    if value is None:
        raise InputError(f"element {symbol} has no GTH-PBE pseudopotential")
    return int(value)


def _pyscf_valence(symbol: str) -> int | None:
    from pyscf.pbc.gto import pseudo

    try:
        return int(sum(pseudo.load(PSEUDO, symbol)[0]))
    except Exception:
        return None


@functools.cache
def element_counts(symbol_lists) -> dict[str, int]:
    """For each element, in how many of the molecules (lists of symbols) it occurs; sorted."""
    counts: dict[str, int] = {}
    for symbols in symbol_lists:
        for symbol in set(symbols):
            counts[symbol] = counts.get(symbol, 0) + 1
    return dict(sorted(counts.items()))


def has_basis(symbol: str, basis: str) -> bool:
    """Whether PySCF's library has ``basis`` for ``symbol`` (the label and SAD bases are looked
    up in the shipped element tables)."""
    from rhosr.element_tables import lookup

    value = lookup(f"{symbol}/has/{basis}")
    return bool(value) if value is not None else _pyscf_has_basis(symbol, basis)


def _pyscf_has_basis(symbol: str, basis: str) -> bool:
    from pyscf.gto import basis as gto_basis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return len(gto_basis.load(basis, symbol)) > 0
        except Exception:
            return False


@functools.cache
def n_basis_functions(symbol: str, basis: str = LABEL_BASIS) -> int:
    """Spherical basis functions of one atom of ``symbol`` in ``basis`` (PySCF's library)."""
    from rhosr.element_tables import lookup

    value = lookup(f"{symbol}/nbas") if basis == LABEL_BASIS else None
    return int(value) if value is not None else _pyscf_n_basis_functions(symbol, basis)


def _pyscf_n_basis_functions(symbol: str, basis: str) -> int:
    from pyscf.gto import basis as gto_basis

    return sum((2 * shell[0] + 1) * (len(shell[1]) - 1) for shell in gto_basis.load(basis, symbol))


def validate(mol: Molecule) -> Molecule:
    """Check a molecule before any calculation; raise InputError with one clear line."""
    symbols = mol.symbols
    if len(symbols) == 0:
        raise InputError(f"{mol.name}: no atoms")
    for s in sorted(set(symbols)):
        if s not in chemical_symbols[1:]:
            raise InputError(f"{mol.name}: unknown element {s!r}")
        valence_electrons(s)
        for basis in (LABEL_BASIS, SAD_BASIS):
            if not has_basis(s, basis):
                raise InputError(f"{mol.name}: element {s} has no {basis.upper()} basis in PySCF")
    pos = mol.positions_angstrom
    if not np.all(np.isfinite(pos)):
        raise InputError(f"{mol.name}: positions are not finite numbers")
    if len(pos) > 1:
        i, j, d = _closest_pair(pos)
        if d < MIN_DISTANCE_ANGSTROM:
            raise InputError(
                f"{mol.name}: atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {d:.3f} Angstrom "
                f"apart (minimum {MIN_DISTANCE_ANGSTROM})"
            )
    check_number("--charge", mol.charge, integer=True)
    check_number("--spin", mol.spin, integer=True)
    n = mol.n_valence
    if n <= 0:
        raise InputError(f"{mol.name}: charge {mol.charge} leaves {n} valence electrons")
    if mol.spin < 0 or mol.spin > n or (n - mol.spin) % 2:
        hint = "; use --spin 1 or another --charge" if n % 2 and mol.spin == 0 else ""
        raise InputError(
            f"{mol.name}: {n} valence electrons cannot have spin (2S) {mol.spin}{hint}"
        )
    nao = sum(n_basis_functions(s) for s in symbols)
    if (n + mol.spin) // 2 > nao:
        raise InputError(
            f"{mol.name}: charge {mol.charge} and spin {mol.spin} put {n} valence electrons "
            f"({(n + mol.spin) // 2} of one spin) in {nao} {LABEL_BASIS.upper()} orbitals; "
            "each orbital holds one electron of each spin")
    return mol


SMALL_MOLECULE_ATOMS = 500
"""Up to this many atoms the closest pair is found from all pairwise distances (no SciPy
import, ~0.2 s of a one-molecule prediction); larger molecules use SciPy's KD-tree."""


def _closest_pair(pos: np.ndarray) -> tuple[int, int, float]:
    """Indices and distance (Angstrom) of the closest pair (the first such pair when tied)."""
    if len(pos) <= SMALL_MOLECULE_ATOMS:
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=-1)
        d2[np.diag_indices(len(pos))] = np.inf
        i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
        return int(i), int(j), float(np.sqrt(d2[i, j]))
    from scipy.spatial import cKDTree

    d, idx = cKDTree(pos).query(pos, k=2)
    i = int(np.argmin(d[:, 1]))
    return i, int(idx[i, 1]), float(d[i, 1])


def read_molecule(
    spec: str, charge: int = 0, spin: int = 0, fmt: str | None = None, check: bool = True
) -> Molecule:
    """Read a molecule from a file, ``qm9:INDEX`` or a SMILES string (see module docstring)."""
    if spec.startswith("qm9:"):
        mol = _from_qm9(spec[4:], charge, spin)
    elif os.path.exists(spec):
        mol = _from_file(spec, charge, spin, fmt)
    else:
        smiles = spec[len("smiles:") :] if spec.startswith("smiles:") else spec
        mol = from_smiles(smiles, charge=charge, spin=spin, source=spec)
    return validate(mol) if check else mol


def _from_qm9(index_text: str, charge: int, spin: int) -> Molecule:
    from rhosr.qm9 import load_qm9

    try:
        index = int(index_text)
    except ValueError:
        raise InputError(f"qm9:{index_text}: the QM9 index must be an integer") from None
    symbols, positions = load_qm9(index)
    return Molecule(Atoms(symbols, positions), charge, spin, name=f"qm9_{index:06d}")


def _from_file(path: str, charge: int, spin: int, fmt: str | None) -> Molecule:
    name = os.path.splitext(os.path.basename(path))[0]
    if (fmt or os.path.splitext(path)[1].lstrip(".").lower()) in ("xyz", "extxyz"):
        _check_xyz_counts(path)
        atoms = _read_plain_xyz(path)
        if atoms is not None:
            return Molecule(atoms, charge, spin, name=name)
    import ase.io

    try:
        atoms = ase.io.read(path, index=0, format=fmt)
    except StopIteration:
        raise InputError(f"{path}: no atoms") from None
    except Exception as exc:  # ASE raises many kinds; the user needs the file and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read structure ({reason})") from None
    if isinstance(atoms, list):
        atoms = atoms[0]
    if atoms.pbc.any():
        warnings.warn(f"{path}: its periodic cell is ignored; its {len(atoms)} atoms are treated as "
                      "an isolated molecule in a box of their own", RhosrWarning, stacklevel=3)
    atoms = Atoms(atoms.get_chemical_symbols(), atoms.get_positions())
    return Molecule(atoms, charge, spin, name=name)


def _read_plain_xyz(path: str) -> Atoms | None:
    """The first frame of a plain XYZ file (an atom count, a comment line, then ``symbol x y z``
    lines in Angstrom), or None for anything else, which ASE reads: a comment with a ``Lattice``
    (a periodic cell) or with ``Properties`` other than species and positions (extended XYZ as
    ASE writes it for a molecule is plain), other columns, atomic numbers for symbols, ...
    Decided for speed: importing ``ase.io`` costs 0.5-1 s (it pulls in SciPy), as much as
    predicting a small molecule, and an XYZ file is what most users pass; the atoms are the ones
    ASE reads (tested)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    try:
        count = int(lines[0].strip())
    except (IndexError, ValueError):
        return None
    comment = lines[1].lower() if len(lines) > 1 else ""
    if count < 1 or len(lines) < count + 2 or "lattice=" in comment or (
            "properties=" in comment and "properties=species:s:1:pos:r:3" not in comment.split()):
        return None
    symbols, positions = [], []
    for line in lines[2:count + 2]:
        fields = line.split()
        if len(fields) != 4 or fields[0] not in chemical_symbols[1:]:
            return None
        try:
            positions.append([float(x) for x in fields[1:]])
        except ValueError:
            return None
        symbols.append(fields[0])
    if not np.isfinite(positions).all():
        return None  # ASE's reader says why
    return Atoms(symbols, positions)


def _check_xyz_counts(path: str) -> None:
    """Refuse an xyz file whose frame header announces more atoms than the lines that follow:
    ASE reads such a count line by line past the end of the file (a count of 999999999 takes
    minutes). Frames are walked as ASE walks them: a count line, a comment line, the atoms; a
    blank line ends the file. A count that is not an integer is left for ASE to report."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    at = 0
    while at < len(lines) and lines[at].strip():
        try:
            count = int(lines[at].split()[0])
        except ValueError:
            return
        if count < 0 or count > len(lines) - at - 2:
            raise InputError(f"{path}: the xyz header on line {at + 1} announces {count} atoms, "
                             f"but {max(0, len(lines) - at - 2)} lines follow its comment line")
        at += count + 2


def from_smiles(
    smiles: str, charge: int = 0, spin: int = 0, seed: int = 0xF00D, source: str | None = None
) -> Molecule:
    """Embed a SMILES string in 3D with RDKit (ETKDG + MMFF); hydrogens are added.

    The SMILES formal charges must add up to ``charge`` when both are given.
    """
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem
    except ImportError:
        raise InputError(
            f"{source or smiles!r} is not a file or qm9:INDEX; reading SMILES needs RDKit: "
            "pip install 'rhosr[smiles]'"
        ) from None
    RDLogger.DisableLog("rdApp.*")
    rd = Chem.MolFromSmiles(smiles) if smiles else None
    if rd is None:
        raise InputError(
            f"{source or smiles!r} is neither an existing file, qm9:INDEX nor a valid SMILES"
        )
    formal = Chem.GetFormalCharge(rd)
    if charge == 0:
        charge = formal
    elif formal not in (0, charge):
        raise InputError(f"SMILES {smiles!r} has formal charge {formal}, but --charge is {charge}")
    rd = Chem.AddHs(rd)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(rd, params) != 0:
        raise InputError(f"RDKit could not embed SMILES {smiles!r} in 3D")
    if AllChem.MMFFHasAllMoleculeParams(rd):
        AllChem.MMFFOptimizeMolecule(rd, maxIters=2000)
    symbols = [a.GetSymbol() for a in rd.GetAtoms()]
    positions = rd.GetConformer().GetPositions()
    name = "".join(ch if ch.isalnum() else "_" for ch in smiles)[:40] or "smiles"
    return Molecule(Atoms(symbols, positions), charge, spin, name=name)
