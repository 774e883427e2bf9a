"""SAD build time against atom count, ~10 to ~1000 atoms; fitted exponent.

Two families: water chains (molecules 3.1 Angstrom apart along x) and water clusters (a cubic
lattice, ~1 g/cm^3); each molecule randomly rotated (seeded). In a cluster smaller than an
atom's orbital window (~11 Angstrom) the window is cut by the box, so small clusters are
cheaper per atom than large ones; chains show the per-atom cost alone.

Times the coarse-mesh SAD (the model input, x2) after one warm-up call that fills the
per-element caches; best of ``--repeat`` runs. The exponent is the slope of log(time)
against log(atoms) (target <= 1.1). Also prints the peak memory.

Run: ``OMP_NUM_THREADS=1 python benchmarks/sad_scaling.py``; writes results/sad_scaling.md.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from rhosr.grid import place_in_box
from rhosr.molecule import Molecule
from rhosr.sad import sad_density

RESULTS = Path(__file__).parent / "results"


def water_cluster(shape: tuple[int, int, int], spacing: float = 3.1, seed: int = 7) -> Molecule:
    rng = np.random.default_rng(seed)
    water = molecule("H2O")
    water.translate(-water.get_center_of_mass())
    symbols, positions = [], []
    for ijk in np.ndindex(*shape):
        rot = Rotation.random(random_state=rng.integers(1 << 31))
        symbols += water.get_chemical_symbols()
        positions.append(rot.apply(water.get_positions()) + spacing * np.array(ijk))
    return Molecule(Atoms(symbols, np.concatenate(positions)), name=f"water{np.prod(shape)}")


def time_family(shapes: list[tuple[int, int, int]], repeat: int) -> list[tuple]:
    rows = []
    for shape in shapes:
        placed, grid = place_in_box(water_cluster(shape))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            rho = sad_density(placed, grid, "coarse")
            times.append(time.perf_counter() - t0)
        n_int = rho.sum() * grid.voxel_volume("coarse")
        rows.append((len(placed.atoms), grid.coarse_mesh, min(times), n_int / placed.n_valence - 1))
        print(f"{len(placed.atoms):5d} atoms  mesh {grid.coarse_mesh}  {min(times):8.3f} s", flush=True)
    return rows


def exponent(rows: list[tuple], min_atoms: int = 0) -> float:
    atoms = np.array([r[0] for r in rows if r[0] >= min_atoms], dtype=float)
    seconds = np.array([r[2] for r in rows if r[0] >= min_atoms])
    return float(np.polyfit(np.log(atoms), np.log(seconds), 1)[0]) if len(atoms) >= 2 else float("nan")


def table(title: str, rows: list[tuple], repeat: int) -> list[str]:
    return [
        f"## {title}",
        "",
        f"| atoms | coarse mesh | seconds (best of {repeat}) | integral / N_e - 1 |",
        "|---|---|---|---|",
        *[f"| {a} | {'x'.join(map(str, m))} | {s:.3f} | {d:.1e} |" for a, m, s, d in rows],
        "",
        f"Fitted exponent (time ~ atoms^k), all sizes: **k = {exponent(rows):.3f}**; "
        f"sizes >= 100 atoms: k = {exponent(rows, 100):.3f}.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=[3, 10, 33, 100, 333])
    parser.add_argument("--clusters", type=int, nargs="+", default=[2, 3, 4, 5, 6, 7])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    placed, grid = place_in_box(water_cluster((1, 1, 1)))
    sad_density(placed, grid)  # warm-up: per-element caches
    chains = time_family([(n, 1, 1) for n in args.chains], args.repeat)
    clusters = time_family([(n, n, n) for n in args.clusters], args.repeat)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    lines = [
        "# SAD build time against atom count (coarse x2 mesh, one thread)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/sad_scaling.py --chains "
        f"{' '.join(map(str, args.chains))} --clusters {' '.join(map(str, args.clusters))}`",
        "",
        *table("Water chains", chains, args.repeat),
        *table("Water clusters (cubic)", clusters, args.repeat),
        f"Peak resident memory of the run: {peak_gb:.2f} GB.",
        "",
    ]
    (RESULTS / "sad_scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
