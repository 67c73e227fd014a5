"""`watcher worker` for every app on the host: one process that watches all the apps' queues and
runs their jobs, at most one per app (the app's deploy lock) and at most `concurrency` at once
(a swap briefly doubles an app's memory, so the default is one swap at a time on the host).

With `concurrency = 1` (the default) the pool runs each job itself, in its main thread, exactly
as a single-app worker does. Above one, each job runs in a child process (`watcher worker --app
NAME --one`): a swap needs the main thread of its process, where SIGTERM and SIGINT become the
`Interrupted` that unwinds it to the live colour, and a child gives each concurrent swap one.
The pool forwards SIGTERM/SIGINT to its children and waits for them to unwind; a child whose
pool dies abruptly gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and unwinds the same way.

The pool only decides *when* to start a child: an app has work (`has_work`: a waiting job while
not paused nor held by a scheduled freeze, or a dead worker's job), no one holds its lock, and a
slot is free. The child takes the lock and the job itself, exactly as a single-app worker does,
so a race between the pool's look and the child's take is settled by the lock.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from watcher.errors import Interrupted
from watcher.interrupts import shielded
from watcher.queue.connection import REDIS_DOWN, Backoff
from watcher.queue.queue import DeployQueue

log = logging.getLogger("watcher.worker")

#: Starts the child that runs one job of the named app.
Spawn = Callable[[str], subprocess.Popen[bytes]]
#: Runs the next job of the named app here and now; False when its locks were taken first.
RunHere = Callable[[str], bool]

#: Exit code of a child that found nothing to run (the lock or the host lock was taken first).
NOTHING_RUN = 3


@dataclass
class Child:
    app: str
    proc: subprocess.Popen[bytes]
    started: float


class WorkerPool:
    def __init__(
        self,
        client: redis.Redis,
        queues: Mapping[str, DeployQueue],
        spawn: Spawn,
        run_here: RunHere,
        *,
        concurrency: int = 1,
        name: str,
        poll: float = 0.5,
    ) -> None:
        self.client = client
        self.apps = list(queues)
        self.spawn = spawn
        self.run_here = run_here
        self.concurrency = concurrency
        self.name = name
        self.poll = poll
        self.queues = dict(queues)
        self.children: dict[str, Child] = {}
        self._not_before: dict[str, float] = {}  # an app whose child found nothing: wait a little
        self._next = 0  # round robin: no app starves the others
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Until SIGTERM/SIGINT (forwarded to the children, whose swaps unwind) or `stop()`."""
        log.info(
            "worker %s: started for %s (%d swap%s at a time)",
            self.name,
            ", ".join(self.apps),
            self.concurrency,
            "" if self.concurrency == 1 else "s",
        )
        backoff = Backoff(f"worker {self.name}: reading the queues")
        try:
            while not self._stop.is_set():
                self._reap()
                try:
                    self._start_due()
                    backoff.succeeded()
                    self._wait()
                except REDIS_DOWN as exc:
                    self._stop.wait(backoff.failed(exc))
        except Interrupted as exc:
            log.info("worker %s: stopping (%s)", self.name, exc)
            self._stop_children(exc.signum)
            return
        self._stop_children(signal.SIGTERM)
        log.info("worker %s: stopped", self.name)

    def _start_due(self) -> None:
        now = time.monotonic()
        for offset in range(len(self.apps)):
            if len(self.children) >= self.concurrency:
                return
            app = self.apps[(self._next + offset) % len(self.apps)]
            if app in self.children or self._not_before.get(app, 0.0) > now:
                continue
            if not self.queues[app].has_work():
                continue
            self._next = (self._next + offset + 1) % len(self.apps)
            if self.concurrency == 1:
                if not self.run_here(app):
                    self._not_before[app] = time.monotonic() + self.poll
                return
            with shielded():  # a child started is a child recorded, so a signal reaches it
                self.children[app] = Child(app, self.spawn(app), now)

    def _wait(self) -> None:
        """Until an app is woken (enqueue, resume, lock release) or a short poll passes; shorter
        while children run, so a finished one frees its slot promptly."""
        timeout = 0.2 if self.children else self.poll
        self.client.blpop([queue.keys.wake for queue in self.queues.values()], timeout=timeout)

    def _reap(self) -> None:
        for app, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[app]
            if code == NOTHING_RUN:
                self._not_before[app] = time.monotonic() + max(self.poll, 1.0)
            elif code != 0:
                log.warning("worker %s: the job process for %s exited with %s", self.name, app, code)
                self._not_before[app] = time.monotonic() + max(self.poll, 1.0)

    def _stop_children(self, signum: int) -> None:
        """Forward the signal and wait: each child unwinds its swap to the live colour."""
        with shielded():
            for child in self.children.values():
                if child.proc.poll() is None:
                    child.proc.send_signal(signum)
            for child in self.children.values():
                child.proc.wait()
            self.children.clear()
