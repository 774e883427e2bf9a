"""Run ``rhosr label ARGS...`` holding the store's creation until N processes reach it.

Run as a script by ``tests/test_store_integrity.py``: ``python label_together.py BARRIER_DIR N
ARGS...``. The first time this process writes a new Zarr group (the store's root), it leaves
a file in BARRIER_DIR and waits until N processes have, so that two ``rhosr label`` runs meet
at the very moment a store is created, every time, and then label side by side.
"""

import os
import sys
import time
from pathlib import Path


def hold_first_group_creation(barrier: Path, n: int) -> None:
    import zarr

    original = zarr.open_group
    waiting = [True]

    def open_group(store, *args, **kwargs):
        if waiting[0] and kwargs.get("mode") == "w":
            waiting[0] = False
            (barrier / str(os.getpid())).touch()
            deadline = time.time() + 120
            while len(os.listdir(barrier)) < n and time.time() < deadline:
                time.sleep(0.01)
        return original(store, *args, **kwargs)

    zarr.open_group = open_group


if __name__ == "__main__":
    hold_first_group_creation(Path(sys.argv[1]), int(sys.argv[2]))
    from rhosr.cli import main

    sys.exit(main(sys.argv[3:]))
