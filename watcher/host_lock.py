"""A lock on this host, so deploy, rollback, cleanup and reset never run at the same time.

flock(2) on a file in the state directory: the kernel releases it when the holder exits in
any way (kill -9 included), so it can never go stale. The file names the holder for `status`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from watcher.engine.state import now_iso
from watcher.errors import LockBusy, WatcherError, unwritable
from watcher.flock import lock_exclusive


class HostLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, purpose: str, wait: float = 0.0) -> HostLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise unwritable(self.path.parent, "the state directory", exc) from exc
        if not lock_exclusive(fd, wait, poll=0.2):
            os.close(fd)
            holder = self.holder()
            who = _describe(holder) if holder else "another watcher process"
            raise LockBusy(
                f"{who} holds the deploy lock ({self.path}); wait for it to finish or use --wait-lock SECONDS"
            )
        os.ftruncate(fd, 0)
        # The holder's name is for `status` only: a full disk refusing these bytes changes nothing
        # else (the flock is the lock).
        with contextlib.suppress(OSError):
            os.write(
                fd,
                json.dumps(
                    {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose, "since": now_iso()}
                ).encode(),
            )
        self._fd = fd
        return self

    def check(self) -> None:
        """The guard the engine calls before switching: a held flock cannot be lost."""
        if self._fd is None:
            raise LockBusy("the deploy lock is not held")

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now, or None when it is free."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise WatcherError(f"cannot read the deploy lock {self.path} ({exc.strerror or exc})") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            except BlockingIOError:
                pass
            try:
                return json.loads(os.read(fd, 4096) or b"{}") or {"pid": "?"}
            except ValueError:
                return {"pid": "?"}
        finally:
            os.close(fd)

    def __enter__(self) -> HostLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"{holder.get('purpose', 'a command')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
    )
