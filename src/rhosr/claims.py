"""Claims: which process is labelling which molecule, safe across the hosts of a Dask cluster.

A claim is a small JSON file (``STORE/claims/ID.json``) created with ``O_CREAT | O_EXCL``, the
one file operation that is atomic on local filesystems and on NFS v3+ alike, so of two
processes that try to claim the same molecule exactly one succeeds. It holds the claimer's
host name, PID, a random token and the time.

While the claim is held a daemon thread touches the file every :data:`HEARTBEAT_S` seconds.
A claim is *stale*, and the next claimer clears it, when

- its host is this host and its PID no longer runs (a killed run, a crashed worker), or
- its file was not touched for :data:`STALE_S` seconds (a dead process on another host, whose
  PID this host cannot test; or a PID reused on this host). The age is measured against the
  file's modification time, which a shared filesystem sets from its server's clock; hosts
  whose clocks differ by minutes from it make this rule late or early by as much.

Clearing is a rename of the stale file to a unique name (only one clearer can win it), then a
check that the renamed file is the stale claim that was judged (same token); if a fresh claim
was taken in between it is put back with ``os.link``, which never overwrites.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from rhosr.errors import RhosrError

HEARTBEAT_S = 30.0
"""Seconds between touches of a held claim file."""

STALE_S = 300.0
"""A claim file untouched this long is stale whatever its host (ten missed heartbeats)."""


class ClaimedElsewhere(RhosrError):
    """Another live process holds the claim; the message says which."""


class Claim:
    """A held claim; a context manager that releases it (only if it is still ours)."""

    def __init__(self, path: Path, token: str):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"claim-{path.stem}")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        content = read_claim(self.path)
        if content is not None and content.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def claim(folder: Path, name: str) -> Claim:
    """Claim ``name`` in ``folder`` for this process, clearing a stale claim first.

    Raises :class:`ClaimedElsewhere` when a live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    for _ in range(3):  # a stale claim cleared, then a race lost: give up after a few rounds
        token = uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            content = read_claim(path)
            why = stale_reason(path, content)
            if why is None:
                raise ClaimedElsewhere(f"claimed by {describe(content)}") from None
            clear_stale(path, content)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "token": token,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, fh)
        return Claim(path, token)
    raise ClaimedElsewhere(f"claimed by {describe(read_claim(path))}")


def read_claim(path: Path) -> dict | None:
    """A claim file's content; ``{}`` while it is being written; None when there is none."""
    try:
        return json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def stale_reason(path: Path, content: dict | None, now: float | None = None) -> str | None:
    """Why the claim in ``path`` is stale, or None while its holder may be alive."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return "gone"
    if age > STALE_S:
        return f"not touched for {age:.0f} s"
    pid = (content or {}).get("pid")
    if isinstance(pid, int) and content.get("host") == socket.gethostname() and not pid_alive(pid):
        return f"PID {pid} no longer runs"
    return None


def clear_stale(path: Path, content: dict | None) -> None:
    """Remove the stale claim ``content`` at ``path``; leave a fresh one that replaced it."""
    aside = path.with_name(f"{path.name}.stale.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another process cleared it
    moved = read_claim(aside)
    if (moved or {}).get("token") != (content or {}).get("token"):
        try:  # a fresh claim was taken between our look and the rename: put it back
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def live_claims(folder: Path) -> dict[str, dict]:
    """Claims in ``folder`` whose holders may be alive: name -> content."""
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        content = read_claim(path)
        if content is not None and stale_reason(path, content) is None:
            out[path.stem] = content
    return out


def describe(content: dict | None) -> str:
    if not content:
        return "another process"
    return f"{content.get('host')} PID {content.get('pid')} since {content.get('time')}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
