"""Labelling a dataset: DFT jobs on Dask workers writing entries into a store.

Each task labels one molecule end to end (validation, SCF, label density, SAD input) and
writes its entry itself, so the client only schedules and counts. Entries already complete
are skipped, failures are recorded with their reason, and a killed run started again picks
up where it stopped (writes are atomic: see ``rhosr.store``).

Runs side by side: a task first claims its molecule in the store (``rhosr.claims``: an
exclusively created file with the worker's host and PID), then looks again whether the entry
is whole. So two runs on one store (two ``rhosr label`` commands, or the workers of two Dask
clusters) compute each molecule once: the second finds it claimed or written and skips it.
A damaged entry (``rhosr.integrity``) counts as not labelled: the task that claims it moves
it to ``quarantine/`` and labels the molecule again. "done" counts only entries this run wrote.

Threads: each worker runs PySCF with ``threads_per_worker`` OpenMP threads, by default
``cores // workers`` (at least 1), so W workers never oversubscribe the machine.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from rhosr.config import DFTPreset
from rhosr.errors import InputError
from rhosr.grid import BOHR_ANGSTROM
from rhosr.sources import SourceItem
from rhosr.store import DatasetStore, Entry, package_versions


@dataclass
class LabelSettings:
    """What every task needs besides its molecule (picklable, sent to workers)."""

    store_path: str
    preset: DFTPreset
    upscale: int = 2
    margin_angstrom: float = 4.0
    atrocious: bool = False
    threads: int = 1


@dataclass
class LabelSummary:
    """Counts of one run: ``done`` entries written, ``failed`` molecules (with ``reasons``),
    ``skipped`` molecules another run claimed or wrote meanwhile."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)

    @property
    def per_hour(self) -> float:
        """Entries written per hour of this run."""
        return 3600.0 * self.done / self.seconds if self.seconds > 0 else 0.0


