"""Reading molecules and rejecting bad ones with one clear line and exit code 2."""

import numpy as np
import pytest

from rhosr.errors import InputError
from rhosr.molecule import read_molecule


def test_read_xyz_file(water_xyz):
    mol = read_molecule(str(water_xyz))
    assert mol.symbols == ["O", "H", "H"]
    assert mol.n_valence == 8


def test_plain_xyz_is_read_without_ase_io_as_ase_reads_it(tmp_path):
    """The plain-XYZ fast path gives ASE's atoms (first frame); anything else goes to ASE."""
    import ase.io

    from rhosr.molecule import _read_plain_xyz

    text = ("3\nwater, a comment\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
            "2\nsecond frame\nH 0 0 0\nH 0 0 0.74\n")
    plain = tmp_path / "water.xyz"
    plain.write_text(text)
    atoms, reference = _read_plain_xyz(str(plain)), ase.io.read(plain, index=0)
    assert atoms.get_chemical_symbols() == reference.get_chemical_symbols()
    np.testing.assert_array_equal(atoms.positions, reference.positions)
    assert read_molecule(str(plain)).symbols == ["O", "H", "H"]
    extended = tmp_path / "ext.xyz"
    extended.write_text('1\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
                        "He 0 0 0\n")
    ase.io.write(tmp_path / "ase.xyz", reference)  # ASE's own extended XYZ of a molecule: plain
    assert "Properties=" in (tmp_path / "ase.xyz").read_text()
    np.testing.assert_array_equal(_read_plain_xyz(str(tmp_path / "ase.xyz")).positions, reference.positions)
    columns = tmp_path / "columns.xyz"
    columns.write_text("1\nProperties=species:S:1:pos:R:3:forces:R:3\nHe 0 0 0 1 1 1\n")
    assert _read_plain_xyz(str(columns)) is None
    numbers = tmp_path / "numbers.xyz"
    numbers.write_text("1\n\n2 0 0 0\n")
    assert _read_plain_xyz(str(extended)) is None and _read_plain_xyz(str(numbers)) is None
    with pytest.warns(UserWarning, match="periodic cell is ignored"):
        assert read_molecule(str(extended), check=False).symbols == ["He"]


def test_read_qm9_index():
    mol = read_molecule("qm9:1")
    assert sorted(mol.symbols) == ["C", "H", "H", "H", "H"]


def test_read_smiles_embeds_hydrogens():
    mol = read_molecule("CCO")
    assert sorted(mol.symbols).count("H") == 6
    d = np.linalg.norm(mol.positions_angstrom[0] - mol.positions_angstrom[1])
    assert 1.4 < d < 1.6  # a C-C bond after MMFF


def test_charge_changes_electron_count(water_xyz):
    assert read_molecule(str(water_xyz), charge=1, spin=1).n_valence == 7


def test_other_ase_formats(tmp_path, water_xyz):
    import ase.io

    pdb = tmp_path / "water.pdb"
    ase.io.write(pdb, ase.io.read(water_xyz))
    assert read_molecule(str(pdb)).symbols == ["O", "H", "H"]


BAD = {
    "no_atoms": ("0\nempty\n", "no atoms"),
    "unknown_element": ("2\n\nXx 0 0 0\nH 0 0 1\n", "cannot read structure"),
    "no_gth_basis": ("1\n\nFe 0 0 0\n", "no GTH-TZV2P basis"),
    "too_close": ("2\n\nH 0 0 0\nH 0 0 0.3\n", "0.300 Angstrom apart"),
    "odd_electrons": ("1\n\nH 0 0 0\n", "cannot have spin"),
    # ASE would read a huge count line by line past the end of the file (minutes)
    "huge_count": ("999999999\nwater\nO 0 0 0\nH 0 0 1\nH 0 1 0\n", "announces 999999999 atoms"),
    "huge_count_second_frame": ("3\nwater\nO 0 0 0\nH 0 0 1\nH 0 1 0\n999999999\n\n",
                                "line 6 announces 999999999 atoms"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_molecule_raises_input_error(tmp_path, case):
    text, message = BAD[case]
    path = tmp_path / f"{case}.xyz"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_molecule(str(path))


@pytest.mark.parametrize("case", BAD)
def test_bad_molecule_cli_one_line_exit_2(tmp_path, run_cli, case):
    text, message = BAD[case]
    path = tmp_path / f"{case}.xyz"
    path.write_text(text)
    out = tmp_path / "out.cube"
    code, stdout, stderr = run_cli("sad", path, "-o", out)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and message in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("spec, message", [
    ("qm9:abc", "must be an integer"),
    ("qm9:999999999", "not in qm9pack"),
    ("C1CC(", "neither an existing file"),
])
def test_bad_specs(spec, message):
    with pytest.raises(InputError, match=message):
        read_molecule(spec)


def test_periodic_file_is_read_as_an_isolated_molecule_with_a_warning(tmp_path, run_cli):
    from ase.build import bulk

    from rhosr.errors import RhosrWarning

    bulk("Si").write(tmp_path / "si.cif")
    with pytest.warns(RhosrWarning, match="periodic cell is ignored"):
        mol = read_molecule(str(tmp_path / "si.cif"))
    assert len(mol.atoms) == 2 and not mol.atoms.pbc.any()
    code, _, err = run_cli("sad", tmp_path / "si.cif", "-o", tmp_path / "si.cube")
    assert code == 0 and "rhosr sad: warning: " in err and "periodic cell is ignored" in err


def test_qm9_prefetch_reads_many_in_one_pass():
    from rhosr import qm9

    qm9._PREFETCHED.clear()
    alone = qm9.load_qm9(1808)
    qm9.prefetch([1808, 21976, 3])
    assert set(qm9._PREFETCHED) == {1808, 21976, 3}
    symbols, positions = qm9.load_qm9(1808)
    assert symbols == alone[0] and np.array_equal(positions, alone[1])
    positions[0, 0] = 99.0  # a caller's change does not reach the next caller
    assert qm9.load_qm9(1808)[1][0, 0] != 99.0
    qm9._PREFETCHED.clear()
