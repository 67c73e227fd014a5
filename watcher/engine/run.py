"""One engine run's facts, in one record: what it planned, what it pulled, how far it got, what
users were served. The phases fill it in as they go; the unwind reads it to know what to undo;
the caller gets it back in the result, or attached to the exception a failed run raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from watcher.engine.receipt import Receipt
from watcher.engine.state import PROMOTED, ROLLED_BACK, VERIFIED, Release
from watcher.platforms.base import ColorStack
from watcher.platforms.color import Color
from watcher.progress import Progress


class Guard(Protocol):
    """Checked right before the switch: raises if this process may no longer switch traffic."""

    def check(self) -> None: ...


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, decided from the view before anything changes."""

    live: Release | None
    target: ColorStack
    image: str | None  # the local image ID to run, when known
    reuse: bool  # the target's retained containers are that very image: start them


@dataclass
class Run:
    kind: str  # deploy, rollback (a promote goes live as the deploy it finishes)
    version: str
    plan: Plan | None = None
    digest: str | None = None  # what the tag pointed at when pulled (None: used the local image)
    #: The tag's digest when it moved away from the one the run was asked for: a new request the
    #: caller (the worker) queues, whether the run then succeeds or fails.
    moved: str | None = None
    started: bool = False  # the target colour was (re)started: an unwind stops or removes it
    switched: bool = False  # traffic moved to the target: an unwind moves it back
    moved_at: float | None = None  # when traffic moved (epoch seconds): the receipt starts there
    receipt: Receipt | None = None  # what Caddy served, once traffic moved or the run unwound
    promotion: bool = False  # a promote: the second half of the deploy that waited

    @property
    def how(self) -> str:
        """How its release is recorded once it passed verification (`Release.how`)."""
        return ROLLED_BACK if self.kind == "rollback" else PROMOTED if self.promotion else VERIFIED

    @property
    def target(self) -> ColorStack:
        assert self.plan is not None, "a run has a target once it is planned"
        return self.plan.target

    @property
    def rolled_back_from(self) -> Release | None:
        """The release a rollback leaves (the triggers hold it back once this run is recorded)."""
        return self.plan.live if self.kind == "rollback" and self.plan is not None else None

    def result(
        self,
        progress: Progress,
        color: Color,
        previous: Release | None,
        message: str,
        *,
        noop: bool = False,
        drained: bool = True,
        awaiting: bool = False,
        until: str | None = None,
    ) -> DeployResult:
        """What the caller gets of a run that ended: its outcome, phases, digest, receipt, moved tag."""
        return DeployResult(
            self.kind,
            self.version,
            color,
            previous,
            dict(progress.durations),
            progress.total,
            noop=noop,
            drained=drained,
            message=message,
            digest=self.digest,
            receipt=self.receipt,
            awaiting=awaiting,
            until=until,
            moved=self.moved,
        )


def attach(failure: BaseException, run: Run) -> None:
    """Hand a failed run's record to the caller with its exception (`run_of`)."""
    failure.run = run  # type: ignore[attr-defined]


def run_of(failure: BaseException) -> Run | None:
    """The record of the run that raised `failure` (None: it did not come from a run)."""
    return getattr(failure, "run", None)


@dataclass
class DeployResult:
    kind: str
    version: str
    color: Color | None
    previous: Release | None
    phases: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    noop: bool = False
    drained: bool = True
    message: str = ""
    digest: str | None = None  # what the tag pointed at when pulled (None: used the local image)
    receipt: Receipt | None = None
    awaiting: bool = False  # manual promotion: healthy on `color`, traffic untouched
    until: str | None = None  # ... until this moment (ISO), then removed
    moved: str | None = None  # the tag's new digest, when it moved since the job was queued

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "version": self.version,
            "color": self.color.value if self.color else None,
            "previous": self.previous.to_dict() if self.previous else None,
            "noop": self.noop,
            "drained": self.drained,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "total": round(self.total, 3),
            "message": self.message,
            "awaiting": self.awaiting,
            "digest": self.digest,
            "receipt": self.receipt.to_dict() if self.receipt else None,
        }
