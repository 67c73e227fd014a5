"""Every state write of a run, fenced by its guard and stamped with the host it was made on.

Writers hold `state.lock` (flock) across their guard check and the write (`fenced`): a holder
paused right after a passing check (SIGSTOP, a frozen VM) must not write after a new holder took
over. The record of a new release is written whole before traffic moves (`prepare`) and put in
force after the verification (`record`, a rename).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from watcher.engine.reconcile import View
from watcher.engine.run import Guard
from watcher.engine.state import PROMOTE, DeployState, Pending, Prepared, StateStore, awaiting, waiting_again
from watcher.errors import DeployFailed, StateUnwritable, WatcherError
from watcher.progress import Progress


class Ledger:
    def __init__(self, store: StateStore, progress: Progress) -> None:
        self.store = store
        self.progress = progress
        self.guard: Guard | None = None  # the running job's (set when it starts)
        self.host = ""  # the platform's host ID, recorded with every write

    def claim(self, guard: Guard, host: str) -> None:
        """A run's writes are fenced by its `guard` and stamped with its `host`: one platform host
        per app, so a state recorded on another host is refused."""
        self.guard, self.host = guard, host
        recorded = self.store.load().engine
        if recorded and host and recorded != host:
            raise WatcherError(
                f"{self.store.path} was recorded on Docker engine {recorded}, but this watcher "
                f"talks to engine {host}: an app's colours live on one Docker host. Run "
                "watcher on that host (or point DOCKER_HOST at its engine); nothing was changed"
            )

    @contextmanager
    def fenced(self, guard: Guard | None = None) -> Iterator[None]:
        """Check the guard (a fenced lock) and make the write it allows, with no other watcher
        process on this host in between: a new holder's writes land after a paused one's."""
        guard = guard if guard is not None else self.guard
        with self.store.writing():
            if guard is not None:
                guard.check()
            yield

    def save(self, state: DeployState) -> None:
        """A holder that lost the lock while paused must not overwrite what the new one recorded."""
        try:
            with self.fenced():
                self.store.save(replace(state, engine=self.host or state.engine))
        except OSError as exc:
            raise StateUnwritable(f"cannot write {self.store.path} ({exc.strerror or exc})") from exc

    def prepare(self, state: DeployState) -> Prepared:
        """A full disk then stops the deploy with nothing switched, and a disk that fills up after
        the switch cannot refuse the record step (a rename)."""
        try:
            return self.store.prepare(replace(state, engine=self.host or state.engine))
        except OSError as exc:
            raise DeployFailed(
                f"cannot write {self.store.prepared_path} ({exc.strerror or exc}), so the new "
                "release could not be recorded: traffic was not switched"
            ) from exc

    def record(self, prepared: Prepared) -> None:
        """The state prepared before the switch goes in force. Traffic is on the new colour
        already; a failure only leaves the state behind the route file, which `status` and the
        next deploy reconcile."""
        live = prepared.state.live
        try:
            with self.fenced():
                self.store.commit(prepared)
        except OSError as exc:
            raise WatcherError(
                f"{live.version if live else 'the new version'} serves, but "
                f"{self.store.path} could not be written ({exc.strerror}); the old colour keeps "
                "running: free the disk and run `watcher status`"
            ) from exc

    def note_pending(self, view: View, pending: Pending) -> None:
        """Record the reconciled truth plus what this deploy is about to do."""
        try:
            self.save(DeployState(view.live, view.previous, pending, rolled_back=view.recorded.rolled_back))
        except StateUnwritable as exc:
            raise DeployFailed(f"{exc}; nothing was changed") from exc

    def mark(self, phase: str) -> None:
        """Note the phase for `status` after a crash. A disk that refuses the note does not stop
        the deploy: the record itself is prepared before the switch."""
        state = self.store.load()
        if state.pending:
            try:
                self.save(replace(state, pending=replace(state.pending, phase=phase)))
            except StateUnwritable as exc:
                self.progress.say(f"  note: {exc}: phase {phase!r} is not noted; carrying on")

    def clear_pending(self) -> None:
        self.save(replace(self.store.load(), pending=None))

    def unwound(self) -> Pending | None:
        """An unwound run leaves no note, but a promote's: the colour it was to promote was not
        started by it, so it awaits promotion again (the note returned), never removed."""
        state = self.store.load()
        pending = state.pending
        kept = waiting_again(pending) if pending is not None and pending.kind == PROMOTE else None
        self.save(replace(state, pending=kept))
        return kept

    def sync(self, view: View) -> None:
        """Write the reconciled truth when the record differs (a wait for promotion stays)."""
        if not view.in_sync:
            kept = view.recorded.pending if awaiting(view.recorded.pending) else None
            self.save(DeployState(view.live, view.previous, kept, rolled_back=view.recorded.rolled_back))
