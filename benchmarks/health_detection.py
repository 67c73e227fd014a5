"""Benchmark: healthy-to-switch latency, from Docker's `health_status: healthy` event for the new
colour's container to the switch, with the health wait on Docker's events and polling only.

    .venv/bin/python benchmarks/health_detection.py [--deploys 8] [--intervals 3,1]
                                                    [--json benchmarks/results/health_detection.json]

One throw-away stack (tests/harness/stack.py; the test app, whose healthcheck runs every 1 s),
`watcher deploy v1`, then `--deploys` deploys per method and interval alternating v2 and v1,
old colour removed each time (so every deploy starts fresh containers, as a new version does):

  events   `watcher deploy` as shipped: the health wait judges the colour on each of Docker's
           events for its containers, and polls every HEALTH_CHECK_INTERVAL as the fallback
  poll     the same CLI with the Docker SDK's `events` call refused (403, as a Docker socket proxy
           that does not forward /events answers): the wait falls back to polling alone, which
           is what watcher did before the events

The methods are interleaved (poll, events, events, poll, ...) so that each sees both colours and
the same host load. Per deploy:
  t_healthy  the `timeNano` of Docker's `health_status: healthy` event for the new colour's
             container, from the benchmark's own subscription to Docker's events
  t_switch   the modification time of the route file Caddy routes by: written, fsynced and renamed
             into place by the switch within a few ms (file times have the kernel tick's resolution,
             ~4 ms; the engine's phase stamps have 0.1 s and a monotonic origin)
Not a test: prints a table and writes JSON (benchmarks/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from tests.harness import images  # noqa: E402
from tests.harness.stack import APP_REPO, CADDY_IMAGE, REDIS_IMAGE, Stack  # noqa: E402

PROJECT_LABEL = "com.docker.compose.project"
METHODS = ("poll", "events", "events", "poll")  # the interleaving: each method sees both colours

#: The CLI with Docker's /events refused at the SDK, as a socket proxy that does not forward it.
POLL_ONLY = """
import sys
from docker.api.client import APIClient
from docker.errors import APIError
from watcher.cli import main

def refused(self, *args, **kwargs):
    raise APIError("403 Client Error: Forbidden (refused by the benchmark, as a socket proxy may)")

