"""Live local demo: zero-downtime deploys and a rollback under load, two apps behind one Caddy,
with the repo's own stack.

Runs the example stack at the repository root (compose.yml, compose.<colour>.yml, the Caddyfile
`watcher caddyfile` printed, config/watcher.toml) on 127.0.0.1:8080: two apps, `demo` at / and
`api` at /api/, from the same compose files. Pushes their images to the local registry
(127.0.0.1:5000, standing in for GHCR), deploys v1 of each, then puts constant load on both
routes (keep-alive POSTs and 1 s POSTs, never retried) while it deploys demo v2, rolls it back,
and then deploys demo v3 and api v2 with no command at all: one `watcher run` (webhook receiver
+ worker for both apps) is started, both images are pushed in the same second, and the signed
`package` webhooks GitHub's organisation hook would send are delivered to it. Prints requests
sent and failed and each phase's time; ends with `failed: N`.

    make demo                  # or: .venv/bin/python scripts/demo.py [--keep]
    make demo KEEP=1           # leave the stack and a `watcher run` with the dashboard running;
                               # prints the dashboard's URL and login token
    .venv/bin/python scripts/demo.py --down    # stop what KEEP=1 left running
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

import redis  # noqa: E402

from tests.harness import images  # noqa: E402
from tests.harness.load import LoadGenerator  # noqa: E402

CONFIG = ROOT / "config" / "watcher.toml"
APP = "127.0.0.1:5000/watcher/demo-app"
API = "127.0.0.1:5000/watcher/demo-api"
REPOS = {"demo": APP, "api": API}
ROUTES = {"demo": "", "api": "/api"}
PORT = 8080
REDIS_URL = "redis://127.0.0.1:6379/14"  # the demo's own database on the services' Redis
KEPT = ROOT / ".watcher" / "demo"  # what --keep leaves: the run's pid, log and login token
ENV = {
    "WATCHER_CONFIG": str(CONFIG),
    "STACK_NAME": "demo",
    "HTTP_PORT": str(PORT),
    "CADDY_IMAGE": images.DEFAULT_CADDY_REF,  # offline stand-ins for caddy:2.11 and redis:7.4
    "REDIS_IMAGE": images.DEFAULT_REDIS_REF,
    "APP_HEALTH_INTERVAL": "1s",
    "HEALTH_CHECK_INTERVAL": "1s",
    "VERIFY_WINDOW": "3s",
}


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def watcher(*args: str) -> dict:
    """Run the real CLI; show its progress; return its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "watcher", *args, "--json"],
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"demo: `watcher {' '.join(args)}` failed with exit {proc.returncode}")
    return json.loads(proc.stdout)


