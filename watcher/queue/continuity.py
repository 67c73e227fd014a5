"""What this host keeps of one app's queue, so that a Redis that forgot it (restarted without
persistence, failed over to an empty replica, flushed) is noticed, said and refilled.

The marker: a random epoch in Redis (`watcher:<app>:epoch`) that this host also keeps in
`<state dir>/redis.json`, beside state.json. Every queue.lua write carries the epoch this process
knows and Redis refuses it (FORGOTTEN) when its own differs; an idle worker looks at it every
poll, `status` and `/metrics` at every read. Whoever first finds it gone, under the file's flock
(`redis.json.lock`), sets a new epoch, raises the id counter above every id this host may have
handed out, puts back the pause, the waiting job and the job awaiting promotion this host kept
a copy of, and records the loss in the file: the log, `status`, `/metrics` and a notification
say it from there. The job awaiting promotion comes back only while the engine's state (the
truth about the waiting colour) still holds its wait: else `promote` and `abort` would answer
"nothing awaits" beside a colour that waits, and its expiry, which reads the queue, never come.

Job ids are reserved on the host before Redis hands them out: queue.lua refuses (RESERVE) an id
above the file's `ids`, which is then raised by IDS_BLOCK. So a counter that restarts from zero
starts above every id ever given, even one whose job the loss took with it.

The file (JSON): epoch, ids, pause (the pause in force, or null), waiting (the hash of the job
that waits, or null), taken (the highest id a worker of this host took: a copy not above it was
taken, never restored), awaited (the hash of the job awaiting promotion, or null), losses (how
many), lost (the last loss: `Loss`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from watcher.atomic import write_atomic
from watcher.engine.state import StateStore, holds_wait
from watcher.errors import StateUnwritable, WatcherError, unwritable
from watcher.flock import lock_exclusive
from watcher.freeze import moment
from watcher.queue.connection import AppKeys
from watcher.queue.scripts import script

log = logging.getLogger("watcher.redis")

#: Job ids reserved on the host at a time: at most this many are skipped after a loss.
IDS_BLOCK = 100
#: How long `status` shows the last loss as a warning.
SHOWN_FOR = 86400.0


@dataclass(frozen=True)
class Loss:
    """Redis forgot the app's queue: when it was noticed, by whom, and what came back."""

    at: float
    noticed_by: str
    epoch: str  # the marker Redis no longer held
    ids_above: int  # job ids go on above this
    pause: bool = False  # the pause was put back
    job: str | None = None  # the waiting job put back
    awaited: str | None = None  # the job awaiting promotion put back
    not_awaited: str | None = None  # why a job kept as awaiting promotion did not come back
    other: bool = False  # Redis held another marker (another watcher's data, or another Redis)
    interrupted: list[str] = field(default_factory=list)  # what became of the jobs that ran then

    def describe(self, app: str) -> str:
        what = (
            "Redis holds another watcher's marker (a different Redis, or data not written by this host)"
            if self.other
            else "a Redis restarted without persistence, failed over to an empty replica, or flushed"
        )
        parts = [
            f"Redis lost the queue of {app} ({what}; noticed by {self.noticed_by} at {moment(self.at)})",
            f"job ids go on above {self.ids_above}",
            "the pause was put back from this host" if self.pause else "",
            f"waiting job {self.job} was put back from this host" if self.job else "",
            f"job {self.awaited} awaiting promotion was put back from this host" if self.awaited else "",
            self.not_awaited or "",
            *self.interrupted,
            "the job history before it is gone from Redis",
        ]
        return "; ".join(part for part in parts if part)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Loss:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


