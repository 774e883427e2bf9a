"""One-step DFT: the Kohn-Sham matrix of a given density, one diagonalisation, energies.

The density is ``rho`` on the fine mesh of the molecule's box (e/Bohr^3, axes x, y, z: a
prediction, a cube file, a SAD). Everything else is PySCF's GPW machinery on the same
200 Hartree mesh, mirrored from ``pyscf.pbc.dft.multigrid.multigrid_pair.nr_rks`` with the
density's Fourier transform in place of the one PySCF builds from a density matrix:

- Hartree potential by FFT on the periodic box (G = 0 dropped, as PySCF does), plus the
  long-range local pseudopotential PySCF folds into it;
- PBE exchange-correlation through libxc, density gradients by FFT on the same mesh;
- kinetic, short-range local and non-local GTH terms from ``mf.get_hcore()``; GTH-TZV2P basis.

Then ``F C = S C e`` once: orbitals, orbital energies, the new density matrix ``D_out``.
Two total energies (Hartree):

- ``energy_ks``: the Kohn-Sham energy of ``D_out`` (PySCF's ``energy_tot``), i.e. the energy
  of the density one diagonalisation produces. Its error is second order in the input error
  and it is the energy of an actual wave function; we take it to be what the paper's Table 2
  reports ("one-step DFT": energies after one diagonalisation).
- ``energy_harris``: the Harris-Foulkes functional of the input density,
  ``sum_i f_i e_i - E_H[rho] - int v_xc[rho] rho + E_xc[rho] + E_nuc``; also stationary at the
  SCF density and free of a second Fock build.

At the SCF density both equal the SCF energy (tested to 1e-6 Hartree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhosr.errors import InputError


@dataclass
class OneStep:
    """Result of one diagonalisation. Energies in Hartree; ``dipole`` in Debye (x, y, z)."""

    energy_ks: float
    energy_harris: float
    mo_energy: np.ndarray
    mo_coeff: np.ndarray
    mo_occ: np.ndarray
    dm: np.ndarray
    dipole: np.ndarray
    electrons_in: float
    mf: object

    @property
    def homo(self) -> float:
        return float(self.mo_energy[self.mo_occ > 0].max())

    @property
    def lumo(self) -> float:
        return float(self.mo_energy[self.mo_occ == 0].min())

    @property
    def gap(self) -> float:
        return self.lumo - self.homo

    def to_dict(self) -> dict:
        return {"energy_ks": self.energy_ks, "energy_harris": self.energy_harris, "homo": self.homo,
                "lumo": self.lumo, "gap": self.gap, "dipole_debye": [float(v) for v in self.dipole],
                "electrons_in": self.electrons_in}


def kohn_sham_potential(mf, rho: np.ndarray):
    """The Coulomb + XC matrix of a grid density, tagged like PySCF's ``veff``.

    Returns ``(veff, parts)``: ``veff`` (nao, nao) with ``ecoul`` and ``exc`` attributes as
    in PySCF, and ``parts``: ``e_hartree``, ``e_xc``, ``int_vxc_rho`` (Hartree), ``electrons``.
    """
    from pyscf import lib
    from pyscf.pbc import tools
    from pyscf.pbc.dft.multigrid import multigrid_pair as mgp

    ni = mf._numint
    cell = mf.cell
    mesh = tuple(int(n) for n in ni.mesh)
    if tuple(rho.shape) != mesh:
        raise InputError(f"density mesh {rho.shape} differs from the Kohn-Sham mesh {mesh}")
    ngrids = int(np.prod(mesh))
    weight = cell.vol / ngrids
    if ni.vpplocG_part1 is None:
        mf.get_hcore()  # makes PySCF cache the long-range local pseudopotential
    xctype = ni._xc_type(mf.xc)
    if xctype not in ("LDA", "GGA"):
        raise InputError(f"one-step DFT supports LDA and GGA functionals, not {mf.xc}")
    rhoG = tools.fft(np.asarray(rho, dtype=np.float64).reshape(1, -1), mesh) * weight
    rhoG = rhoG.reshape(1, 1, ngrids)
    if xctype == "GGA":
        rhoG = np.concatenate([rhoG, mgp.backend.gradient_gs(rhoG[:, 0], cell.get_Gv(mesh))], axis=1)
    coulG = tools.get_coulG(cell, mesh=mesh)
    v_hartreeG = rhoG[0, 0] * coulG
    e_hartree = 0.5 * np.vdot(rhoG[0, 0], v_hartreeG).real / cell.vol
    vG = v_hartreeG + ni.vpplocG_part1
    ecoul = e_hartree + np.vdot(rhoG[0, 0], ni.vpplocG_part1).real / cell.vol
    rhoR = tools.ifft(rhoG.reshape(-1, ngrids), mesh).real * (1.0 / weight)
    exc, vxc = ni.eval_xc_eff(mf.xc, rhoR, deriv=1, xctype=xctype)[:2]
    vxc = np.asarray(vxc).reshape(-1, ngrids)
    rhoR = rhoR.reshape(-1, ngrids)
    e_xc = float(np.dot(rhoR[0], np.ravel(exc)) * weight)
    int_vxc_rho = float(np.sum(vxc * rhoR[: len(vxc)]) * weight)
    wv_freq = tools.fft(vxc, mesh).reshape(-1, ngrids)
    if xctype == "GGA":
        if mgp.GGA_METHOD.upper() != "FFT":
            raise InputError("one-step DFT mirrors PySCF's FFT treatment of GGA (GGA_METHOD = 'FFT')")
        gv = cell.get_Gv(mesh)
        wv_freq = mgp.backend.get_gga_vrho_gs(wv_freq[:1], wv_freq[1:4], gv, weight, ngrids, 1.0)
    else:
        wv_freq = wv_freq * weight
    wv_freq[0] += vG
    veff = np.asarray(mgp._get_j_pass2(ni, wv_freq, kpts=np.zeros((1, 3))))
    veff = veff.reshape(veff.shape[-2:])
    veff = lib.tag_array(veff, ecoul=ecoul, exc=e_xc, vj=None, vk=None)
    parts = {"e_hartree": float(e_hartree), "e_xc": e_xc, "int_vxc_rho": int_vxc_rho,
             "electrons": float(rhoR[0].sum() * weight)}
    return veff, parts


def diagonalise(mf, rho: np.ndarray):
    """``F[rho] C = S C e`` once for the closed-shell ``mf`` (a PySCF RKS with multigrid numint
    whose mesh is the density's mesh), nothing more: no energy of the result.

    Returns ``(hcore, parts, mo_energy, mo_coeff, mo_occ, dm)``; ``parts`` as in
    :func:`kohn_sham_potential`. This is all an SCF guess needs: the Kohn-Sham energy of ``dm``
    costs a second Fock build (about one SCF cycle) and the dipole another grid pass."""
    if getattr(mf.cell, "spin", 0):
        raise InputError("one-step DFT from a total density needs a closed shell (spin 0)")
    hcore = mf.get_hcore()
    veff, parts = kohn_sham_potential(mf, rho)
    mo_energy, mo_coeff = mf.eig(hcore + veff, mf.get_ovlp())
    mo_occ = mf.get_occ(mo_energy, mo_coeff)
    dm = mf.make_rdm1(mo_coeff, mo_occ)
    return hcore, parts, mo_energy, mo_coeff, mo_occ, dm


def one_step(mf, rho: np.ndarray) -> OneStep:
    """One diagonalisation of the Kohn-Sham matrix of ``rho`` for the closed-shell ``mf``
    (a PySCF RKS with multigrid numint whose mesh is the density's mesh), with both energies
    and the dipole of the result."""
    hcore, parts, mo_energy, mo_coeff, mo_occ, dm = diagonalise(mf, rho)
    band = float(np.dot(mo_occ, mo_energy))
    e_harris = band - parts["e_hartree"] - parts["int_vxc_rho"] + parts["e_xc"] + float(mf.energy_nuc())
    e_ks = float(mf.energy_tot(dm, hcore))
    dipole = np.asarray(mf.dip_moment(mf.cell, dm, unit="Debye", verbose=0))
    return OneStep(e_ks, e_harris, np.asarray(mo_energy), np.asarray(mo_coeff), np.asarray(mo_occ), dm,
                   dipole, parts["electrons"], mf)


def make_fine_mesh_scf(placed, grid, preset):
    """An RKS object on the molecule's 200 Hartree (fine) mesh with the preset's functional,
    basis and pseudopotential: the mesh the density lives on."""
    from rhosr.dft.cell import build_cell
    from rhosr.dft.label import make_scf
    from rhosr.grid import FINE_KE_CUTOFF

    cell = build_cell(placed, grid, FINE_KE_CUTOFF, preset.basis, preset.pseudo)
    if tuple(cell.mesh) != grid.fine_mesh:
        raise AssertionError(f"cell mesh {cell.mesh} differs from the fine mesh {grid.fine_mesh}")
    return make_scf(cell, preset)
