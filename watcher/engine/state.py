"""The recorded deployment state: which colour and version are live, which came before,
and which deploy is in flight (a write-ahead note, so a crash can be explained afterwards).

Written atomically; `.deployment-color` is kept current for users of the old deploy script.
Writers hold `state.lock` (flock) across their guard check and the write: see `Deployment.fenced`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.atomic import write_atomic
from watcher.errors import WatcherError, unwritable
from watcher.flock import lock_exclusive
from watcher.platforms.color import Color


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


#: How a release came to be live (`Release.how`): every way but UNVERIFIED passed verification.
VERIFIED = "verified"  # a deploy, switched to and verified
PROMOTED = "promoted"  # a manual deploy's waiting colour, promoted and verified
ROLLED_BACK = "rolled back to"  # a rollback, verified
UNVERIFIED = "left serving unverified"  # its verification failed or never ended, the old colour was down


@dataclass(frozen=True)
class Release:
    """A version running as one colour: its tag, and the image it ran (a tag can move, so a
    same-tag redeploy and a rollback to an earlier digest compare these, not the tag)."""

    color: Color
    version: str
    since: str = field(default_factory=now_iso)
    digest: str | None = None  # the registry's manifest digest of the tag when it was pulled
    image: str | None = None  # the local image ID the colour's app containers ran
    how: str | None = None  # how it came to be live (VERIFIED...); None: not recorded (older state)

    @property
    def unverified(self) -> bool:
        """It never passed verification: not a release to fall back to unawares."""
        return self.how == UNVERIFIED

    def same_as(self, other: Release | None) -> bool:
        """Same colour and version (and image, when both know it)."""
        return (
            other is not None
            and (self.color, self.version) == (other.color, other.version)
            and (self.image is None or other.image is None or self.image == other.image)
        )

    def to_dict(self) -> dict[str, str | None]:
        return {
            "color": self.color.value,
            "version": self.version,
            "since": self.since,
            "digest": self.digest,
            "image": self.image,
            "how": self.how,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Release | None:
        if not raw:
            return None
        color = Color.parse(raw.get("color"))
        if color is None or not raw.get("version"):
            return None
        return cls(
            color,
            str(raw["version"]),
            str(raw.get("since", "")),
            raw.get("digest") or None,
            raw.get("image") or None,
            str(raw["how"]) if raw.get("how") else None,
        )


@dataclass(frozen=True)
class Pending:
    """A deploy in flight: what it was doing, so a crash leaves a trail."""

    kind: str
    version: str
    color: Color
    phase: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started: str = field(default_factory=now_iso)
    until: str = ""  # awaiting promotion: when the wait expires (engine/promotion.py)
    digest: str | None = None  # awaiting promotion: what the waiting colour runs
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["color"] = self.color.value
        return data

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Pending | None:
        if not raw:
            return None
        color = Color.parse(raw.get("color"))
        if color is None:
            return None
        return cls(
            str(raw.get("kind", "deploy")),
            str(raw.get("version", "")),
            color,
            str(raw.get("phase", "")),
            int(raw.get("pid", 0)),
            str(raw.get("host", "")),
            str(raw.get("started", "")),
            str(raw.get("until", "")),
            raw.get("digest") or None,
            raw.get("image") or None,
        )


#: How many releases an operator rolled back from are remembered, newest first.
ROLLED_BACK_KEPT = 10


@dataclass(frozen=True)
class RolledBack:
    """A release an operator rolled back from. The triggers do not request it again until its tag
    names a new digest or an operator deploys it (`App.withheld`, watcher/host.py): a replayed
    webhook or the next poll must not undo the rollback."""

    version: str
    digest: str | None  # None: not known, so every digest of the version is held back
    at: str = field(default_factory=now_iso)

    def holds(self, version: str, digest: str | None) -> bool:
        return self.version == version and (self.digest is None or digest is None or self.digest == digest)

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> RolledBack | None:
        if not isinstance(raw, dict) or not raw.get("version"):
            return None
        return cls(str(raw["version"]), raw.get("digest") or None, str(raw.get("at", "")))


#: The pending note's phase while a deploy waits for `watcher promote` (engine/promotion.py).
AWAITING = "awaiting promotion"


def awaiting(pending: Pending | None) -> bool:
    return pending is not None and pending.phase == AWAITING


#: The pending note's kind while a promote runs: the awaiting note, taken on by the promote, so
#: that a successor finds it (engine/promotion.py) and an unwind can make it wait again.
PROMOTE = "promote"


def holds_wait(pending: Pending | None, version: str, until: str | None) -> bool:
    """The note is the wait for promotion of `version` until `until`: awaiting, or taken on by a
    promote of it (which, unwound, waits again)."""
    return (
        pending is not None
        and (awaiting(pending) or pending.kind == PROMOTE)
        and (pending.version, pending.until) == (version, until)
    )


def waiting_again(pending: Pending) -> Pending:
    """An unwound promote's note: its colour awaits promotion again, until the same moment."""
    return replace(pending, kind="deploy", phase=AWAITING)


