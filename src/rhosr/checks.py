"""Checks of numbers that come from the user (flags, config keys): one-line InputErrors.

Each value is checked once, in the library function that consumes it, before any work:
a finite number (never NaN or infinity), an integer where a count is meant (``True`` is not
a count), and inside its range. The message names the value as the user wrote it (the
flag, or the config key) and what it got.
"""

from __future__ import annotations

import math
import numbers

from rhosr.errors import InputError


def check_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    integer: bool = False,
    hint: str = "",
):
    """``value`` if it is a finite number with ``low <= value <= high`` and ``value > above``
    (bounds that are ``None`` are not checked) and, with ``integer``, a whole number; else an
    InputError naming ``name``. Numeric strings (YAML reads ``1e-3`` as a string) are converted."""
    hint = f" ({hint})" if hint else ""
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{name} must be {kind}, got {value!r}{hint}")
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}{hint}")
    if integer and not isinstance(value, numbers.Integral):
        if value != int(value):
            raise InputError(f"{name} must be an integer, got {value}{hint}")
        value = int(value)
    if above is not None and not value > above:
        raise InputError(f"{name} must be > {above:g}, got {value:g}{hint}")
    if low is not None and value < low:
        raise InputError(f"{name} must be >= {low:g}, got {value:g}{hint}")
    if high is not None and value > high:
        raise InputError(f"{name} must be <= {high:g}, got {value:g}{hint}")
    return value


def check_optional(name: str, value, **bounds):
    """:func:`check_number`, letting ``None`` (not given) through."""
    return None if value is None else check_number(name, value, **bounds)