def push_triggered(versions: dict[str, str], *, keep: bool) -> list[tuple[str, dict]]:
    """Push each app's version in the same second and deliver GitHub's webhooks to one
    `watcher run`; return when every app is live on its version and its job has ended. With
    `keep`, the jobs stay in Redis for the dashboard's history."""
    import secrets
    import threading
    import uuid

    import httpx

    from tests.harness.stack import free_port
    from tests.unit.test_github_payloads import github_package
    from watcher.queue import DeployQueue
    from watcher.triggers.payloads import sign

    redis_url = REDIS_URL
    secret = secrets.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        **ENV,
        "REDIS_URL": redis_url,
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_LISTEN": f"127.0.0.1:{port}",
        "POLL_INTERVAL": "1h",
    }
    server = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--no-poll"], cwd=ROOT, env=env)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ready(port)
        started = time.monotonic()
        refs = {
            app: images.build_app_image(f"{REPOS[app]}:{version}", version)
            for app, version in versions.items()
        }
        digests: dict[str, str] = {}  # what GitHub's event names: the push's digest

        def push(app: str) -> None:
            digests[app] = images.push(refs[app])

        pushes = [threading.Thread(target=push, args=(app,)) for app in refs]
        for thread in pushes:
            thread.start()
        for thread in pushes:
            thread.join()
        pushed = time.monotonic()
        print(f"pushed {', '.join(refs.values())} in {pushed - started:.1f}s", flush=True)
        for app, version in versions.items():
            owner, name = REPOS[app].split("/")[1:]
            body = json.dumps(
                github_package(
                    "published",
                    version,
                    owner=owner,
                    name=name,
                    package_url=f"{REPOS[app]}:{version}",
                    digest=digests[app],
                )
            ).encode()
            answer = httpx.post(
                f"http://127.0.0.1:{port}/hooks/github",
                content=body,
                timeout=15,
                headers={
                    "X-GitHub-Event": "package",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": sign(secret, body),
                    "Content-Type": "application/json",
                },
            )
            print(f"webhook for {app} answered {answer.status_code}: {answer.json()['reason']}", flush=True)
            if answer.status_code != 202:
                raise SystemExit("demo: the webhook did not queue a deploy")
        live: dict[str, float] = {}
        while len(live) < len(versions):
            for app, version in versions.items():
                if app not in live and served(app) == version:
                    live[app] = time.monotonic()
                    print(f"{app} {version} is live {live[app] - pushed:.1f}s after the push", flush=True)
            if time.monotonic() - pushed > 180:
                raise SystemExit(f"demo: {versions} did not all go live within 180 s of the push")
            time.sleep(0.1)
        results = []
        for app, version in versions.items():
            queue = DeployQueue(client, app)
            while not ((job := queue.last_job()) and job.version == version and job.status.final):
                time.sleep(0.2)  # the job finishes: verify window, drain, stop the old colour
            print(f"{app}: job {job.describe()}", flush=True)
            color = (
                (ROOT / ".watcher" / "run" / f"{app}.live").read_text().strip()
            )  # the route file: what is live
            results.append(
                (
                    f"push {app} {version}",
                    {
                        "version": version,
                        "color": color,
                        "total": live[app] - started,
                        "phases": {"push": pushed - started, "push to live": live[app] - pushed},
                    },
                )
            )
        return results
    finally:
        server.terminate()
        server.wait(60)
        if not keep:
            forget_jobs(client)


def forget_jobs(client: redis.Redis) -> None:
    for app in REPOS:
        for key in client.scan_iter(f"watcher:{app}:*"):
            client.delete(key)


