"""Benchmark: signed GitHub deliveries per second the webhook receiver sustains.

    .venv/bin/python benchmarks/webhook_rps.py [--seconds 10] [--clients 2] [--connections 8]
                                               [--json benchmarks/results/webhook_rps.json]

Starts the real `watcher serve --no-poll` (waitress, Flask; default 8 threads) on a free loopback
port, with Redis (127.0.0.1:6379, db 15) and the local registry (127.0.0.1:5000) as in the tests,
and drives it with keep-alive HTTP/1.1 clients in separate processes (so the client's GIL is not
the server's). Every request is a GitHub `package` delivery (~6 KB: GitHub's fields, trimmed) with its
X-Hub-Signature-256, which the server verifies (HMAC-SHA256 over the raw body, constant-time
compare) before anything else. Nothing is deployed; three paths, each for --seconds after a 2 s
warm-up:

  unknown-image   a push of an image no app deploys: verify, parse, map, answer 200 ignored
  replayed-id     a delivery id already processed: ... + Redis SET NX, answer 200 duplicate
  same-push       new delivery ids for a push already queued: ... + Redis (delivery claim, live,
                  waiting), a registry HEAD for the tag's digest, the (app, tag, digest) claim,
                  answer 200 duplicate (the whole path a real push takes, short of the enqueue)

The clients run on the same 2-core machine as the server: the figures are a floor for the
server alone. Not a test: prints a table, writes JSON (benchmarks/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from tests.harness.registry import push_images  # noqa: E402
from tests.harness.stack import REGISTRY, free_port  # noqa: E402
from tests.harness.triggers import WatcherServer, forget, write_project  # noqa: E402
from tests.unit.test_github_payloads import github_package  # noqa: E402
from watcher.triggers.payloads import sign  # noqa: E402

SECRET = "bench-" + uuid.uuid4().hex
REDIS_URL = "redis://127.0.0.1:6379/15"
BENCH_REPO = "watcher-bench/webhook"


def realistic(payload: dict[str, Any]) -> dict[str, Any]:
    """Add the repository object GitHub sends (URLs mostly), so the body is GitHub's size."""
    base = "https://api.github.com/repos/acme/app"
    payload["repository"] = {
        "id": 1060841726,
        "node_id": "R_kgDOPzso_g",
        "name": "app",
        "full_name": "acme/app",
        "private": False,
        "owner": payload["package"]["owner"],
        "html_url": "https://github.com/acme/app",
        "description": "the app",
        "fork": False,
        "url": base,
        **{
            f"{name}_url": f"{base}/{name}{{/number}}"
            for name in (
                "forks",
                "keys",
                "collaborators",
                "teams",
                "hooks",
                "issue_events",
                "events",
                "assignees",
                "branches",
                "tags",
                "blobs",
                "git_tags",
                "git_refs",
                "trees",
                "statuses",
                "languages",
                "stargazers",
                "contributors",
                "subscribers",
                "subscription",
                "commits",
                "git_commits",
                "comments",
                "issue_comment",
                "contents",
                "compare",
                "merges",
                "archive",
                "downloads",
                "issues",
                "pulls",
                "milestones",
                "notifications",
                "labels",
                "releases",
                "deployments",
            )
        },
    }
    payload["package"]["owner"].update(
        {
            f"{name}_url": f"https://api.github.com/users/acme/{name}"
            for name in (
                "followers",
                "following",
                "gists",
                "starred",
                "subscriptions",
                "organizations",
                "repos",
                "events",
                "received_events",
            )
        }
    )
    payload["package"]["package_version"]["author"] = payload["package"]["owner"]
    return payload


