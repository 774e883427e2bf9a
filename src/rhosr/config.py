"""Typed configs and named presets. Unknown keys are errors, so a saved config describes itself.

DFT presets (labels). The reference is ``paper``: PBE, GTH-PBE pseudopotentials, GTH-TZV2P,
SCF on the 200 Hartree (400 Ry) mesh, conv_tol 1e-11, and the density evaluated exactly at the
fine-mesh points from the converged density matrix (as the authors did). Cheaper presets exist
because our machines are small; each states its measured distance from ``paper`` in
``label_error_vs_paper`` (Err_rho in percent, measured by ``benchmarks/dft_presets.py``, see
``benchmarks/results/dft_presets.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rhosr.errors import InputError


@dataclass(frozen=True)
class DFTPreset:
    """Settings of a GPW label calculation. Energies in Hartree.

    - ``scf_ke_cutoff``: plane-wave cutoff of the SCF mesh (the label is always evaluated on
      the fine 200 Hartree mesh).
    - ``density_eval``: ``exact`` evaluates ``rho(r) = sum_ij D_ij chi_i(r) chi_j(r)`` at
      every fine-mesh point (the authors' way); ``multigrid`` uses PySCF's multigrid, which
      gives the band-limited density on the mesh, ~0.003% from exact and ~35x faster.
    - ``smearing``: Fermi smearing width (Hartree), ``None`` for integer occupations.
    - ``scf_conv_check``: after PySCF's SCF has converged, build and diagonalise the Fock
      matrix once more to confirm (one more cycle, ~7% of a ``fast`` label). ``False`` skips
      it on the plain attempt only: the retries with a level shift keep it, because it is
      what removes the shift from the final orbital energies.
    - ``scf_precision``: PySCF's ``cell.precision`` of the SCF cell (``None``: PySCF's 1e-8).
      The multigrid drops Gaussian products below 1e-2 of it, so 1e-6 collocates each on a
      smaller sphere and halves the cost of a ``fast`` SCF cycle. The label density is still
      evaluated from the density matrix at PySCF's default precision.
    """

    name: str
    scf_ke_cutoff: float
    conv_tol: float
    density_eval: str = "exact"
    xc: str = "pbe"
    basis: str = "gth-tzv2p"
    pseudo: str = "gth-pbe"
    max_cycle: int = 100
    smearing: float | None = None
    scf_conv_check: bool = True
    scf_precision: float | None = None
    label_error_vs_paper: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DFTPreset:
        return from_dict_strict(cls, d, "DFT preset")

    def with_options(self, **changes) -> DFTPreset:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


SCF_ROUTE_KEYS = ("conv_tol", "scf_conv_check", "scf_precision")
"""Preset settings that say how tightly the SCF converges, not what the label is (functional,
basis, pseudopotentials, meshes, density evaluation, smearing): a store made with other values
of these takes new labels (each entry keeps the preset it was labelled with in its metadata)."""

PRESETS: dict[str, DFTPreset] = {
    "paper": DFTPreset("paper", scf_ke_cutoff=200.0, conv_tol=1e-11, density_eval="exact",
                       label_error_vs_paper="0 (reference)"),
    "fast": DFTPreset("fast", scf_ke_cutoff=100.0, conv_tol=1e-7, density_eval="multigrid",
                      scf_conv_check=False, scf_precision=1e-6,
                      label_error_vs_paper="0.013% mean, 0.021% max over 5 QM9 molecules "
                                           "(benchmarks/results/label_levers.md)"),
    "tiny": DFTPreset("tiny", scf_ke_cutoff=50.0, conv_tol=1e-7, density_eval="multigrid",
                      label_error_vs_paper="0.40% mean, 0.59% max over 3 QM9 molecules; tests only "
                                           "(benchmarks/results/dft_presets.md)"),
}


def get_preset(name: str) -> DFTPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def from_dict_strict(cls, d: dict, what: str):
    """``cls(**d)`` for a dataclass, with an InputError naming any unknown key."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"{what}: unknown keys {', '.join(unknown)}")
    return cls(**d)
