"""Benchmark: how fast the queue reacts, through the real worker loop, lock and queue in Redis.

    .venv/bin/python benchmarks/queue_latency.py [--jobs 50] [--handovers 5] [--ttl 5]
                                                 [--redis redis://127.0.0.1:6379/15] [--json FILE]

1. Enqueue-to-start latency: three idle `fake_worker` processes (tests/harness/fake_worker.py:
   the real Worker, DeployLock and DeployQueue; only the engine is a stand-in that returns at
   once, so no Docker time is counted). Jobs are enqueued one after the other, each once the
   previous one ended, each for a new version (so none is a no-op). A job starts when a worker
   marks it running (`started`, written in the same Lua script that takes it); the latency is
   `started - created`, both stamped on this host.
2. Lock hand-over after kill -9: two workers; a job whose stand-in engine takes 60 s per phase
   runs on one; that worker is killed with SIGKILL; the time until the other one holds the lock
   is measured (polling the lock every 5 ms). Expected: the lock's remaining TTL (at most
   --ttl; renewed every ttl/3) plus up to one worker poll (0.5 s).

Prints a table; writes JSON when asked (benchmarks/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.waiting import wait_until  # noqa: E402
from watcher.queue import DeployQueue, Job, holder_of  # noqa: E402
from watcher.queue.connection import connect  # noqa: E402


def spawn(
    url: str, app: str, name: str, ttl: float, phase_seconds: float, log: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.harness.fake_worker",
            url,
            app,
            "--ttl",
            str(ttl),
            "--name",
            name,
            "--phase-seconds",
            str(phase_seconds),
        ],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait(condition: Any, timeout: float, what: str) -> Any:
    try:
        return wait_until(condition, timeout, what, poll=0.005)
    except AssertionError as exc:
        raise SystemExit(str(exc)) from None


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def enqueue_to_start(url: str, jobs: int, ttl: float, log: Path) -> list[float]:
    app = f"bench{uuid.uuid4().hex[:8]}"
    client = connect(url)
    queue = DeployQueue(client, app)
    workers = [spawn(url, app, f"w{i}", ttl, 0.0, log) for i in range(3)]
    try:
        time.sleep(2)  # workers up and idle in their BLPOP
        latencies = []
        for i in range(jobs):
            job_id = queue.enqueue(f"b{i}", source="cli", requested_by="benchmark").job.id
            done: Job = wait(lambda: (j := queue.get(job_id)) and j.status.final and j, 30, f"job {job_id}")
            assert done.started is not None, done.describe()
            latencies.append(done.started - done.created)
            time.sleep(0.05)
        return latencies
    finally:
        stop(workers)
        for found in client.scan_iter(f"watcher:{app}:*"):
            client.delete(found)


def handover(url: str, ttl: float, log: Path) -> tuple[float, float]:
    """(seconds from SIGKILL until another worker holds the lock, lock TTL left at the kill)."""
    app = f"bench{uuid.uuid4().hex[:8]}"
    client = connect(url)
    queue = DeployQueue(client, app)
    workers = {name: spawn(url, app, name, ttl, 60.0, log) for name in ("a", "b")}
    try:
        time.sleep(2)
        job_id = queue.enqueue("slow", source="cli", requested_by="benchmark").job.id
        job: Job = wait(lambda: (j := queue.get(job_id)) and j.phase == "pull" and j, 30, "the job running")
        assert job.worker is not None
        time.sleep(ttl / 3 * 1.5)  # somewhere between two renewals
        left = holder_of(client, app)
        os.kill(workers[job.worker].pid, signal.SIGKILL)
        killed = time.monotonic()
        heir = "b" if job.worker == "a" else "a"
        wait(
            lambda: (h := holder_of(client, app)) and f"worker {heir}" in h["purpose"],
            ttl + 10,
            "the hand-over",
        )
        return time.monotonic() - killed, (left or {}).get("expires_in", float("nan"))
    finally:
        stop(list(workers.values()))
        for found in client.scan_iter(f"watcher:{app}:*"):
            client.delete(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--handovers", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=5.0, help="lock TTL in seconds (production default: 30)")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    log = REPO / "benchmarks" / "results" / "queue_latency-workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")

    latencies = enqueue_to_start(args.redis, args.jobs, args.ttl, log)
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"enqueue-to-start, {len(ms)} jobs, 3 idle workers: median {statistics.median(ms):.1f} ms, "
        f"p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms, worst {ms[-1]:.1f} ms, best {ms[0]:.1f} ms"
    )

    handovers = []
    for i in range(args.handovers):
        took, left = handover(args.redis, args.ttl, log)
        handovers.append({"seconds": round(took, 3), "ttl_left_at_kill": left})
        print(
            f"lock hand-over after kill -9 #{i + 1}: {took:.2f} s (TTL {args.ttl:g} s, {left:.1f} s left at the kill)"
        )
    seconds = [h["seconds"] for h in handovers]
    if seconds:
        print(
            f"lock hand-over after kill -9, {len(seconds)} runs, TTL {args.ttl:g} s: median "
            f"{statistics.median(seconds):.2f} s, worst {max(seconds):.2f} s"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "enqueue_to_start_ms": {"median": statistics.median(ms), "worst": ms[-1], "all": ms},
                    "handover": {"ttl": args.ttl, "runs": handovers},
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
