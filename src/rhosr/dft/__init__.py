"""PySCF GPW calculations: periodic cells, labels, densities on grids."""

from rhosr.dft.cell import build_cell
from rhosr.dft.density import density_on_mesh
from rhosr.dft.label import Label, run_label

__all__ = ["Label", "build_cell", "density_on_mesh", "run_label"]