def leave_running() -> None:
    """After the demo: a detached `watcher run` (receiver, dashboard, poller, worker) for both
    apps, with a fresh login token, so `make demo KEEP=1` ends with something to look at."""
    import secrets

    from tests.harness.stack import free_port

    KEPT.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    token_file = KEPT / "token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    port = free_port()
    env = {
        **os.environ,
        **ENV,
        "REDIS_URL": REDIS_URL,
        "WATCHER_API_TOKEN_FILE": str(token_file),
        "WEBHOOK_LISTEN": f"127.0.0.1:{port}",
        "POLL_INTERVAL": "30s",
    }
    with open(KEPT / "run.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (KEPT / "run.pid").write_text(f"{server.pid}\n")
    (KEPT / "url").write_text(f"http://127.0.0.1:{port}/\n")
    if not ready(port):
        raise SystemExit(f"demo: the kept `watcher run` did not start; see {KEPT / 'run.log'}")
    say("left running (stop it all with: .venv/bin/python scripts/demo.py --down)")
    print(f"apps:        http://127.0.0.1:{PORT}/ (demo)  http://127.0.0.1:{PORT}/api/ (api)")
    print(f"dashboard:   http://127.0.0.1:{port}/")
    print(f"login token: {token}   (also in {token_file})")
    print(f"watcher run: pid {server.pid}, log {KEPT / 'run.log'}; it polls the registry every 30 s, so")
    print(f"             a push (e.g. of {APP}:v4) deploys by itself")


def stop_kept() -> None:
    """Stop the `watcher run` a --keep demo left (its whole process group) and forget its jobs."""
    import signal

    pid_file = KEPT / "run.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            time.sleep(1)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()
    try:
        forget_jobs(redis.Redis.from_url(REDIS_URL))
    except redis.RedisError:
        pass  # Redis is gone: nothing of ours is left in it to forget


def ready(port: int) -> bool:
    """Whether the `watcher run` on `port` answers /readyz within about 10 s."""
    import httpx

    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


def served(app: str) -> str | None:
    import httpx

    try:
        response = httpx.get(f"http://127.0.0.1:{PORT}{ROUTES[app]}/version", timeout=2)
    except httpx.TransportError:
        return None
    return response.text.strip() if response.is_success else None


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def teardown() -> None:
    stop_kept()
    for project, files in (
        ("api-blue", ["compose.yml", "compose.blue.yml"]),
        ("api-green", ["compose.yml", "compose.green.yml"]),
        ("demo-blue", ["compose.yml", "compose.blue.yml"]),
        ("demo-green", ["compose.yml", "compose.green.yml"]),
        ("demo", ["compose.yml"]),
    ):
        argv = ["docker", "compose", "-p", project, "--project-directory", str(ROOT), "--profile", "*"]
        for name in files:
            argv += ["-f", str(ROOT / name)]
        subprocess.run(
            [*argv, "down", "-v", "-t", "2"],
            cwd=ROOT,
            env={**os.environ, **ENV},
            capture_output=True,
            check=False,
        )
    for app in REPOS:
        for leftover in (ROOT / ".watcher" / app / "state.json", ROOT / ".watcher" / "run" / f"{app}.live"):
            leftover.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack and a `watcher run` with the dashboard running at the end",
    )
    parser.add_argument("--down", action="store_true", help="stop what a --keep demo left running, and exit")
    args = parser.parse_args()
    if args.down:
        teardown()
        print("demo: stopped")
        return 0

    say("building offline images and pushing demo-app v1, v2 and demo-api v1 to the local registry")
    images.build_caddy_image()
    images.build_redis_image()
    for ref in (f"{APP}:v1", f"{APP}:v2", f"{API}:v1"):
        built = images.build_app_image(ref, ref.rsplit(":", 1)[1])
        print(f"pushed {built} {images.push(built)}")

    teardown()  # a previous, interrupted demo
    if not port_is_free(PORT):
        raise SystemExit(f"demo: 127.0.0.1:{PORT} is in use; free it and run again")
    results = []
    try:
        say("deploy demo v1 (first deploy: starts caddy and redis, then the blue colour), then api v1")
        results.append(("demo v1", watcher("deploy", "v1", "--app", "demo")))
        results.append(("api v1", watcher("deploy", "v1", "--app", "api")))

        say(
            "constant load on both apps: keep-alive POSTs at 200/s + 1 s POSTs at 40/s on /, "
            "100/s + 20/s on /api/ (never retried)"
        )
        generators = {}
        for app, fast_rate, slow_rate in (("demo", 200, 40), ("api", 100, 20)):
            url = f"http://127.0.0.1:{PORT}{ROUTES[app]}/cgi-bin/work"
            generators[f"{app} POST {fast_rate}/s keep-alive"] = LoadGenerator(
                url, rate=fast_rate, connections=16
            ).start()
            generators[f"{app} POST 1 s, {slow_rate}/s"] = LoadGenerator(
                f"{url}?sleep=1", rate=slow_rate, connections=2 * slow_rate
            ).start()
        time.sleep(2)
        say("deploy demo v2 under load")
        results.append(("demo v2", watcher("deploy", "v2", "--app", "demo")))
        time.sleep(2)
        say("rollback demo under load (to v1, whose colour was kept stopped)")
        results.append(("rollback", watcher("rollback", "--app", "demo")))
        time.sleep(2)
        say(
            "push-triggered deploys under load: one `watcher run`, push demo v3 and api v2 at once, "
            "GitHub's webhooks arrive"
        )
        results += push_triggered({"demo": "v3", "api": "v2"}, keep=args.keep)
        time.sleep(2)
        loads = [(name, generator.stop()) for name, generator in generators.items()]
    finally:
        if not args.keep:
            say("tearing the demo stack down (use --keep to leave it running)")
            teardown()

    say("results")
    for name, result in results:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in result["phases"].items())
        print(f"{name:14} -> {result['version']} on {result['color']}: {result['total']:.1f}s ({phases})")
    failed = 0
    for name, load in loads:
        failed += load.failed
        print(
            f"{name:30} sent {load.sent:5}  failed {load.failed}  p50 {load.p50():.0f} ms  "
            f"p99 {load.p99():.0f} ms  answered by {dict(load.versions)}"
        )
    print(f"requests sent: {sum(load.sent for _, load in loads)}")
    print(f"failed: {failed}")
    if args.keep:
        leave_running()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