def set_threads(n: int) -> None:
    """OpenMP/BLAS threads of this process (PySCF reads OMP; numpy's BLAS via threadpoolctl)."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    from pyscf import lib

    lib.num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def label_item(item: SourceItem, settings: LabelSettings) -> dict:
    """Claim one molecule, label it and write its entry. Never raises: failures are recorded.

    Returns ``{"id", "ok", "status", "seconds"}`` (and ``"reason"`` unless done): status
    ``done`` (this call wrote the entry), ``failed`` (recorded in the store) or ``skipped``
    (another process holds the claim or wrote a whole entry first; ``ok`` stays True)."""
    set_threads(settings.threads)
    store = DatasetStore.open(settings.store_path)
    t0 = time.perf_counter()
    return run_claimed(store, item, "rhosr label", lambda: _label_claimed(item, settings, store, t0))


def run_claimed(store: DatasetStore, item, by: str, write: Callable[[], dict]) -> dict:
    """Run ``write`` (which makes and writes ``item``'s entry) while this process holds the claim
    on ``item.id``. Skipped when another process holds the claim or a whole entry is already
    there; a damaged entry is first moved to ``quarantine/`` (``by`` says who moved it). Never
    raises: a failure to claim or to move is recorded like a failed molecule. ``item`` has
    ``id``, ``source`` and ``split``."""
    from rhosr.claims import ClaimedElsewhere

    t0 = time.perf_counter()
    try:
        with store.claim(item.id):
            if store.entry_dir(item.id).exists():
                problem = store.check(item.id)
                if problem is None:
                    return _skipped(item, "already in the store (written by another run)", t0)
                store.quarantine(item.id, problem, by=by)
            return write()
    except ClaimedElsewhere as exc:
        return _skipped(item, str(exc), t0)
    except Exception as exc:  # claiming or moving a damaged entry aside failed: report, not die
        return _failed(store, item, exc, t0)


def _failed(store: DatasetStore, item: SourceItem, exc: Exception, t0: float) -> dict:
    """Record why ``item`` failed in the store; the result of :func:`label_item`."""
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    store.record_failure(item.id, reason, source=item.source, split=item.split)
    return {"id": item.id, "ok": False, "status": "failed", "seconds": time.perf_counter() - t0,
            "reason": reason}


def _skipped(item: SourceItem, reason: str, t0: float) -> dict:
    return {"id": item.id, "ok": True, "status": "skipped", "reason": reason,
            "seconds": time.perf_counter() - t0}


def _label_claimed(item: SourceItem, settings: LabelSettings, store: DatasetStore, t0: float) -> dict:
    """Label a molecule this process has claimed and write its entry (see :func:`label_item`)."""
    from ase import Atoms

    from rhosr.dft import run_label
    from rhosr.inputs import get_input
    from rhosr.molecule import Molecule, validate

    try:
        if item.problem:
            raise InputError(item.problem)
        mol = validate(Molecule(Atoms(item.symbols, item.positions_angstrom), item.charge, item.spin,
                                name=item.id))
        label = run_label(mol, settings.preset, settings.upscale, settings.margin_angstrom)
        t_sad = time.perf_counter()
        sad = get_input("sad")().build(label.mol, label.grid, "coarse")[0]  # the model's own builder
        sad_seconds = time.perf_counter() - t_sad
        atrocious = None
        if settings.atrocious:
            atrocious = get_input("sad_atrocious")().build(label.mol, label.grid, "coarse")[0]
        meta = {
            "id": item.id, "split": item.split, "source": item.source, "symbols": list(item.symbols),
            "positions_bohr": (label.mol.positions_angstrom / BOHR_ANGSTROM).tolist(),
            "charge": item.charge, "spin": item.spin, "n_electrons": mol.n_valence,
            "grid": label.grid.to_dict(), "basis": settings.preset.basis, "energy": label.energy,
            "homo": label.homo, "lumo": label.lumo, "scf_cycles": label.cycles,
            "scf_seconds": label.scf_seconds, "density_seconds": label.density_seconds,
            "sad_seconds": sad_seconds, "preset": settings.preset.to_dict(),
            "versions": package_versions(), "attempts": label.attempts,
        }
        if not store.write_entry(Entry(meta, sad=sad, label=label.rho, dm=label.dm, sad_atrocious=atrocious)):
            return _skipped(item, "another writer wrote it first (a run without claims?)", t0)
        return {"id": item.id, "ok": True, "status": "done", "seconds": time.perf_counter() - t0}
    except Exception as exc:  # a worker must report, not die: the reason goes to the store
        return _failed(store, item, exc, t0)


def pending(items: list[SourceItem], store: DatasetStore, retry_failed: bool = False) -> list[SourceItem]:
    """Items without a whole entry (and, unless ``retry_failed``, without a failure).

    A damaged entry (quick check of ``rhosr.integrity``: metadata, shapes, chunk files) is
    pending: :func:`label_item` moves it to ``quarantine/`` and labels the molecule again."""
    failed = set() if retry_failed else set(store.failures())
    return [it for it in items if it.id not in failed
            and (not store.entry_dir(it.id).exists() or store.check(it.id) is not None)]


def damaged_among(items: list[SourceItem], store: DatasetStore) -> dict[str, str]:
    """``{id: reason}`` of the items whose entry exists but is damaged (they will be relabelled)."""
    return {it.id: reason for it in items if store.entry_dir(it.id).exists()
            and (reason := store.check(it.id)) is not None}


def run_labelling(
    items: list[SourceItem],
    settings: LabelSettings,
    workers: int = 1,
    scheduler: str | None = None,
    on_result: Callable[[dict], None] | None = None,
    task: Callable[[SourceItem, LabelSettings], dict] = label_item,
) -> LabelSummary:
    """Label ``items`` (already filtered by :func:`pending`).

    ``workers=0`` runs in this process without Dask; otherwise a ``LocalCluster`` with
    ``workers`` single-threaded worker processes, or the Dask scheduler at ``scheduler``.
    One task per worker thread is in flight: a worker holds only the molecule it runs, so
    when one molecule kills its worker process no innocent queued molecule dies with it (Dask
    marks every task on a dead worker as suspect), and an interrupted run wastes little. The
    next task is submitted as soon as one finishes; a DFT label takes seconds to minutes, the
    round trip milliseconds.
    ``task`` labels one item (``label_item``; tests pass others).
    """
    summary = LabelSummary()
    t0 = time.perf_counter()

    def record(result: dict) -> None:
        if result.get("status") == "skipped":
            summary.skipped += 1
        elif result["ok"]:
            summary.done += 1
        else:
            summary.failed += 1
            summary.reasons[result["reason"].split(":")[0]] += 1
        summary.seconds = time.perf_counter() - t0
        if on_result is not None:
            on_result(result)

    if workers == 0 and scheduler is None:
        for item in items:
            record(task(item, settings))
        return summary
    with _DaskClient(workers, scheduler, settings.threads) as client:
        from dask.distributed import as_completed

        n_slots = _worker_threads(client)
        queue = iter(items)
        futures = as_completed()
        submitted: dict[str, SourceItem] = {}

        def submit(item: SourceItem) -> None:
            key = f"label-{item.id}"
            submitted[key] = item
            futures.add(client.submit(task, item, settings, key=key, pure=False))

        for item in _take(queue, n_slots):
            submit(item)
        for future in futures:
            try:
                result = future.result()
            except Exception as exc:  # the worker process itself died (KilledWorker): record, go on
                result = _worker_died(submitted[future.key], settings, exc)
            record(result)
            for item in _take(queue, 1):
                submit(item)
    summary.seconds = time.perf_counter() - t0
    return summary


def _worker_threads(client) -> int:
    """Threads over all workers the scheduler knows (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def _worker_died(item: SourceItem, settings: LabelSettings, exc: BaseException) -> dict:
    """Record a molecule whose worker process died (Dask gave up after its retries) as failed.

    ``label_item`` catches Python errors itself; this is for what kills the process (the OS's
    out-of-memory killer, a crash in a native library). The run goes on with the next molecule;
    ``rhosr label --retry-failed`` tries it again later.
    """
    reason = f"{type(exc).__name__}: the worker process died (out of memory or a native crash)"
    DatasetStore.open(settings.store_path).record_failure(item.id, reason, source=item.source,
                                                          split=item.split)
    return {"id": item.id, "ok": False, "status": "failed", "seconds": 0.0, "reason": reason}


def _take(iterator, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(iterator))
        except StopIteration:
            break
    return out


class _DaskClient:
    """A Dask client on a new LocalCluster (closed on exit) or an existing scheduler."""

    def __init__(self, workers: int, scheduler: str | None, threads: int):
        self.workers, self.scheduler, self.threads = workers, scheduler, threads
        self.cluster = self.client = None

    def __enter__(self):
        import logging

        from dask.distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout="30s")
            except (OSError, TimeoutError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise InputError(f"--scheduler {self.scheduler}: cannot connect ({reason})") from None
            return self.client
        os.environ["OMP_NUM_THREADS"] = str(self.threads)  # inherited by worker processes
        # ":0": the scheduler's HTTP server (it starts one even without a dashboard) takes a free
        # port, so two labelling runs on one machine do not fight over Dask's default 8787.
        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", silence_logs=logging.ERROR)
        self.client = Client(self.cluster)
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False
