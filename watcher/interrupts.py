"""SIGINT/SIGTERM become an `Interrupted` exception, so every phase unwinds through its
cleanup; `shielded()` defers them while cleanup itself runs, so a second Ctrl-C cannot leave
a half-switched deployment.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from watcher.errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_shield_depth = 0
_deferred: list[int] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    if _shield_depth:
        _deferred.append(signum)
        return
    raise Interrupted(signum)


def install() -> None:
    """Route SIGINT and SIGTERM through `Interrupted` (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            signal.signal(signum, _handler)


@contextmanager
def shielded() -> Iterator[None]:
    """Hold signals until the block ends, then raise the first one that arrived."""
    global _shield_depth
    _shield_depth += 1
    try:
        yield
    finally:
        _shield_depth -= 1
        if not _shield_depth and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            raise Interrupted(signum)
