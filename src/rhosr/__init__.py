"""rhosr: electron densities as 3D images, from a cheap SAD guess to the DFT density.

Units inside the package: Bohr, Hartree, e/Bohr^3; structure files and ASE objects in
Angstrom. Density arrays have axes (x, y, z) in C order.
"""

__version__ = "0.1.0"

import sys as _sys


# torch before any PySCF library is loaded. Both ship their own OpenMP runtime (libgomp);
# torch puts its runtime in the global namespace when imported, and PySCF libraries loaded
# after that bind to it. If torch came second, PySCF libraries loaded before and after it would
# use two runtimes at once, and with OMP_NUM_THREADS > 1 the GPW SCF silently stops converging
# (seen with PySCF 2.14 / torch 2.13; tests/test_threads.py guards it). torch itself takes
# ~1.7 s to import, which a prediction run by ONNX Runtime never needs; so instead of importing
# it here, the first import of pyscf (by rhosr or by the user, after importing rhosr) imports
# torch first. Import rhosr before using PySCF directly in the same process.
class _TorchBeforePySCF:
    """A ``sys.meta_path`` finder that finds nothing: it imports torch when pyscf is first
    looked for, then lets the usual finders find pyscf."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "pyscf" and "torch" not in _sys.modules:
            import torch  # noqa: F401
        return None


if "pyscf" not in _sys.modules and not any(isinstance(f, _TorchBeforePySCF) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _TorchBeforePySCF())

from rhosr.errors import InputError, RhosrError  # noqa: E402

# The rest of the public API is imported when first used, so that ``import rhosr.model`` (the
# network alone) and ``import rhosr.orbital_density`` (rendering) need neither PySCF nor ASE:
# a GPU machine with only torch and numpy can use them.
_LAZY = {
    "Grid": "rhosr.grid", "box_for_positions": "rhosr.grid", "place_in_box": "rhosr.grid",
    "err_rho": "rhosr.metrics", "Molecule": "rhosr.molecule", "read_molecule": "rhosr.molecule",
    "predict_density": "rhosr.predict", "sad_density": "rhosr.sad",
    "load_model": "rhosr.predict:load_predictor",  # a model folder or a shipped model's name
}

__all__ = [
    "Grid", "InputError", "Molecule", "RhosrError", "box_for_positions", "err_rho", "load_model",
    "place_in_box", "predict_density", "read_molecule", "sad_density",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, _, attr = _LAZY[name].partition(":")
        value = getattr(importlib.import_module(module), attr or name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rhosr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