class Continuity:
    """One app's marker, id reservation and host copies. A file it cannot write is StateUnwritable."""

    def __init__(
        self,
        client: redis.Redis,
        app: str,
        state_dir: Path,
        *,
        prefix: str = "",
        who: str | None = None,
        on_loss: Callable[[Loss], None] | None = None,
    ) -> None:
        self.client = client
        self.app = app
        self.path = state_dir / "redis.json"
        self.state = StateStore(state_dir, None)  # read only: whether a kept awaited job still waits
        self.keys = AppKeys(app, prefix)
        self.who = who or f"{socket.gethostname()}:{os.getpid()}"
        self.on_loss = on_loss
        self._epoch = ""  # the marker this process knows ('' until the first look)
        self._ids = 0

    # -- the marker ---------------------------------------------------------------------------

    @property
    def epoch(self) -> str:
        if not self._epoch:
            self.recover()
        return self._epoch

    @property
    def ids(self) -> int:
        """Job ids up to this one are reserved on the host (queue.lua hands out none above)."""
        self.epoch  # noqa: B018 - the first look reads the file
        return self._ids

    def check(self) -> Loss | None:
        """One GET: a loss noticed now (and dealt with), or None. For readers (status, /metrics,
        an idle worker): a state directory this process cannot write is logged, not raised; the
        next queue write meets it (FORGOTTEN) and fails naming it."""
        if self._epoch and self.client.get(self.keys.epoch) == self._epoch:
            return None
        try:
            return self.recover()
        except StateUnwritable as exc:
            log.warning("redis: cannot look for a lost queue of %s: %s", self.app, exc)
            return None

    def recover(self) -> Loss | None:
        """Make Redis and this host agree on the epoch; the loss when Redis forgot (recorded,
        logged and told here, once per loss whichever process notices it first)."""
        with self._file() as kept:
            known = kept.get("epoch", "")
            pause = kept.get("pause")
            job = kept.get("waiting")
            if job is not None and int(job["id"]) <= int(kept.get("taken", 0)):
                job = None  # a worker took it: never run twice
            awaited, not_awaited = self._awaited(kept)
            outcome, epoch, pause_back, job_back, awaited_back = self._script(
                "ensure",
                known,
                secrets.token_hex(8),
                int(kept.get("ids", 0)),
                json.dumps({k: v for k, v in pause.items() if k != "until_ms"}) if _lasting(pause) else "",
                str(pause["until_ms"]) if _lasting(pause) and pause.get("until_ms") else "",
                self.keys.jobs,
                json.dumps(job) if job else "",
                json.dumps(awaited) if awaited else "",
            )
            kept["epoch"] = epoch
            loss = None
            if outcome == "lost" or (outcome == "other" and known):
                loss = Loss(
                    time.time(),
                    self.who,
                    known,
                    int(kept.get("ids", 0)),
                    pause=pause_back == "1",
                    job=job_back or None,
                    awaited=awaited_back or None,
                    not_awaited=not_awaited if outcome == "lost" else None,
                    other=outcome == "other",
                )
                kept["losses"] = int(kept.get("losses", 0)) + 1
                kept["lost"] = asdict(loss)
            self._epoch, self._ids = epoch, int(kept.get("ids", 0))
        if loss is not None:
            log.error("redis: %s", loss.describe(self.app))
            if self.on_loss is not None:
                self.on_loss(loss)
        return loss

    def _awaited(self, kept: dict[str, Any]) -> tuple[dict[str, str] | None, str | None]:
        """The kept job awaiting promotion, if the engine's state still holds its wait (else the
        copy goes: that wait ended); or None and why it cannot come back."""
        job = kept.get("awaited")
        if job is None:
            return None, None
        try:
            pending = self.state.load().pending
        except WatcherError as exc:
            return None, f"job {job['id']} awaiting promotion was not put back: {exc}"
        if holds_wait(pending, job["version"], job.get("until")):
            return job, None
        kept["awaited"] = None
        return None, (
            f"job {job['id']} awaited promotion, but this host's state holds its wait no more: "
            "not put back, nothing awaits promotion"
        )

    def reserve(self, wanted: int) -> None:
        """Queue.lua refused id `wanted` (RESERVE): reserve a block above it on the host first."""
        with self._file() as kept:
            kept["ids"] = max(int(kept.get("ids", 0)), wanted - 1 + IDS_BLOCK)
            self._ids = kept["ids"]

    # -- what the host keeps ------------------------------------------------------------------

    def keep_pause(self, info: dict[str, Any] | None, until: float | None = None) -> None:
        """The pause in force (None: resumed), as Suspension wrote it."""
        with self._file() as kept:
            kept["pause"] = (
                None if info is None else {**info, "until_ms": int(until * 1000) if until else None}
            )

    def keep_waiting(self, job: dict[str, str]) -> None:
        """A job now waits (its hash): the newest one is the one that waits (queue.lua coalesces)."""
        with self._file() as kept:
            if kept.get("waiting") is None or int(kept["waiting"]["id"]) < int(job["id"]):
                kept["waiting"] = job

    def forget_waiting(self, job_id: str) -> None:
        """Job `job_id` waits no more (cancelled)."""
        with self._file() as kept:
            if kept.get("waiting") and kept["waiting"]["id"] == job_id:
                kept["waiting"] = None

    def taken(self, job_id: str) -> None:
        """A worker took job `job_id`: its copy (and any older one) is never put back."""
        with self._file() as kept:
            kept["taken"] = max(int(kept.get("taken", 0)), int(job_id))
            if kept.get("waiting") and int(kept["waiting"]["id"]) <= kept["taken"]:
                kept["waiting"] = None

    def keep_awaited(self, job: dict[str, str]) -> None:
        """Job `job` (its hash) was marked as the app's job awaiting promotion (one at a time)."""
        with self._file() as kept:
            kept["awaited"] = job

    def forget_awaited(self, job_id: str) -> None:
        """Job `job_id`'s wait for promotion was settled (promoted, aborted, expired, superseded)."""
        with self._file() as kept:
            if kept.get("awaited") and kept["awaited"]["id"] == job_id:
                kept["awaited"] = None

    def interrupted(self, epoch: str, what: str) -> None:
        """Add what became of a job that ran when Redis forgot epoch `epoch` to that loss."""
        with self._file() as kept:
            lost = kept.get("lost")
            if lost and lost.get("epoch") == epoch:
                loss = Loss.from_dict(lost)
                kept["lost"] = asdict(replace(loss, interrupted=[*loss.interrupted, what]))
        log.error("redis: %s", what)

    def last_loss(self) -> tuple[int, Loss | None]:
        """How many losses this host noticed, and the last one (read only)."""
        kept = self._read()
        return int(kept.get("losses", 0)), Loss.from_dict(kept["lost"]) if kept.get("lost") else None

    # -- the file -----------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.error("redis: %s is not JSON; starting it afresh", self.path)
            return {}
        return data if isinstance(data, dict) else {}

    @contextmanager
    def _file(self) -> Iterator[dict[str, Any]]:
        """The file's content, written back atomically when the block ends, under its flock."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise unwritable(self.path.parent, "the state directory", exc) from exc
        try:
            if not lock_exclusive(fd, 10.0):
                raise WatcherError(f"{self.path} stayed locked for 10 s: is a watcher process stuck?")
            kept = self._read()
            before = dict(kept)
            yield kept
            if kept != before:
                try:
                    write_atomic(self.path, json.dumps(kept, indent=1, sort_keys=True) + "\n")
                except OSError as exc:
                    raise unwritable(self.path.parent, "the state directory", exc) from exc
        finally:
            os.close(fd)

    def _script(self, op: str, *args: object) -> Any:
        k = self.keys
        return script(self.client, "epoch")(
            keys=(k.epoch, k.seq, k.paused, k.waiting, k.wake, k.awaiting), args=(op, *args)
        )


def _lasting(pause: dict[str, Any] | None) -> bool:
    """A kept pause still in force (a timed one not past its end)."""
    return bool(pause) and not (pause.get("until_ms") and pause["until_ms"] <= time.time() * 1000)
