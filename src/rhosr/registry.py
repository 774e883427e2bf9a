"""Registries of named model parts (inputs, trunks, bases): a new part is one class and one
``@register`` line, and a model description names it."""

from __future__ import annotations

from rhosr.errors import InputError


class Registry(dict):
    """``{name: class}`` of one kind of model part (``kind``: "input", "trunk", "base")."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        """Class decorator: make a class available under ``name`` (and set its ``name``)."""
        def add(cls):
            cls.name = name
            self[name] = cls
            return cls
        return add

    def get_class(self, name: str) -> type:
        """The class registered as ``name``, or a one-line InputError listing the choices."""
        try:
            return self[name]
        except (KeyError, TypeError):
            raise InputError(f"model config: unknown {self.kind} {name!r}; "
                             f"choose from {', '.join(self)}") from None
