"""Memory: what the machine has available now, and refusing work that will not fit.

Every large job (a DFT calculation, a prediction, a SAD density on a big box) first
estimates its peak memory from the sizes it will allocate and calls :func:`check_fits`,
so a box that would not fit is a one-line error with the estimate before any work starts,
not an out-of-memory kill after minutes of it.
"""

from __future__ import annotations

import os

from rhosr.errors import InputError


def available_bytes() -> int:
    """Memory the machine has available now: Linux ``MemAvailable``, elsewhere the physical
    memory."""
    try:
        with open("/proc/meminfo") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
        return kib * 1024
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(estimate_bytes: float, what: str, hint: str = "") -> None:
    """InputError when ``estimate_bytes`` exceeds the memory available now.

    ``what`` names the job ("DFT of water on a 120 x 120 x 120 mesh"); ``hint`` says what to
    change."""
    available = available_bytes()
    if estimate_bytes > available:
        raise InputError(f"{what} needs about {format_bytes(estimate_bytes)} of memory, "
                         f"{format_bytes(available)} available{'; ' + hint if hint else ''}")


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (or TB), e.g. ``3.2 GB``."""
    return f"{n / 1e12:.3g} TB" if n >= 1e12 else f"{n / 1e9:.3g} GB"
