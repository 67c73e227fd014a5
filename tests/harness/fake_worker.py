"""The real worker loop, lock and queue with a stand-in engine: for queue tests and the latency
benchmark, where Docker would only add noise. Never used to test deploys themselves.

The stand-in walks the engine's phases (pull, health, [guard] switch, verify, record), each
taking `phase_seconds`, and keeps its "live version" and every switch it made in Redis under
`watcher:<app>:fake:*`, so a test can see who switched what, and when.

Run as a process (so it can be killed): python -m tests.harness.fake_worker REDIS_URL APP
[--ttl S] [--name N] [--phase-seconds S] [--poll S]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from watcher import interrupts
from watcher.engine.run import DeployResult, Guard
from watcher.engine.state import Release
from watcher.errors import DeployFailed
from watcher.interrupts import shielded
from watcher.platforms.color import Color
from watcher.progress import Progress
from watcher.queue import Worker
from watcher.queue.connection import connect, key


@dataclass
class FakeView:
    live: Release | None


class FakeEngine:
    """Deploys nothing; `fail:<version>` versions fail in health, like an unhealthy image."""

    def __init__(self, progress: Progress, client: redis.Redis, app: str, phase_seconds: float = 0.0) -> None:
        self.progress = progress
        self.client = client
        self.app = app
        self.phase_seconds = phase_seconds

    def view(self) -> FakeView:
        live = self.client.get(key(self.app, "fake", "live"))
        return FakeView(Release(Color.GREEN, live) if live else None)

    def deploy(
        self,
        version: str,
        *,
        guard: Guard,
        kind: str = "deploy",
        prefer_local: bool = False,
        digest: str | None = None,
    ) -> DeployResult:
        progress = self.progress
        with progress.phase("pull"):
            time.sleep(self.phase_seconds)
        live = self.view().live
        if live and live.version == version:
            return DeployResult(
                kind, version, live.color, None, noop=True, message=f"{version} is already live"
            )
        with progress.phase("health"):
            time.sleep(self.phase_seconds)
            if version.startswith("fail"):
                raise DeployFailed(f"{version} never became healthy")
        guard.check()
        with shielded(), progress.phase("switch"):
            self.client.rpush(
                key(self.app, "fake", "switches"),
                json.dumps({"version": version, "kind": kind, "pid": os.getpid(), "at": time.time()}),
            )
        with progress.phase("verify"):
            time.sleep(self.phase_seconds)
        guard.check()
        self.client.set(key(self.app, "fake", "live"), version)
        return DeployResult(kind, version, Color.GREEN, live, message=f"{version} is live")

    def rollback(self, *, guard: Guard, to: str | None = None, done_if_live: bool = False) -> DeployResult:
        assert to is not None
        return self.deploy(to, guard=guard, kind="rollback", prefer_local=True)


def fake_worker(
    client: redis.Redis, app: str, *, ttl: float, name: str, phase_seconds: float = 0.0, poll: float = 0.5
) -> Worker:
    return Worker(
        client,
        app,
        lambda progress: FakeEngine(progress, client, app, phase_seconds),
        lock_ttl=ttl,
        name=name,
        poll=poll,
    )


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """A worker's loop (real or with the stand-in) on a thread, stopped and joined at the end."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("app")
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--name", default=f"fake-{os.getpid()}")
    parser.add_argument("--phase-seconds", type=float, default=0.0)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    interrupts.install()
    fake_worker(
        connect(args.url),
        args.app,
        ttl=args.ttl,
        name=args.name,
        phase_seconds=args.phase_seconds,
        poll=args.poll,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
