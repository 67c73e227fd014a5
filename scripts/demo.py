"""Live local demo: a zero-downtime deploy and rollback under load, with the repo's own stack.

Runs the example stack at the repository root (compose.yml, compose.<colour>.yml, Caddyfile,
config/watcher.toml) on 127.0.0.1:8080: pushes v1 and v2 of the demo app to the local
registry (127.0.0.1:5000, standing in for GHCR), deploys v1, then puts constant load on Caddy
(keep-alive POSTs at 200/s and 1 s POSTs at 40/s, never retried) while it deploys v2, rolls
back, and then deploys v3 with no command at all: `watcher run` (webhook receiver + worker) is
started, v3 is pushed, and the signed `package` webhook GitHub would send is delivered to it.
Prints requests sent and failed and each phase's time; ends with `failed: N`.

    make demo                  # or: .venv/bin/python scripts/demo.py [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import images  # noqa: E402
from tests.harness.load import LoadGenerator  # noqa: E402

CONFIG = ROOT / "config" / "watcher.toml"
APP = "127.0.0.1:5000/watcher/demo-app"
PORT = 8080
ENV = {
    "WATCHER_CONFIG": str(CONFIG),
    "STACK_NAME": "demo",
    "HTTP_PORT": str(PORT),
    "APP_IMAGE": APP,
    "CADDY_IMAGE": images.DEFAULT_CADDY_REF,   # offline stand-ins for caddy:2.11 and redis:7.4
    "REDIS_IMAGE": images.DEFAULT_REDIS_REF,
    "APP_HEALTH_INTERVAL": "1s",
    "HEALTH_CHECK_INTERVAL": "1s",
    "VERIFY_WINDOW": "3s",
}


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def watcher(*args: str) -> dict:
    """Run the real CLI; show its progress; return its JSON result."""
    proc = subprocess.run([sys.executable, "-m", "watcher", *args, "--json"], cwd=ROOT,
                          env={**os.environ, **ENV}, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `watcher {' '.join(args)}` failed with exit {proc.returncode}")
    return json.loads(proc.stdout)


def push_triggered(version: str) -> dict:
    """Push `version` and deliver GitHub's webhook to `watcher run`; return when it is live."""
    import secrets
    import uuid

    import httpx
    import redis

    from tests.harness.stack import free_port
    from tests.unit.test_github_payloads import github_package
    from watcher.triggers.payloads import sign

    redis_url = "redis://127.0.0.1:6379/14"   # the demo's own database on the services' Redis
    secret = secrets.token_hex(16)
    port = free_port()
    env = {**os.environ, **ENV, "REDIS_URL": redis_url, "WEBHOOK_SECRET": secret,
           "WEBHOOK_LISTEN": f"127.0.0.1:{port}", "POLL_INTERVAL": "1h"}
    server = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--no-poll"], cwd=ROOT, env=env)
    client = redis.Redis.from_url(redis_url)
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        started = time.monotonic()
        ref = images.build_app_image(f"{APP}:{version}", version)
        print(f"pushed {ref} {images.push(ref)}", flush=True)
        pushed = time.monotonic()
        body = json.dumps(github_package("published", version, owner="watcher", name="demo-app",
                                         package_url=f"{APP}:{version}")).encode()
        answer = httpx.post(f"http://127.0.0.1:{port}/hooks/github", content=body, timeout=15, headers={
            "X-GitHub-Event": "package", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(secret, body), "Content-Type": "application/json"})
        print(f"webhook answered {answer.status_code}: {answer.json()['reason']}", flush=True)
        if answer.status_code != 202:
            raise SystemExit("demo: the webhook did not queue a deploy")
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{PORT}/version", timeout=2).text.strip() == version:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - pushed > 120:
                raise SystemExit(f"demo: {version} did not go live within 120 s of the push")
            time.sleep(0.1)
        live = time.monotonic()
        print(f"{version} is live {live - pushed:.1f}s after the push", flush=True)
        from watcher.queue import DeployQueue

        queue = DeployQueue(redis.Redis.from_url(redis_url, decode_responses=True), "demo")
        while not ((job := queue.last_job()) and job.version == version and job.status.final):
            time.sleep(0.2)   # the job finishes: verify window, drain, stop the old colour
        print(f"job {job.describe()}", flush=True)
        color = (ROOT / ".watcher" / "run" / "live").read_text().strip()   # the route file: what is live
        return {"version": version, "color": color, "total": live - started,
                "phases": {"push": pushed - started, "push to live": live - pushed}}
    finally:
        server.terminate()
        server.wait(60)
        for key in client.scan_iter("watcher:demo:*"):
            client.delete(key)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def teardown() -> None:
    for project, files in (("demo-blue", ["compose.yml", "compose.blue.yml"]),
                           ("demo-green", ["compose.yml", "compose.green.yml"]),
                           ("demo", ["compose.yml"])):
        argv = ["docker", "compose", "-p", project, "--project-directory", str(ROOT), "--profile", "*"]
        for name in files:
            argv += ["-f", str(ROOT / name)]
        subprocess.run([*argv, "down", "-v", "-t", "2"], cwd=ROOT, env={**os.environ, **ENV},
                       capture_output=True, check=False)
    for leftover in (ROOT / ".watcher" / "state.json", ROOT / ".watcher" / "run" / "live", ROOT / ".deployment-color"):
        leftover.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    args = parser.parse_args()

    say("building offline images and pushing demo-app v1, v2 to the local registry")
    images.build_caddy_image()
    images.build_redis_image()
    for version in ("v1", "v2"):
        ref = images.build_app_image(f"{APP}:{version}", version)
        print(f"pushed {ref} {images.push(ref)}")

    teardown()  # a previous, interrupted demo
    if not port_is_free(PORT):
        raise SystemExit(f"demo: 127.0.0.1:{PORT} is in use; free it and run again")
    results = []
    try:
        say("deploy v1 (first deploy: starts caddy and redis, then the blue colour)")
        results.append(("deploy v1", watcher("deploy", "v1")))

        say("constant load on Caddy: keep-alive POSTs at 200/s + 1 s POSTs at 40/s (never retried)")
        fast = LoadGenerator(f"http://127.0.0.1:{PORT}/cgi-bin/work", rate=200, connections=16).start()
        slow = LoadGenerator(f"http://127.0.0.1:{PORT}/cgi-bin/work?sleep=1", rate=40, connections=64).start()
        time.sleep(2)
        say("deploy v2 under load")
        results.append(("deploy v2", watcher("deploy", "v2")))
        time.sleep(2)
        say("rollback under load (to v1, whose colour was kept stopped)")
        results.append(("rollback", watcher("rollback")))
        time.sleep(2)
        say("push-triggered deploy under load: `watcher run` up, push v3, GitHub's webhook arrives")
        results.append(("push v3", push_triggered("v3")))
        time.sleep(2)
        loads = [("POST 200/s keep-alive", fast.stop()), ("POST 1 s, 40/s", slow.stop())]
    finally:
        if not args.keep:
            say("tearing the demo stack down (use --keep to leave it running)")
            teardown()

    say("results")
    for name, result in results:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in result["phases"].items())
        print(f"{name:10} -> {result['version']} on {result['color']}: {result['total']:.1f}s ({phases})")
    failed = 0
    for name, load in loads:
        failed += load.failed
        print(f"{name:24} sent {load.sent:5}  failed {load.failed}  p50 {load.p50():.0f} ms  "
              f"p99 {load.p99():.0f} ms  answered by {dict(load.versions)}")
    print(f"requests sent: {sum(load.sent for _, load in loads)}")
    print(f"failed: {failed}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
