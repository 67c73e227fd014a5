"""How watcher's processes log: plain text by default (time, level, message, and the app, job
and phase a line is about), or one JSON object per line for log shippers (`--log-format json`
or WATCHER_LOG_FORMAT=json): {"time", "level", "logger", "message", "app", "job", "phase"}.

The app, job and phase come from context variables the worker sets while it runs a job, so
every line the engine logs under it says which deploy it belongs to without passing names
around. The format is also put in the environment, so a pool's child workers log alike.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("text", "json")
ENV = "WATCHER_LOG_FORMAT"

_app: ContextVar[str | None] = ContextVar("watcher_app", default=None)
_job: ContextVar[str | None] = ContextVar("watcher_job", default=None)
_phase: ContextVar[str | None] = ContextVar("watcher_phase", default=None)


def chosen(flag: str | None, env: Mapping[str, str]) -> str:
    """--log-format, else WATCHER_LOG_FORMAT, else text; anything else is refused by the caller."""
    return (flag or env.get(ENV) or "text").strip().lower()


def configure(log_format: str, *, daemon: bool) -> None:
    """Root logging to stderr. A one-shot command in text keeps its terse `watcher: ...` lines
    (they are messages to the person who typed it); daemons get time and level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_with_context)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif daemon:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(where)s%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("watcher: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    os.environ[ENV] = log_format


def _with_context(record: logging.LogRecord) -> bool:
    """Stamp the record with the job it is about (the text format shows `[app job 17 switch] `)."""
    record.app, record.job, record.phase = _app.get(), _job.get(), _phase.get()
    parts = [p for p in (record.app, f"job {record.job}" if record.job else None, record.phase) if p]
    record.where = f"[{' '.join(parts)}] " if parts else ""
    return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "app": getattr(record, "app", None),
            "job": getattr(record, "job", None),
            "phase": getattr(record, "phase", None),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


@contextmanager
def job_context(app: str, job: str) -> Iterator[None]:
    """While a worker runs job `job` of `app`: every line logged in this thread names it."""
    tokens = (_app.set(app), _job.set(job), _phase.set(None))
    try:
        yield
    finally:
        _phase.reset(tokens[2])
        _job.reset(tokens[1])
        _app.reset(tokens[0])


def enter_phase(phase: str) -> None:
    _phase.set(phase)


class _LineLog(io.TextIOBase):
    """A text stream whose lines become INFO records (the engine's progress, in JSON mode)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self.logger.info("%s", line)
        return len(text)


def progress_stream() -> TextIO:
    """Where the engine's progress lines go: stderr as they are, or, in JSON mode, as records."""
    if os.environ.get(ENV) == "json":
        return _LineLog(logging.getLogger("watcher.engine"))  # type: ignore[return-value]
    return sys.stderr