@dataclass(frozen=True)
class DeployState:
    live: Release | None = None
    previous: Release | None = None
    pending: Pending | None = None
    updated: str = ""
    engine: str = ""  # the Docker engine ID the colours run on: one Docker host per app
    rolled_back: tuple[RolledBack, ...] = ()  # what operators rolled back from, newest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "live": self.live.to_dict() if self.live else None,
            "previous": self.previous.to_dict() if self.previous else None,
            "pending": self.pending.to_dict() if self.pending else None,
            "updated": self.updated,
            "engine": self.engine,
            "rolled_back": [entry.to_dict() for entry in self.rolled_back],
        }

    def withheld(self, version: str, digest: str | None) -> RolledBack | None:
        """The rollback that holds `version`@`digest` back from the triggers, if any."""
        return next((entry for entry in self.rolled_back if entry.holds(version, digest)), None)

    def going_live(self, release: Release, *, rolled_back_from: Release | None) -> tuple[RolledBack, ...]:
        """The rollback record once `release` goes live: what goes live is held back no more (an
        operator or a new digest put it there); the release a rollback leaves is (a tag's earlier
        digest, for the digest policy, leaves the later one held back)."""
        kept = tuple(entry for entry in self.rolled_back if not entry.holds(release.version, release.digest))
        left = rolled_back_from
        if left is not None and (left.version, left.digest) != (release.version, release.digest):
            entry = RolledBack(left.version, left.digest)
            kept = (entry, *(e for e in kept if (e.version, e.digest) != (entry.version, entry.digest)))
        return kept[:ROLLED_BACK_KEPT]


@dataclass(frozen=True)
class Prepared:
    """A state written whole beside state.json, not yet in force (`StateStore.commit`)."""

    path: Path
    state: DeployState


class StateStore:
    """state.json in the state directory."""

    def __init__(self, state_dir: Path, deployment_color_file: Path | None) -> None:
        self.path = state_dir / "state.json"
        self.prepared_path = state_dir / ".state.json.prepared"
        self.lock_path = state_dir / "state.lock"
        self.deployment_color_file = deployment_color_file
        self._writer: int | None = None  # the thread inside `writing()`

    @contextmanager
    def writing(self, timeout: float = 60.0) -> Iterator[None]:
        """Exclusive on this host (flock, released by the kernel if the holder dies) for a guard
        check and the write it allows. Re-entrant for the thread inside it."""
        if self._writer == threading.get_ident():
            yield
            return
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise unwritable(self.lock_path.parent, "the state directory", exc) from exc
        try:
            if not lock_exclusive(fd, timeout):
                raise WatcherError(
                    f"{self.lock_path} stayed locked for {timeout:g}s by another watcher "
                    "process (one stopped in the middle of a write?); nothing was written "
                    "or switched"
                )
            self._writer = threading.get_ident()
            try:
                yield
            finally:
                self._writer = None
        finally:
            os.close(fd)

    def load(self) -> DeployState:
        try:
            raw = json.loads(self.path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            return DeployState(
                Release.from_dict(raw.get("live")),
                Release.from_dict(raw.get("previous")),
                Pending.from_dict(raw.get("pending")),
                str(raw.get("updated", "")),
                str(raw.get("engine", "")),
                tuple(filter(None, map(RolledBack.from_dict, raw.get("rolled_back") or ()))),
            )
        except FileNotFoundError:
            return DeployState()
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise WatcherError(
                f"state file {self.path} is unreadable ({exc}); fix or remove it, then run `watcher status`"
            ) from exc

    def save(self, state: DeployState) -> DeployState:
        state = replace(state, updated=now_iso())
        write_atomic(self.path, _text(state))
        self._write_color(state)
        return state

    def prepare(self, state: DeployState) -> Prepared:
        """Write `state` whole, beside state.json, for `commit` to put in force later by a rename:
        a rename needs no free space, so a record prepared before the switch cannot be refused by
        a disk that fills up after it."""
        state = replace(state, updated=now_iso())
        write_atomic(self.prepared_path, _text(state))
        return Prepared(self.prepared_path, state)

    def commit(self, prepared: Prepared) -> DeployState:
        os.replace(prepared.path, self.path)
        dir_fd = os.open(self.path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._write_color(prepared.state)
        return prepared.state

    def discard(self) -> None:
        """Drop a prepared state that will not be committed (the deploy aborted). Best effort: a
        leftover is never committed, only replaced by the next `prepare`."""
        with contextlib.suppress(OSError):
            self.prepared_path.unlink(missing_ok=True)

    def _write_color(self, state: DeployState) -> None:
        if self.deployment_color_file is None:
            return
        if state.live:
            write_atomic(self.deployment_color_file, state.live.color.value + "\n")
        else:
            self.deployment_color_file.unlink(missing_ok=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.discard()
        if self.deployment_color_file is not None:
            self.deployment_color_file.unlink(missing_ok=True)


def _text(state: DeployState) -> str:
    return json.dumps(state.to_dict(), indent=2) + "\n"
