"""Subcommands of the ``rhosr`` console script: each module has ``add_arguments`` and ``run``."""
