"""Gaussian cube files written fast: the text of ASE's ``write_cube``, formatted by numpy.

ASE writes a cube's values with ``ndarray.tofile(sep="\\n", format="%e")``, one C ``printf``
per value: ~0.4 s for the 1.7 M points of a QM9 molecule's fine mesh, more than the network
takes to predict them, and importing ``ase.io`` (which imports SciPy) costs another ~0.3 s of
a one-molecule ``rhosr predict``. :func:`write_cube` writes the same bytes as ASE's
``write_cube(fh, atoms, data=rho, comment=...)`` (``tests/test_io.py`` compares them), with
the values formatted as ``%e`` by integer arithmetic on whole arrays. Values whose 7th
significant digit sits within 1e-6 of a rounding tie, whose decimal exponent has three digits,
or that are not finite are formatted by ``printf`` itself, so every line is exactly ``%e``.
Reading cube files stays with ASE (:func:`rhosr.io.read_cube`).
"""

from __future__ import annotations

import functools
from typing import BinaryIO

import numpy as np


@functools.cache
def _digits(k: int) -> np.ndarray:
    """The zero-padded decimal digits of every number below ``10**k``, as bytes: ``(10**k, k)``."""
    return np.frombuffer("".join(f"{i:0{k}d}" for i in range(10**k)).encode(), dtype=np.uint8).reshape(-1, k)

TIE_MARGIN = 1e-6
"""Values whose scaled mantissa is this close to a rounding tie go to ``printf``."""


_POW10 = 10.0 ** np.arange(-93, 106)
"""``10.0 ** k`` for ``k`` = -93 .. 105: ``6 - exp`` for the decimal exponents ``exp`` = -99 .. 99
that :func:`format_e` formats itself, looked up instead of computed per value."""


CHUNK = 1 << 16
"""Values formatted at a time: the dozen temporary arrays of a chunk (~0.5 MB each) stay in
the CPU's cache and their memory is reused, where a whole fine mesh at once would allocate a
dozen arrays of its size (~11 MB each for a QM9 molecule, ~200 MB for a 294^3 mesh)."""


def format_e(values: np.ndarray) -> bytes:
    """``b"\\n".join(b"%e" % v for v in values.ravel())`` (no trailing newline), fast."""
    v = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return b""
    return b"".join(_format_lines(v[start:start + CHUNK]) for start in range(0, v.size, CHUNK))[:-1]


def _format_lines(v: np.ndarray) -> bytes:
    """``%e`` of each value of the 1-D float64 ``v``, each line ending in a newline."""
    a = np.abs(v)
    nonzero = a > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exp = np.floor(np.log10(a, where=nonzero, out=np.ones_like(a))).astype(np.int64)
        slow = ~np.isfinite(v) | (np.abs(exp) > 98)
        exp[slow] = 0
        scaled = a * _POW10[99 - exp]  # the mantissa times 1e6, about [1e6, 1e7)
        # log10 may be off by one next to a power of ten
        low = nonzero & ~slow & (scaled < 1e6)
        exp[low] -= 1
        scaled[low] = a[low] * _POW10[99 - exp[low]]
        high = nonzero & ~slow & (scaled >= 1e7)
        exp[high] += 1
        scaled[high] = a[high] * _POW10[99 - exp[high]]
        floor = np.floor(scaled)
    slow |= np.abs(scaled - floor - 0.5) < TIE_MARGIN  # printf rounds the exact binary value: let it
    digits = np.where(slow, 0, np.rint(scaled)).astype(np.int32)
    carry = digits >= 10_000_000  # 9.9999995 rounds to 10.000000: 1.000000e(exp+1)
    digits[carry] //= 10
    exp[carry] += 1
    exp[~nonzero] = 0

    n = v.size
    negative = np.signbit(v)  # printf writes -0.0 as "-0.000000e+00" too
    signed = bool(negative.any())
    width = 13 + signed  # "[-]d.dddddde+XX\n"
    out = np.empty((n, width), dtype=np.uint8)
    if signed:
        out[:, 0] = ord("-")
    body = out[:, signed:]
    high = _digits(3)[digits // 10_000]  # "d.dd" of the mantissa, then its last four digits
    body[:, 0] = high[:, 0]
    body[:, 1] = ord(".")
    body[:, 2:4] = high[:, 1:]
    body[:, 4:8] = _digits(4)[digits % 10_000]
    body[:, 8] = ord("e")
    body[:, 9] = np.where(exp < 0, ord("-"), ord("+"))
    magnitude = np.abs(exp).astype(np.uint8)
    body[:, 10] = magnitude // 10 + ord("0")
    body[:, 11] = magnitude % 10 + ord("0")
    body[:, 12] = ord("\n")
    slow_rest = slow
    if not signed and slow.any():  # a density: patch in place the slow lines printf makes 13 bytes
        slow_rest = slow.copy()
        for i in np.flatnonzero(slow):
            line = b"%e\n" % v[i]
            if len(line) == width:
                out[i] = np.frombuffer(line, dtype=np.uint8)
                slow_rest[i] = False
    if signed:
        keep = np.ones((n, width), dtype=bool)
        keep[:, 0] = negative
        text = out[keep].tobytes()
    else:
        text = out.tobytes()
    if slow_rest.any():
        text = _patch_slow(text, v, slow_rest, 13 + negative)  # bytes per line
    return text


def _patch_slow(text: bytes, v: np.ndarray, slow: np.ndarray, lengths: np.ndarray) -> bytes:
    """Replace the lines of the ``slow`` values with ``printf``'s ``%e``."""
    ends = np.cumsum(lengths)
    starts = ends - lengths
    parts, last = [], 0
    for i in np.flatnonzero(slow):
        parts.append(text[last:starts[i]])
        parts.append(b"%e\n" % v[i])
        last = ends[i]
    parts.append(text[last:])
    return b"".join(parts)


def write_cube(fh: BinaryIO, symbols_numbers: np.ndarray, positions_angstrom: np.ndarray,
               cell_angstrom: np.ndarray, rho: np.ndarray, comment: str) -> None:
    """Write a cube file to the binary file ``fh``: atoms (atomic numbers, positions in
    Angstrom), the cell (3 x 3, Angstrom) whose axes the mesh of ``rho`` (axes x, y, z) divides,
    the origin at zero, in ASE's layout (lengths converted to Bohr)."""
    from ase.units import Bohr  # the constant ASE's writer divides by (not PySCF's)

    rho = np.asarray(rho, dtype=np.float64)
    lines = [comment.strip(), "OUTER LOOP: X, MIDDLE LOOP: Y, INNER LOOP: Z",
             f"{len(symbols_numbers):5}{0.0:12.6f}{0.0:12.6f}{0.0:12.6f}"]
    for i in range(3):
        step = np.asarray(cell_angstrom[i], dtype=float) / rho.shape[i] / Bohr
        lines.append("{:5}{:12.6f}{:12.6f}{:12.6f}".format(rho.shape[i], *step))
    for z, (x, y, w) in zip(symbols_numbers, np.asarray(positions_angstrom, dtype=float) / Bohr):
        lines.append(f"{int(z):5}{0.0:12.6f}{x:12.6f}{y:12.6f}{w:12.6f}")
    fh.write(("\n".join(lines) + "\n").encode())
    fh.write(format_e(rho))