def client(
    url: str,
    body: bytes,
    signature: str,
    delivery: str | None,
    seconds: float,
    warmup: float,
    connections: int,
    out: multiprocessing.Queue,
) -> None:
    """One client process: `connections` keep-alive connections, each in its own thread."""
    import threading

    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic() + warmup
    stop = start + seconds
    results: list[tuple[int, float]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[tuple[int, float]] = []
        while True:
            now = time.monotonic()
            if now >= stop:
                break
            headers = {
                "X-GitHub-Event": "package",
                "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
                "Content-Type": "application/json",
            }
            try:
                conn.request("POST", "/hooks/github", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                continue
            if now >= start:
                mine.append((response.status, time.monotonic() - now))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(connections)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    out.put((results, errors))


def measure(
    url: str, body: bytes, delivery: str | None, *, seconds: float, clients: int, connections: int
) -> dict[str, Any]:
    out: multiprocessing.Queue = multiprocessing.Queue()
    signature = sign(SECRET, body)
    procs = [
        multiprocessing.Process(
            target=client, args=(url, body, signature, delivery, seconds, 2.0, connections, out)
        )
        for _ in range(clients)
    ]
    [p.start() for p in procs]
    results: list[tuple[int, float]] = []
    errors: list[str] = []
    for _ in procs:
        got, errs = out.get(timeout=seconds + 120)
        results.extend(got)
        errors.extend(errs)
    [p.join() for p in procs]
    latencies = sorted(latency for _, latency in results)
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "requests": len(results),
        "rps": round(len(results) / seconds, 1),
        "statuses": statuses,
        "errors": len(errors),
        "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2) if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--connections", type=int, default=8, help="keep-alive connections per client process"
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "webhook_rps.json")
    args = parser.parse_args()

    app = f"bench{uuid.uuid4().hex[:8]}"
    digests = push_images(f"http://{REGISTRY}", BENCH_REPO, ["1.0.0"])
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="watcher-bench-webhook-"))
    config = write_project(
        root, app=app, image=f"{REGISTRY}/{BENCH_REPO}", port=port, extra=f'[redis]\nurl = "{REDIS_URL}"\n'
    )
    server = WatcherServer(config, {"WEBHOOK_SECRET": SECRET}, port).start()
    rdb = redis.Redis.from_url(REDIS_URL)
    try:
        ours = realistic(
            github_package(
                "published",
                "1.0.0",
                owner="watcher-bench",
                name="webhook",
                package_url=f"{REGISTRY}/{BENCH_REPO}:1.0.0",
                digest=digests["1.0.0"],
            )
        )
        other = realistic(github_package("published", "1.0.0", owner="someone", name="else"))
        body_ours, body_other = json.dumps(ours).encode(), json.dumps(other).encode()

        # Queue the push once, so "same-push" deliveries are duplicates of it; and process one
        # delivery id once, so "replayed-id" deliveries are replays of it.
        import httpx

        replayed = str(uuid.uuid4())
        first = httpx.post(
            f"{server.url}/hooks/github",
            content=body_ours,
            timeout=15,
            headers={
                "X-GitHub-Event": "package",
                "X-GitHub-Delivery": replayed,
                "X-Hub-Signature-256": sign(SECRET, body_ours),
            },
        )
        assert first.status_code == 202, first.text

        scenarios = {
            "unknown-image": (body_other, None),
            "replayed-id": (body_ours, replayed),
            "same-push": (body_ours, None),
        }
        results: dict[str, Any] = {}
        for name, (body, delivery) in scenarios.items():
            print(
                f"[{time.strftime('%H:%M:%S')}] {name}: {args.clients} clients x {args.connections} connections, "
                f"{args.seconds:g}s ...",
                file=sys.stderr,
                flush=True,
            )
            results[name] = measure(
                server.url,
                body,
                delivery,
                seconds=args.seconds,
                clients=args.clients,
                connections=args.connections,
            )
        jobs = int(rdb.get(f"watcher:{app}:seq") or 0)
    finally:
        server.stop()
        forget(rdb, app)
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"\nwebhook receiver: signed GitHub deliveries of {len(body_ours)} bytes, waitress 8 threads, "
        f"{args.clients}x{args.connections} keep-alive connections, {args.seconds:g}s each"
    )
    print(f"{'path':<15} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name, r in results.items():
        print(
            f"{name:<15} {r['rps']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}  {r['statuses']}"
            + (f"  transport errors: {r['errors']}" if r["errors"] else "")
        )
    print(f"jobs created during the run: {jobs} (the one queued before it)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "body_bytes": len(body_ours),
                "seconds": args.seconds,
                "clients": args.clients,
                "connections": args.connections,
                "results": results,
                "jobs": jobs,
            },
            indent=2,
        )
    )
    return 0 if jobs == 1 and all(set(r["statuses"]) == {"200"} for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
