"""Typed, strict reading of dataclasses from JSON or YAML mappings.

``typed_from_dict(cls, d, what)`` builds ``cls(**d)`` after checking that ``d`` is a mapping,
has no unknown keys, and that every value has its field's annotated type (``int``, ``float``,
``bool``, ``str``, ``dict``, ``X | None``, ``tuple[X, ...]``, a dataclass from a
mapping); lists become tuples. Any failure
is one :class:`rhosr.errors.InputError` line that starts with ``what``. No PySCF, no torch.
"""

from __future__ import annotations

import dataclasses
import typing

from rhosr.errors import InputError


def shown(key) -> str:
    """A user-given key as it may appear in a one-line message."""
    return key if isinstance(key, str) and key.isidentifier() else repr(key)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def check_value(value, tp, what: str):
    """``value`` converted to the annotation ``tp`` (lists to tuples), or an InputError."""
    if tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_value(value, arg, what)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(errors[0] if errors else f"{what}: must not be null")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{what}: must be a list, got {type(value).__name__}")
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise InputError(f"{what}: must have {len(item_types)} items, got {len(value)}")
        return tuple(check_value(v, t, f"{what}[{i}]") for i, (v, t) in enumerate(zip(value, item_types)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputError(f"{what}: must be a mapping, got {type(value).__name__}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{what}: must be true or false, got {value!r:.40}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{what}: must be an integer, got {value!r:.40}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{what}: must be a number, got {value!r:.40}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{what}: must be a string, got {value!r:.40}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return typed_from_dict(tp, value, what)
    raise InputError(f"{what}: must be a {_type_name(tp)}, got {type(value).__name__}")


def typed_from_dict(cls, d, what: str):
    """``cls(**d)`` for a dataclass, every value checked against its field's type."""
    if not isinstance(d, dict):
        raise InputError(f"{what}: must be a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(shown(k) for k in d if k not in fields)
    if unknown:
        raise InputError(f"{what}: unknown keys {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    missing = [name for name, f in fields.items() if name not in d
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InputError(f"{what}: missing {', '.join(missing)}")
    values = {k: check_value(v, hints[k], f"{what}: {k}") for k, v in d.items()}
    return cls(**values)
