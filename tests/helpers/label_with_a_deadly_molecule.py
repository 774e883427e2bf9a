"""Label a folder of molecules on a one-worker LocalCluster where one molecule kills its worker.

Run as a script by ``tests/test_labelling.py``: ``python label_with_a_deadly_molecule.py
SOURCE STORE DEADLY_ID``; prints the summary as JSON. The Dask client lives in this plain
Python process, as it does under ``rhosr label``, not in pytest's; the deadly task is defined
here, in ``__main__``, so it travels to the worker by value and the worker never imports the
test module (under pytest, workers running a task from a test module died with SIGSEGV on
CI's machine, 3 times in a row, while the same molecules under ``rhosr label`` never did).
"""

import json
import os
import sys


def die_on_deadly(item, settings):
    """A labelling task whose process dies on one molecule, as the OOM killer would do it."""
    from rhosr.labelling import label_item

    if item.id == os.environ["RHOSR_TEST_DEADLY_ID"]:
        os._exit(1)
    return label_item(item, settings)


def main(source: str, store_path: str, deadly_id: str) -> None:
    import dask

    from rhosr.config import get_preset
    from rhosr.labelling import LabelSettings, run_labelling
    from rhosr.sources import read_source
    from rhosr.store import DatasetStore

    os.environ["RHOSR_TEST_DEADLY_ID"] = deadly_id  # inherited by the worker processes
    store = DatasetStore.create(store_path, get_preset("tiny").to_dict())
    items = read_source(source, "train")
    settings = LabelSettings(str(store.path), get_preset("tiny"))
    # Two retries, so the deadly molecule dies three times before Dask gives it up.
    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        summary = run_labelling(items, settings, workers=1, task=die_on_deadly)
    print(json.dumps({"done": summary.done, "failed": summary.failed}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
