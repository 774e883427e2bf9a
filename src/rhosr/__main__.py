"""``python -m rhosr``: the same as the ``rhosr`` console script."""

import sys

from rhosr.cli import main

sys.exit(main())
