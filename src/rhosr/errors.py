"""Errors that reach the user as one line and a non-zero exit code."""


class RhosrError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with ``exit_code``."""

    exit_code = 1


class InputError(RhosrError):
    """Bad user input (structure, option, file): exit code 2."""

    exit_code = 2


class RhosrWarning(UserWarning):
    """A caveat about a result (not an error): the CLI prints ``warning: <message>`` on one line."""


class SCFNotConvergedError(RhosrError):
    """The DFT calculation did not converge after every retry: exit code 3."""

    exit_code = 3
