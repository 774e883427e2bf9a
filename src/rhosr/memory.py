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


def gpu_available_bytes(device: str = "cuda") -> int:
    """Free memory of a CUDA device now (``torch.cuda.mem_get_info``)."""
    import torch

    return int(torch.cuda.mem_get_info(torch.device(device))[0])


def check_fits(estimate_bytes: float, what: str, hint: str = "", device: str = "cpu") -> None:
    """InputError when ``estimate_bytes`` exceeds the memory available now: the machine's, or
    with ``device="cuda..."`` that GPU's.

    ``what`` names the job ("DFT of water on a 120 x 120 x 120 mesh"); ``hint`` says what to
    change."""
    on_gpu = device.startswith("cuda")
    available = gpu_available_bytes(device) if on_gpu else available_bytes()
    if estimate_bytes > available:
        raise InputError(f"{what} needs about {format_bytes(estimate_bytes)} of "
                         f"{'GPU memory' if on_gpu else 'memory'}, {format_bytes(available)} "
                         f"{'free on the GPU' if on_gpu else 'available'}{'; ' + hint if hint else ''}")


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (or TB), e.g. ``3.2 GB``."""
    return f"{n / 1e12:.3g} TB" if n >= 1e12 else f"{n / 1e9:.3g} GB"
