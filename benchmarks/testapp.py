"""Benchmark: the test app (tests/harness/app_server.py) against the busybox app, same run.

    .venv/bin/python benchmarks/testapp.py [--seconds 10] [--hogs 2] [--json FILE]

Why: a load test proves nothing about a swap if the app behind it fails requests on its own. The
busybox app forks an httpd per connection with a listen backlog of 9; the test app is one asyncio
process with a backlog of 1024. Each app runs in its own container limited to one core
(`--cpus 1`, `init: true`), published on 127.0.0.1, and gets, in this order:

1. `POST /cgi-bin/work` at 200/s on 16 keep-alive connections for --seconds, on an idle machine
   and then with --hogs busy-looping processes (the loaded machine of a CI run): p50/p99, failed.
2. Rising open-loop rates (500, 1,000, 2,000/s for 5 s each) on 64 connections: answered/s,
   failed, p99, and the app's own CPU time per request (from Docker's cgroup counters), so its
   capacity on one core is `1 / cpu per request` whatever the client manages.
3. A burst of 600 connections opened at once, each sending one request: how many are refused.

The client is tests/harness/load.py (open loop, never retries). Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import images  # noqa: E402
from tests.harness.load import run_load  # noqa: E402

APPS = {"test app": images.build_app_image, "busybox app": images.build_busybox_app_image}
RATES = (500, 1000, 2000)


def hog(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


class Hogs:
    """`count` processes spinning on a CPU each, for the loaded-machine rows."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.procs: list[multiprocessing.Process] = []

    def __enter__(self) -> Hogs:
        stop_at = time.monotonic() + 600
        self.procs = [
            multiprocessing.Process(target=hog, args=(stop_at,), daemon=True) for _ in range(self.count)
        ]
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.join()


def cpu_ns(container: Any) -> int:
    return int(container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"])


def wait_up(addr: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{addr}/version", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"the app at {addr} never answered")


def fixed_rate(addr: str, seconds: float) -> dict[str, Any]:
    r = run_load(f"http://{addr}/cgi-bin/work", rate=200, duration=seconds, connections=16)
    return {"sent": r.sent, "failed": r.failed, "p50_ms": r.p50(), "p99_ms": r.p99()}


def capacity(addr: str, container: Any) -> list[dict[str, Any]]:
    rows = []
    for rate in RATES:
        before = cpu_ns(container)
        r = run_load(f"http://{addr}/cgi-bin/work", rate=rate, duration=5, connections=64)
        used = (cpu_ns(container) - before) / 1e9
        rows.append(
            {
                "rate": rate,
                "sent": r.sent,
                "ok_per_s": r.ok / max(r.duration_s, 1e-9),
                "failed": r.failed,
                "p99_ms": r.p99(),
                "cpu_ms_per_request": 1000 * used / max(r.ok, 1),
                "errors": dict(r.errors),
            }
        )
    return rows


def burst(addr: str, count: int = 600) -> dict[str, int]:
    host, port = addr.split(":")
    socks, refused = [], 0
    for _ in range(count):
        try:
            socks.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError:
            refused += 1
    answered = 0
    for sock in socks:
        try:
            sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answered += sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            pass
        finally:
            sock.close()
    return {"connections": count, "answered": answered, "failed": count - answered}


def measure(name: str, build: Any, seconds: float, hogs: int) -> dict[str, Any]:
    ref = build(f"watcher-bench/testapp:{name.split()[0]}", "bench")
    container = images.client().containers.run(
        ref,
        name=f"wt-bench-{uuid.uuid4().hex[:8]}",
        detach=True,
        init=True,
        nano_cpus=1_000_000_000,
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        addr = f"127.0.0.1:{container.attrs['NetworkSettings']['Ports']['8080/tcp'][0]['HostPort']}"
        wait_up(addr)
        idle = fixed_rate(addr, seconds)
        with Hogs(hogs):
            loaded = fixed_rate(addr, seconds)
        return {
            "app": name,
            "idle_200": idle,
            "loaded_200": loaded,
            "capacity": capacity(addr, container),
            "burst": burst(addr),
        }
    finally:
        container.remove(force=True)


def table(results: list[dict[str, Any]], hogs: int) -> str:
    lines = [
        f"| app | 200/s idle: failed/sent, p50, p99 | 200/s with {hogs} CPU hogs | "
        + " | ".join(f"{r}/s: answered/s, failed, p99, CPU/req" for r in RATES)
        + " | 600-connection burst failed |",
        "|---" * (4 + len(RATES)) + "|",
    ]
    for res in results:
        cells = [res["app"]]
        for key in ("idle_200", "loaded_200"):
            m = res[key]
            cells.append(f"{m['failed']}/{m['sent']}, {m['p50_ms']:.1f} ms, {m['p99_ms']:.1f} ms")
        for row in res["capacity"]:
            cells.append(
                f"{row['ok_per_s']:.0f}, {row['failed']}, {row['p99_ms']:.0f} ms, "
                f"{row['cpu_ms_per_request']:.3f} ms"
            )
        cells.append(f"{res['burst']['failed']}/{res['burst']['connections']}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--hogs", type=int, default=2)
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "testapp.json")
    args = p.parse_args(argv)
    results = [measure(name, build, args.seconds, args.hogs) for name, build in APPS.items()]
    for res in results:
        res["capacity_per_core"] = round(
            1000 / max(min(r["cpu_ms_per_request"] for r in res["capacity"]), 1e-6)
        )
    print(table(results, args.hogs))
    for res in results:
        print(
            f"{res['app']}: ~{res['capacity_per_core']:,} requests/s per core (from its CPU time per request)"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hogs": args.hogs, "results": results},
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