APIClient.events = refused
sys.exit(main(sys.argv[1:]))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class HealthyEvents:
    """Docker's `health_status: healthy` events of the stack's containers, recorded from now on by
    a thread of its own (Docker keeps only its last 256 events: asking afterwards loses them on a
    busy host)."""

    def __init__(self, stack: Stack) -> None:
        self.prefix = f"{stack.name}-"
        self.seen: list[tuple[str, int]] = []  # (compose project, timeNano)
        self._stream = docker.from_env().events(
            decode=True, filters={"type": "container", "event": "health_status", "label": PROJECT_LABEL}
        )
        self._thread = threading.Thread(target=self._read, name="healthy-events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            project = raw.get("Actor", {}).get("Attributes", {}).get(PROJECT_LABEL, "")
            if raw.get("Action") == "health_status: healthy" and project.startswith(self.prefix):
                self.seen.append((project, int(raw["timeNano"])))

    def first_after(self, project: str, since_ns: int) -> int | None:
        return min((t for p, t in self.seen if p == project and t > since_ns), default=None)

    def close(self) -> None:
        self._stream.close()
        self._thread.join(timeout=5)


def deploy(stack: Stack, method: str, version: str, interval: float) -> tuple[dict[str, Any], str]:
    """Run one deploy; return its --json result and its progress output."""
    command = ["-m", "watcher"] if method == "events" else ["-c", POLL_ONLY]
    proc = subprocess.run(
        [sys.executable, *command, "deploy", version, "--json"],
        cwd=stack.root,
        env=stack.env(HEALTH_CHECK_INTERVAL=f"{interval:g}s"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {method} deploy of {version} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout), proc.stderr


def seen_by(progress: str) -> str:
    """What ended the health wait, from the engine's own line: `event`, `poll` or `first look`."""
    found = re.search(r"healthy, seen on (Docker's event|the poll|the first look)", progress)
    return {"Docker's event": "event", "the poll": "poll"}.get(found.group(1), "first look") if found else "?"


def measure(
    stack: Stack, events: HealthyEvents, method: str, version: str, interval: float
) -> dict[str, Any]:
    begun = time.time_ns()
    result, progress = deploy(stack, method, version, interval)
    project = f"{stack.name}-{result['color']}"
    healthy = events.first_after(project, begun)
    if healthy is None:
        raise SystemExit(f"benchmark: no health_status: healthy event of {project} was seen")
    switched = stack.route_file.stat().st_mtime_ns
    if method == "poll" and "cannot subscribe to Docker's events" not in progress:
        raise SystemExit("benchmark: the poll baseline still had Docker's events:\n" + progress)
    return {
        "method": method,
        "interval_s": interval,
        "version": version,
        "color": result["color"],
        "healthy_to_switch_ms": round((switched - healthy) / 1e6, 1),
        "seen_by": seen_by(progress),
        "health_phase_s": result["phases"]["health"],
        "total_s": result["total"],
        "load_1m": round(os.getloadavg()[0], 2),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(r["healthy_to_switch_ms"] for r in rows)
    p90 = statistics.quantiles(latencies, n=10, method="inclusive")[8] if len(latencies) > 1 else latencies[0]
    return {
        "deploys": len(rows),
        "p50_ms": round(statistics.median(latencies), 1),
        "p90_ms": round(p90, 1),
        "max_ms": max(latencies),
        "mean_health_phase_s": round(statistics.mean(r["health_phase_s"] for r in rows), 2),
        "seen_by": {k: sum(r["seen_by"] == k for r in rows) for k in sorted({r["seen_by"] for r in rows})},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deploys", type=int, default=8, help="deploys per method and interval")
    parser.add_argument("--intervals", default="3", help="HEALTH_CHECK_INTERVAL values in seconds, e.g. 3,1")
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "results" / "health_detection.json"
    )
    args = parser.parse_args()
    intervals = [float(v) for v in args.intervals.split(",")]

    images.build_caddy_image(CADDY_IMAGE)
    images.build_redis_image(REDIS_IMAGE)
    for version in ("v1", "v2"):
        images.push(images.build_app_image(f"{APP_REPO}:{version}", version))
    stack = Stack.create(health_timeout="120s", verify_window="1s", retain_old=False)
    events = HealthyEvents(stack)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        stack.watcher("deploy", "v1", check=True)
        versions = iter(["v2", "v1"] * (len(intervals) * args.deploys))
        for interval in intervals:
            for run in range(2 * args.deploys):
                row = measure(stack, events, METHODS[run % len(METHODS)], next(versions), interval)
                rows.append(row)
                log(f"{run + 1}/{2 * args.deploys}: {row}")
    finally:
        events.close()
        stack.destroy()

    print("\nhealthy-to-switch: Docker's health_status: healthy event -> route file replaced (ms)")
    print(
        f"{'interval':<9} {'method':<7} {'deploys':>7} {'p50':>7} {'p90':>7} {'max':>7} "
        f"{'health s':>9}  seen by"
    )
    summary: dict[str, Any] = {}
    for interval in intervals:
        for method in ("poll", "events"):
            figures = summarize([r for r in rows if r["interval_s"] == interval and r["method"] == method])
            summary[f"{interval:g}s {method}"] = figures
            print(
                f"{interval:g}s{'':<7} {method:<7} {figures['deploys']:>7} {figures['p50_ms']:>7.0f} "
                f"{figures['p90_ms']:>7.0f} {figures['max_ms']:>7.0f} {figures['mean_health_phase_s']:>9.2f}  "
                + ", ".join(f"{k} {n}" for k, n in figures["seen_by"].items())
            )
    loads = [r["load_1m"] for r in rows]
    print(
        f"host 1-minute load average during the run: mean {statistics.mean(loads):.1f}, max {max(loads):.1f}; "
        f"{os.cpu_count()} CPUs; runtime {time.monotonic() - started:.0f} s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "summary": summary, "deploys": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
