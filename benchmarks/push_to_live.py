"""Benchmark: push-to-live time, from `docker push` returning (the image is in the registry, the
moment GitHub or the registry fires its event) to Caddy answering with the new version.

    .venv/bin/python benchmarks/push_to_live.py [--runs 5] [--poll-interval 10]
                                                [--json benchmarks/results/push_to_live.json]

One throw-away stack (tests/harness/stack.py) and a docker-registry of its own on a free loopback
port whose notifications point at watcher; `watcher run` (receiver + poller + worker in one
process) restarted per path; each run pushes the next version (v2, v3, ...) of the test app:

  github     the benchmark sends the signed GitHub `package` delivery GitHub would send, as soon
             as the push returns (GitHub's own delivery delay, usually about a second, is not in it)
  registry   nothing is sent by the benchmark: the registry's own notification triggers the deploy
  poll       notifications refused; the poller (interval --poll-interval, jitter 1 s) finds the tag;
             each push waits a random part of the interval first, so pushes fall anywhere in the cycle

A deploy here: pull, start the new colour, health (the test app is healthy after ~2 s; checks
every 1 s), switch, verify (window 1 s), drain, stop the old colour. Push-to-live counts until the
switch is visible through Caddy; the job's end (drained, old colour stopped) comes ~1.5 s later.
Through polling, the wait for the next poll adds on average half the interval (30 s at the
default 60 s). Not a test: prints a table and writes JSON (benchmarks/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from tests.harness import images  # noqa: E402
from tests.harness.registry import require_tool, running_registry  # noqa: E402
from tests.harness.stack import CADDY_IMAGE, REDIS_IMAGE, Stack, free_port  # noqa: E402
from tests.harness.triggers import WatcherServer, github_delivery  # noqa: E402
from tests.unit.test_github_payloads import github_package  # noqa: E402
from watcher.queue import DeployQueue  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/15"
SECRET = "bench-" + secrets.token_hex(8)
REGISTRY_TOKEN = "notify-" + secrets.token_hex(8)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--poll-interval", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "push_to_live.json")
    args = parser.parse_args()

    images.build_caddy_image(CADDY_IMAGE)
    images.build_redis_image(REDIS_IMAGE)
    port = free_port()
    notifications = {"notifications": {"endpoints": [{
        "name": "watcher", "url": f"http://127.0.0.1:{port}/hooks/registry",
        "headers": {"Authorization": [f"Bearer {REGISTRY_TOKEN}"]}, "timeout": "2s", "threshold": 3,
        "backoff": "1s"}]}}
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    work = Path(f"/tmp/watcher-bench-ptl-{uuid.uuid4().hex[:6]}")
    results: dict[str, list[dict[str, float]]] = {"github": [], "registry": [], "poll": []}
    with running_registry(require_tool("docker-registry"), work / "registry", extra=notifications) as registry:
        repo = f"{registry.host}/bench/app"
        stack = Stack.create(image=repo)
        queue = DeployQueue(client, stack.name)
        counter = iter(range(1, 1000))

        def push() -> tuple[str, float]:
            version = f"v{next(counter)}"
            ref = images.build_app_image(f"{repo}:{version}", version)
            started = time.monotonic()
            images.push(ref)
            return version, time.monotonic() - started

        def configure(poll: bool) -> None:
            stack.write_config(image=repo, verify_window="1s", extra=f"""
[redis]
url = "{REDIS_URL}"
[webhook]
listen = "127.0.0.1:{port}"
[poll]
enabled = {"true" if poll else "false"}
interval = "{args.poll_interval:g}s"
jitter = "1s"
[policy]
kind = "regex"
include = "v(\\\\d+)"
""")

        def wait(predicate, timeout: float = 180) -> float:
            started = time.monotonic()
            while not predicate():
                if time.monotonic() - started > timeout:
                    raise SystemExit("benchmark: timed out")
                time.sleep(0.05)
            return time.monotonic()

        def finished(version: str) -> bool:
            last = queue.last_job()
            return bool(last and last.version == version and last.status.final and not queue.running())

        try:
            configure(poll=False)
            version, _ = push()
            deployed = stack.watcher("deploy", version)
            if deployed.returncode != 0:
                raise SystemExit(f"benchmark: the first deploy failed:\n{deployed.stderr}")
            for method in ("registry", "github", "poll"):
                configure(poll=method == "poll")
                env = {"WEBHOOK_SECRET": SECRET}
                if method == "registry":
                    env["WEBHOOK_REGISTRY_TOKEN"] = REGISTRY_TOKEN
                server = WatcherServer(stack.config, env, port, command=("run",)).start()
                try:
                    time.sleep(1.5)   # let a redelivered notification of an earlier push settle
                    for run in range(args.runs):
                        if method == "poll":   # push at a random point of the poll cycle, as a user would
                            time.sleep(random.uniform(0, args.poll_interval))
                        version, push_s = push()
                        pushed = time.monotonic()
                        if method == "github":
                            payload = github_package("published", version, owner="bench", name="app",
                                                     package_url=f"{repo}:{version}")
                            response = github_delivery(server.url, "package", payload, SECRET)
                            assert response.status_code == 202, response.text
                        live = wait(lambda: stack.version() == version)
                        done = wait(lambda: finished(version))
                        job = queue.last_job()
                        assert job is not None and job.status.value == "succeeded", job.describe() if job else None
                        row = {"version": version, "push_s": round(push_s, 2), "to_live_s": round(live - pushed, 2),
                               "to_job_end_s": round(done - pushed, 2),
                               "queued_to_start_s": round((job.started or 0) - job.created, 2),
                               "deploy_s": round((job.finished or 0) - (job.started or 0), 2)}
                        results[method].append(row)
                        log(f"{method} run {run + 1}: {row}")
                finally:
                    server.stop()
        finally:
            stack.destroy()
            for found in client.scan_iter(f"watcher:{stack.name}:*"):
                client.delete(found)
    shutil.rmtree(work, ignore_errors=True)

    print(f"\npush-to-live (docker push returned -> new version answers through Caddy), median of {args.runs}")
    print(f"{'path':<10} {'median s':>9} {'min':>6} {'max':>6} {'job end s':>10} {'push s':>7}")
    summary: dict[str, Any] = {}
    for method, rows in results.items():
        live = [r["to_live_s"] for r in rows]
        summary[method] = {"median_to_live_s": statistics.median(live), "min": min(live), "max": max(live),
                           "median_to_job_end_s": statistics.median(r["to_job_end_s"] for r in rows),
                           "median_push_s": statistics.median(r["push_s"] for r in rows), "runs": rows}
        label = method if method != "poll" else f"poll {args.poll_interval:g}s"
        print(f"{label:<10} {summary[method]['median_to_live_s']:>9.2f} {min(live):>6.2f} {max(live):>6.2f} "
              f"{summary[method]['median_to_job_end_s']:>10.2f} {summary[method]['median_push_s']:>7.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"poll_interval_s": args.poll_interval, "results": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
