"""Pictures of densities, headless: isosurface PNGs with the atoms (the paper's Figure 1),
error isosurfaces at +/- a level, slices, and a self-contained interactive HTML view.

Densities are ``(X, Y, Z)`` arrays in e/Bohr^3 on a :class:`~rhosr.grid.Grid` mesh; atoms are
ASE ``Atoms`` in the box frame (Angstrom). Plots are in Angstrom.
"""

from __future__ import annotations

import os

import numpy as np

from rhosr.grid import BOHR_ANGSTROM, Grid

ERROR_LEVEL = 0.003  # e/Bohr^3, the paper's Figure 1


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mesh_surface(ax, volume: np.ndarray, level: float, spacing_angstrom, color, alpha, step: int = 1):
    """Add the ``level`` isosurface of ``volume`` (skimage marching cubes) to a 3D axis."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    if not (volume.min() < level < volume.max()):
        return 0
    verts, faces, _, _ = marching_cubes(volume, level, spacing=tuple(spacing_angstrom), step_size=step)
    ax.add_collection3d(Poly3DCollection(verts[faces], facecolor=color, edgecolor="none", alpha=alpha))
    return len(faces)


def _draw_atoms(ax, atoms) -> None:
    from ase.data import covalent_radii
    from ase.data.colors import jmol_colors

    pos = atoms.get_positions()
    numbers = atoms.get_atomic_numbers()
    ax.scatter(
        pos[:, 0],
        pos[:, 1],
        pos[:, 2],
        s=200 * covalent_radii[numbers] ** 2,
        c=jmol_colors[numbers],
        edgecolors="k",
        linewidths=0.5,
        depthshade=False,
    )


def _frame(ax, grid: Grid, atoms) -> None:
    pos = atoms.get_positions()
    centre = pos.mean(axis=0)
    half = max(2.0, 0.5 * float(np.ptp(pos, axis=0).max()) + 1.5)
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x (A)")
    ax.set_ylabel("y (A)")
    ax.set_zlabel("z (A)")


def isosurface_png(
    path: str | os.PathLike, density: np.ndarray, grid: Grid, atoms, level: float = 0.05, title: str = ""
) -> None:
    """The ``level`` (e/Bohr^3) isosurface of a fine-mesh density with the atoms."""
    plt = _plt()
    fig = plt.figure(figsize=(5, 5), dpi=120)
    ax = fig.add_subplot(projection="3d")
    spacing = (
        grid.spacing("fine") * BOHR_ANGSTROM
        if density.shape == grid.fine_mesh
        else grid.spacing("coarse") * BOHR_ANGSTROM
    )
    _mesh_surface(ax, density, level, spacing, "tab:blue", 0.25, step=2)
    _draw_atoms(ax, atoms)
    _frame(ax, grid, atoms)
    ax.set_title(title or f"density isosurface {level:g} e/Bohr$^3$", fontsize=9)
    _save(fig, path)


def error_png(
    path: str | os.PathLike,
    difference: np.ndarray,
    grid: Grid,
    atoms,
    level: float = ERROR_LEVEL,
    title: str = "",
) -> None:
    """Isosurfaces of a density difference (prediction - reference) at +level (red) and
    -level (blue), e/Bohr^3, with the atoms: the paper's Figure 1."""
    plt = _plt()
    fig = plt.figure(figsize=(5, 5), dpi=120)
    ax = fig.add_subplot(projection="3d")
    spacing = grid.spacing("fine") * BOHR_ANGSTROM
    _mesh_surface(ax, difference, level, spacing, "tab:red", 0.35, step=2)
    _mesh_surface(ax, -difference, level, spacing, "tab:blue", 0.35, step=2)
    _draw_atoms(ax, atoms)
    _frame(ax, grid, atoms)
    ax.set_title(title or f"error isosurfaces +/-{level:g} e/Bohr$^3$ (red: too much)", fontsize=9)
    _save(fig, path)


def slices_png(path: str | os.PathLike, densities: dict[str, np.ndarray], grid: Grid, atoms) -> None:
    """Slices through the atoms' centre, perpendicular to x, y and z, one row per density
    (log colour scale, e/Bohr^3)."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    names = list(densities)
    fig, axes = plt.subplots(len(names), 3, figsize=(9, 3 * len(names)), dpi=110, squeeze=False)
    centre = atoms.get_positions().mean(axis=0) / BOHR_ANGSTROM
    lengths = grid.lengths_angstrom
    for row, name in enumerate(names):
        rho = densities[name]
        idx = [int(round(c / length * n)) % n for c, length, n in zip(centre, grid.lengths, rho.shape)]
        cuts = (rho[idx[0]], rho[:, idx[1]], rho[:, :, idx[2]])
        extents = (
            (0, lengths[2], 0, lengths[1]),
            (0, lengths[2], 0, lengths[0]),
            (0, lengths[1], 0, lengths[0]),
        )
        for col, (cut, extent, label) in enumerate(zip(cuts, extents, ("x", "y", "z"))):
            ax = axes[row, col]
            image = ax.imshow(
                np.clip(cut, 1e-4, None),
                origin="lower",
                extent=extent,
                norm=LogNorm(vmin=1e-4, vmax=max(1e-3, float(rho.max()))),
                cmap="viridis",
            )
            ax.set_title(f"{name}, {label} = centre", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=axes[row].tolist(), shrink=0.8, label="e/Bohr$^3$")
    _save(fig, path)


def html_view(path: str | os.PathLike, density: np.ndarray, grid: Grid, atoms, level: float = 0.05) -> None:
    """An interactive isosurface view (plotly; the JavaScript is embedded, so it opens
    offline in any browser). The density is shown on every second point to keep the file small."""
    import plotly.graph_objects as go
    from ase.data.colors import jmol_colors

    from rhosr.io import atomic_write

    sub = density[::2, ::2, ::2]
    spacing = (
        2 * grid.spacing("fine") * BOHR_ANGSTROM
        if density.shape == grid.fine_mesh
        else 2 * grid.spacing("coarse") * BOHR_ANGSTROM
    )
    x, y, z = np.meshgrid(*[np.arange(n) * h for n, h in zip(sub.shape, spacing)], indexing="ij")
    pos = atoms.get_positions()
    colors = [
        f"rgb({int(255 * r)},{int(255 * g)},{int(255 * b)})"
        for r, g, b in jmol_colors[atoms.get_atomic_numbers()]
    ]
    fig = go.Figure(
        [
            go.Isosurface(
                x=x.ravel(),
                y=y.ravel(),
                z=z.ravel(),
                value=sub.ravel(),
                isomin=level,
                isomax=level,
                surface_count=1,
                opacity=0.35,
                colorscale=[[0, "royalblue"], [1, "royalblue"]],
                showscale=False,
                caps=dict(x_show=False, y_show=False, z_show=False),
            ),
            go.Scatter3d(
                x=pos[:, 0],
                y=pos[:, 1],
                z=pos[:, 2],
                mode="markers",
                text=atoms.get_chemical_symbols(),
                marker=dict(size=8, color=colors, line=dict(width=1, color="black")),
            ),
        ]
    )
    fig.update_layout(
        scene=dict(aspectmode="data", xaxis_title="x (A)", yaxis_title="y (A)", zaxis_title="z (A)"),
        title=f"density isosurface {level:g} e/Bohr^3",
        margin=dict(l=0, r=0, t=30, b=0),
    )
    with atomic_write(path) as fh:
        fh.write(fig.to_html(include_plotlyjs=True, full_html=True))


def _save(fig, path) -> None:
    from rhosr.io import atomic_write

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    _plt().close(fig)
