"""rhosr: electron densities as 3D images, from a cheap SAD guess to the DFT density.

Units inside the package: Bohr, Hartree, e/Bohr^3; structure files and ASE objects in
Angstrom. Density arrays have axes (x, y, z) in C order.
"""

__version__ = "0.1.0"

from rhosr.errors import InputError, RhosrError  # noqa: E402
from rhosr.grid import Grid, box_for_positions, place_in_box  # noqa: E402
from rhosr.metrics import err_rho  # noqa: E402
from rhosr.molecule import Molecule, read_molecule  # noqa: E402
from rhosr.sad import sad_density  # noqa: E402

__all__ = [
    "Grid", "InputError", "Molecule", "RhosrError", "box_for_positions", "err_rho",
    "place_in_box", "read_molecule", "sad_density",
]
