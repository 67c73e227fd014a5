"""Waiting for an exclusive flock(2) up to a deadline. The kernel drops such a lock when its
holder exits in any way (kill -9 included), so it can never go stale."""

from __future__ import annotations

import fcntl
import time


def lock_exclusive(fd: int, wait: float, poll: float = 0.05) -> bool:
    """True once `fd` is locked; False if another holder kept it for `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
