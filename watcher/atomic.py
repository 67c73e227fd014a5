"""Atomic file replacement: a crash leaves either the old or the new content, never a mix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from watcher.errors import unwritable


def ensure_writable(directory: Path, what: str) -> None:
    """`directory` exists and takes a new file, checked before a deploy starts anything in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as exc:
        raise unwritable(directory, what, exc) from exc


def write_atomic(path: Path, data: str, mode: int = 0o644) -> None:
    """Write to a temp file in the same directory, fsync, rename over `path`, fsync the dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
