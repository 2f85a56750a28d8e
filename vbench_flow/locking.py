"""One process per run: an exclusive OS lock on ``<run folder>/.lock`` for as long as a process
works on the run.

The lock is ``flock`` on an open file, so the operating system drops it when the process ends in
any way (exit, crash, SIGKILL): a run whose lock nobody holds is not running, whatever its stored
status says. The file keeps the holder's pid, host and start time for the error a second process
gets; it is never deleted, since deleting a lock file lets two processes lock two different files.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; runs there are not guarded
    fcntl = None

from vbench_flow.errors import ConfigError

LOCK_NAME = ".lock"


class RunLock:
    """Held from :meth:`acquire` to :meth:`release` (or the end of the process)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, patience_seconds: float = 1.0) -> "RunLock":
        """Lock, or ConfigError naming the holder; ``patience_seconds`` rides out the moment another
        process (``vbf runs ls``) takes a shared lock to see whether the run is alive."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + patience_seconds
        while not _try_lock(fd):
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(f"run {self.run_dir.name!r} is in use by {describe_holder(holder)}",
                              where=str(self.run_dir),
                              fix="wait for that process to finish or stop it (Ctrl-C keeps its finished units), "
                                  "then --resume; or start a new run without --run-id")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # nobody holds it now: a stale pid must never be named
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds the run's lock now (pid, host, started), or None when no process does."""
    path = run_dir / LOCK_NAME
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _try_lock(fd, shared=True):  # a shared lock is refused only while someone holds the exclusive one
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)


def describe_holder(holder: dict[str, Any]) -> str:
    if "pid" not in holder:  # caught between its lock and its note
        return "another process (starting up)"
    return f"process {holder['pid']} on {holder.get('host', '?')} (since {holder.get('started', '?')})"


def _try_lock(fd: int, *, shared: bool = False) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
