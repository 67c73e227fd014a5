"""Benchmark: failed requests and latency while the app version is replaced and rolled back, three ways.

    .venv/bin/python benchmarks/swap.py [--deploys 20] [--rollbacks 5] [--json benchmarks/results/swap.json]

One run measures, against the same example stack (a fresh throw-away copy per method, see
tests/harness/stack.py), the same test app and the same two loads, for each method: --deploys
consecutive deploys of new versions (v1, v2, ...), then --rollbacks consecutive rollbacks (each
back to the version before: v19, v20, v19, ... after 20 deploys):

  watcher   `watcher deploy VERSION`: start the idle colour, wait healthy, switch the live-colour
            file, verify, drain, stop the old colour (kept for rollback); `watcher rollback`:
            the retained colour started again, health, switch, verify, drain, stop;
  recreate  recreate in place: the route file stays on blue and
            `docker compose -p <stack>-blue -f compose.yml -f compose.blue.yml up -d web`
            runs with APP_VERSION set to the new tag (compose stops the old container, then
            starts the new one: what Watchtower or a plain `docker compose up -d` does); a
            rollback is the same recreate, back to the previous tag;
  fallback  the old script's way: both colours are health-checked upstreams in Caddy and
            nothing switches: `compose up -d` the idle colour with the new version, wait until
            Docker reports it healthy, `docker compose stop` the old colour and let Caddy's
            health checks / retries find the new one. The route file is never touched (blue
            stays first in the route, green second). A rollback is the same move back: the idle
            colour still holds the previous version, stopped, and compose starts it again.

The app is the test app (tests/harness/app_server.py, images.build_app_image: one asyncio
process, keep-alive, listen backlog 1024), so a failed request is the method's, not the app's.

Loads (tests/harness/load.py: open-loop, keep-alive HTTP/1.1, never retries), reported separately,
started afresh for the deploys and again for the rollbacks of each method:
  fast   POST /cgi-bin/work          200/s, 16 connections
  slow   POST /cgi-bin/work?sleep=1   40/s, 64 connections (each request takes 1 s)

Each method: create stack, `watcher deploy v0` (blue live, route file "blue"); then for the deploys
and again for the rollbacks: start the loads, wait 2 s, run the operations back to back with ~1 s
gaps, wait 2 s, stop the loads; destroy the stack (also on failure or Ctrl-C). Latency is measured
from each request's scheduled send time. The engine is pinged every second
(tests/harness/docker_watch.py): a method during which Docker stopped answering (other tests on a
shared engine restart or freeze dockerd) is void and runs again on a fresh stack, up to --attempts.
Not a test: it prints a table and writes JSON (benchmarks/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker.errors  # noqa: E402

from tests.harness import images  # noqa: E402
from tests.harness.docker_watch import DockerWatch, wait_for_docker  # noqa: E402
from tests.harness.load import LoadGenerator, LoadResult  # noqa: E402
from tests.harness.stack import CADDY_IMAGE, Stack  # noqa: E402

BENCH_REPO = "127.0.0.1:5000/watcher-bench/app"
VERIFY_WINDOW = "2s"
WARMUP_S = 2.0
TAIL_S = 2.0
HEALTHY_TIMEOUT_S = 60.0
SEGMENTS = ("deploys", "rollbacks")

LOADS: dict[str, dict[str, Any]] = {
    "fast": {
        "path": "/cgi-bin/work",
        "rate": 200.0,
        "connections": 16,
        "label": "POST /cgi-bin/work, 200/s, 16 conns",
    },
    "slow": {
        "path": "/cgi-bin/work?sleep=1",
        "rate": 40.0,
        "connections": 64,
        "label": "POST /cgi-bin/work?sleep=1 (1 s), 40/s, 64 conns",
    },
}

METHODS: dict[str, str] = {
    "watcher": f"watcher deploy / watcher rollback (blue-green, explicit switch of the live-colour file; "
    f"verify window {VERIFY_WINDOW})",
    "recreate": "recreate in place: compose up -d web on the blue project with the new (rollback: the "
    "previous) APP_VERSION",
    "fallback": "both colours upstreams, no switch: compose up -d idle colour with the new (rollback: the "
    "previous) version, wait healthy, compose stop old colour",
}


def plural(n: int, kind: str) -> str:
    """`20 deploys`, `1 rollback`."""
    return f"{n} {kind if n != 1 else kind[:-1]}"


def versions(deploys: int) -> list[str]:
    """v0 (the bootstrap) and one new version per deploy: every deploy starts new containers."""
    return [f"v{i}" for i in range(deploys + 1)]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


# -- signals and cleanup ------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def shielded() -> Iterator[None]:
    """Cleanup must finish: ignore SIGINT/SIGTERM meanwhile (children inherit the ignore too)."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# -- the stack -----------------------------------------------------------------------------------


def interrupted(returncode: int) -> None:
    """A child killed by the Ctrl-C that also reached us: stop the whole run, not just this method."""
    if returncode in (130, -signal.SIGINT, 143, -signal.SIGTERM):
        raise KeyboardInterrupt(f"child exited {returncode}")


def compose_color(stack: Stack, color: str, *args: str, version: str | None = None) -> None:
    """`docker compose -p <stack>-<color> -f compose.yml -f compose.<color>.yml ARGS` in the stack dir."""
    env = dict(os.environ)
    env.pop("COMPOSE_PROJECT_NAME", None)
    env["WATCHER_APP"] = stack.name
    if version is not None:
        env["APP_VERSION"] = version
    argv = [
        "docker",
        "compose",
        "-p",
        f"{stack.name}-{color}",
        "--project-directory",
        str(stack.root),
        "-f",
        str(stack.root / "compose.yml"),
        "-f",
        str(stack.root / f"compose.{color}.yml"),
        *args,
    ]
    proc = subprocess.run(argv, cwd=stack.root, env=env, capture_output=True, text=True, timeout=120)
    interrupted(proc.returncode)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


def wait_healthy(stack: Stack, color: str, version: str, timeout: float = HEALTHY_TIMEOUT_S) -> float:
    """Poll Docker until the colour's web container runs `version` and is healthy; return seconds."""
    client = images.client()
    project = f"{stack.name}-{color}"
    started = time.monotonic()
    seen = "no container"
    while time.monotonic() - started < timeout:
        found = client.containers.list(
            all=True,
            filters={"label": [f"com.docker.compose.project={project}", "com.docker.compose.service=web"]},
        )
        for container in found:
            env = dict(e.split("=", 1) for e in container.attrs["Config"].get("Env") or [] if "=" in e)
            state = container.attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            seen = f"{container.name}: {env.get('APP_VERSION')} {state.get('Status')} {health}"
            if env.get("APP_VERSION") == version and state.get("Running") and health == "healthy":
                return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"{project} web did not turn healthy at {version} within {timeout:g}s ({seen})")


def destroy(stack: Stack, attempts: int = 3) -> None:
    """Remove everything of the stack, again while Docker comes and goes (a restarted dockerd would
    leave it all behind): the colour projects first, with every profile active (`web` sits behind
    the `app` profile, and a `compose down` without `--profile` neither removes it nor counts it as
    an orphan), then Stack.destroy, then whatever of the stack is still there."""
    for attempt in range(1, attempts + 1):
        if not wait_for_docker():
            log("   Docker does not answer; cleaning up anyway")
        for color in ("blue", "green"):
            try:
                compose_color(stack, color, "--profile", "*", "down", "--remove-orphans", "-t", "1")
            except Exception as exc:  # noqa: BLE001 - go on: force-remove below
                log(f"   compose down of {stack.name}-{color} failed: {exc}")
        stack.destroy()
        try:
            remove_leftovers(stack)
            return
        except (docker.errors.DockerException, OSError) as exc:
            log(f"   cleaning up {stack.name} failed (attempt {attempt} of {attempts}): {exc}")
    raise RuntimeError(f"{stack.name} could not be cleaned up")


def remove_leftovers(stack: Stack) -> None:
    client = images.client()
    left = [
        c
        for color in ("", "-blue", "-green")
        for c in client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={stack.name}{color}"}
        )
    ]
    for container in left:
        log(f"   force-removing leftover {container.name}")
        container.remove(force=True)
    for network in client.networks.list(names=[f"{stack.name}_web"]):
        log(f"   removing leftover network {network.name}")
        network.remove()
    for volume in client.volumes.list(filters={"label": f"com.docker.compose.project={stack.name}"}):
        log(f"   removing leftover volume {volume.name}")
        volume.remove(force=True)


def bootstrap(stack: Stack, version: str) -> dict[str, Any]:
    """`watcher deploy VERSION` on the empty stack: caddy up, blue live, route file says blue."""
    proc = stack.watcher("deploy", version, "--json", check=True)
    stack.wait_serving()
    route = stack.route_file.read_text().strip()
    if route != "blue":
        raise RuntimeError(f"after the bootstrap deploy the route file says {route!r}, not blue")
    return json.loads(proc.stdout)


# -- the swap methods ----------------------------------------------------------------------------


class Method:
    """A way to replace the app version: `deploy(version)` puts a new version live, `rollback()`
    the one that was live before."""

    name = ""
    caddyfile: str | None = None  # a Caddyfile of the method's own, instead of watcher's

    def __init__(self, stack: Stack, log_file: Path, version: str) -> None:
        self.stack = stack
        self.log_file = log_file
        self.version = version
        self.previous: str | None = None
        self.color = "blue"

    def moved(self, version: str, color: str | None = None) -> None:
        self.previous, self.version = self.version, version
        self.color = color or self.color

    def note(self, text: str) -> None:
        with self.log_file.open("a") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")

    def deploy(self, version: str) -> dict[str, Any]:
        raise NotImplementedError

    def rollback(self) -> dict[str, Any]:
        """The baselines' rollback: the same move as their deploy, back to the previous tag."""
        if self.previous is None:
            raise RuntimeError("nothing to roll back to")
        return self.deploy(self.previous)


class WatcherDeploy(Method):
    name = "watcher"

    def deploy(self, version: str) -> dict[str, Any]:
        return self._run(version, "deploy", version)

    def rollback(self) -> dict[str, Any]:
        if self.previous is None:
            raise RuntimeError("nothing to roll back to")
        return self._run(self.previous, "rollback")

    def _run(self, expected: str, *args: str) -> dict[str, Any]:
        """`watcher ARGS --json`; it must put `expected` live."""
        command = " ".join(args)
        proc = self.stack.watcher(*args, "--json")
        interrupted(proc.returncode)
        self.note(f"### watcher {command} (exit {proc.returncode}) at {now_iso()}\n{proc.stderr}")
        if proc.returncode != 0:
            raise RuntimeError(f"watcher {command} exited {proc.returncode}:\n{proc.stderr}")
        result = json.loads(proc.stdout)
        if result["version"] != expected:
            raise RuntimeError(f"watcher {command} put {result['version']} live, not {expected}")
        phases = result["phases"]
        overhead = result["total"] - phases.get("health", 0.0) - phases.get("drain", 0.0)
        self.moved(expected, result["color"])
        return {
            "version": expected,
            "color": self.color,
            "phases": phases,
            "total": result["total"],
            "drained": result["drained"],
            "overhead_s": round(overhead, 3),
        }


class RecreateInPlace(Method):
    name = "recreate"

    def deploy(self, version: str) -> dict[str, Any]:
        t0 = time.monotonic()
        compose_color(self.stack, "blue", "up", "-d", "web", version=version)
        up_s = time.monotonic() - t0
        healthy_s = wait_healthy(self.stack, "blue", version)
        self.moved(version)
        return {
            "version": version,
            "color": "blue",
            "compose_up_s": round(up_s, 3),
            "then_healthy_s": round(healthy_s, 3),
        }


#: The old script's routing, for the fallback method only: both colours as upstreams of each route,
#: `lb_policy first` with active health checks (watcher's own Caddyfile proxies to one colour).
#: The colour header lets the bootstrap `watcher deploy` verify; it names the route, not the answerer.
FALLBACK_CADDYFILE = """{
\tadmin unix//run/watcher/caddy-admin.sock
}
(fallback_policy) {
\tlb_policy first
\tlb_try_duration 5s
\tlb_try_interval 100ms
\thealth_uri /healthz
\thealth_interval 1s
\thealth_timeout 3s
\thealth_passes 1
\thealth_fails 3
}
:80 {
\t@green vars {file./run/watcher/{app}.live} green
\thandle @green {
\t\treverse_proxy {app}-web-green:8080 {app}-web-blue:8080 {
\t\t\timport fallback_policy
\t\t\theader_down X-Watcher-Color green
\t\t}
\t}
\thandle {
\t\treverse_proxy {app}-web-blue:8080 {app}-web-green:8080 {
\t\t\timport fallback_policy
\t\t\theader_down X-Watcher-Color blue
\t\t}
\t}
}
"""


class FallbackNoSwitch(Method):
    name = "fallback"
    caddyfile = FALLBACK_CADDYFILE

    def deploy(self, version: str) -> dict[str, Any]:
        idle = "green" if self.color == "blue" else "blue"
        t0 = time.monotonic()
        compose_color(self.stack, idle, "up", "-d", "web", version=version)
        up_s = time.monotonic() - t0
        healthy_s = wait_healthy(self.stack, idle, version)
        t1 = time.monotonic()
        compose_color(self.stack, self.color, "stop", "web")
        stop_s = time.monotonic() - t1
        self.moved(version, idle)
        return {
            "version": version,
            "color": idle,
            "compose_up_s": round(up_s, 3),
            "healthy_s": round(healthy_s, 3),
            "stop_old_s": round(stop_s, 3),
        }


METHOD_CLASSES: dict[str, type[Method]] = {
    m.name: m for m in (WatcherDeploy, RecreateInPlace, FallbackNoSwitch)
}


# -- one method, start to end --------------------------------------------------------------------


def failed_counts(loads: dict[str, LoadGenerator]) -> dict[str, tuple[int, dict[str, int]]]:
    out = {}
    for name, gen in loads.items():
        snap = gen.snapshot()
        out[name] = (snap.failed, dict(snap.errors))
    return out


def diff_failed(
    before: dict[str, tuple[int, dict[str, int]]], after: dict[str, tuple[int, dict[str, int]]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (count, errors) in after.items():
        b_count, b_errors = before[name]
        delta = {k: v - b_errors.get(k, 0) for k, v in errors.items() if v - b_errors.get(k, 0)}
        out[name] = {"failed": count - b_count, "errors": delta}
    return out


class TimedLoad(LoadGenerator):
    """LoadGenerator that also keeps when each failed request was sent and ended (wall clock), to
    line failures up with Caddy's and the apps' logs. Counting is LoadGenerator's own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: list[dict[str, Any]] = []

    def _record(
        self, scheduled: float, now: float, status: int, body: bytes, reason: str | None, color: str = ""
    ) -> None:
        if reason is None and status >= 400:
            reason = f"status {status}"
        if reason is not None:
            wall = time.time() - (time.monotonic() - now)  # loop.time() is time.monotonic()
            self.failures.append(
                {
                    "reason": reason,
                    "ended_at": iso(wall),
                    "scheduled_at": iso(wall - (now - scheduled)),
                    "latency_ms": round((now - scheduled) * 1000, 1),
                }
            )
        super()._record(scheduled, now, status, body, reason, color)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


class LoadAverage:
    """Samples the host's 1-minute load average every 2 s: a busy host makes every method look worse
    (slower starts and health checks, longer latencies), so a run's figures carry their host's load."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(2.0)

    def __enter__(self) -> LoadAverage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": round(statistics.fmean(s), 2), "max": round(max(s), 2)}


@contextmanager
def running_loads(stack: Stack) -> Iterator[dict[str, TimedLoad]]:
    """Both loads on the stack's Caddy; stopped on the way out whatever happened (stop() is
    idempotent, so a caller that stopped them for their results is not stopped twice)."""
    loads: dict[str, TimedLoad] = {}
    try:
        for name, spec in LOADS.items():
            loads[name] = TimedLoad(
                stack.url + spec["path"], rate=spec["rate"], connections=spec["connections"]
            )
            loads[name].start()
        yield loads
    finally:
        with shielded():
            for gen in loads.values():
                try:
                    gen.stop()
                except Exception as exc:  # noqa: BLE001 - cleanup goes on
                    log(f"   stopping a load failed: {exc}")


def load_summary(loads: dict[str, TimedLoad], results: dict[str, LoadResult]) -> dict[str, Any]:
    return {
        k: r.as_dict() | {"label": LOADS[k]["label"], "failures": loads[k].failures}
        for k, r in results.items()
    }


def run_baseline(stack: Stack, seconds: float) -> dict[str, Any]:
    """Both loads with no swap at all: what the machine gives."""
    log(f"   baseline: both loads for {seconds:g}s, no swap")
    with running_loads(stack) as loads:
        time.sleep(seconds)
        return load_summary(loads, {k: g.stop() for k, g in loads.items()})


def run_segment(
    stack: Stack, ops: list[Callable[[], dict[str, Any]]], kind: str, gap: float, record: dict[str, Any]
) -> None:
    """`ops` back to back under fresh loads, into `record`: each op's failures (from its start to the
    next op's), each load's summary with every failed request's time, and watcher's phase figures.
    An op that fails ends the segment (recorded as `error`); what was measured until then is kept."""
    record["ops"] = []
    with running_loads(stack) as loads:
        record["load_started_at"] = now_iso()
        time.sleep(WARMUP_S)
        before = failed_counts(loads)
        if any(count for count, _ in before.values()):
            log(f"   warning: failures before the first {kind[:-1]}: {before}")
        record["failed_before_first"] = diff_failed({k: (0, {}) for k in before}, before)
        for i, op in enumerate(ops, 1):
            started_at, t0 = now_iso(), time.monotonic()
            try:
                row = op()
            except Exception as exc:  # noqa: BLE001 - keep the loads' figures up to here
                record["error"] = f"{kind[:-1]} {i}: {type(exc).__name__}: {exc}"
                log(f"   {record['error']}")
                break
            row.update(
                i=i, started_at=started_at, ended_at=now_iso(), seconds=round(time.monotonic() - t0, 3)
            )
            record["ops"].append(row)
            time.sleep(gap)
            after = failed_counts(loads)
            row["failed"] = diff_failed(before, after)
            before = after
            extra = f", overhead {row['overhead_s']:.2f}s" if "overhead_s" in row else ""
            fails = ", ".join(f"{k} {v['failed']}" for k, v in row["failed"].items())
            log(
                f"   {kind[:-1]} {i:2d}: {row['version']} on {row['color']} in {row['seconds']:.1f}s{extra}; "
                f"failed: {fails}"
            )
        time.sleep(max(0.0, TAIL_S - gap))
        results = {k: g.stop() for k, g in loads.items()}
        record["failed_after_last"] = diff_failed(
            before, {k: (r.failed, dict(r.errors)) for k, r in results.items()}
        )
        record["loads"] = load_summary(loads, results)
    phased = [row for row in record["ops"] if "phases" in row]
    if phased:
        record["watcher"] = watcher_figures(phased)


def watcher_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """watcher's own time per operation: total - health - drain, with and without the verify window."""

    def mean_max(values: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.fmean(values), 3), "max": round(max(values), 3)}

    phase_names = list(dict.fromkeys(p for row in rows for p in row["phases"]))
    return {
        "verify_window": VERIFY_WINDOW,
        "overhead_s": mean_max([row["overhead_s"] for row in rows]),
        "overhead_without_verify_s": mean_max(
            [row["overhead_s"] - row["phases"].get("verify", 0.0) for row in rows]
        ),
        "total_s": mean_max([row["total"] for row in rows]),
        "phases_mean_s": {
            p: round(statistics.fmean(row["phases"].get(p, 0.0) for row in rows), 3) for p in phase_names
        },
        "phases_max_s": {p: round(max(row["phases"].get(p, 0.0) for row in rows), 3) for p in phase_names},
    }


def save_logs(stack: Stack, name: str, results_dir: Path) -> None:
    """Caddy's and the apps' logs beside the JSON, to line failures up with them."""
    logs = subprocess.run(
        ["docker", "logs", "-t", f"{stack.name}-caddy-1"], capture_output=True, text=True, timeout=30
    )
    (results_dir / f"swap-{name}-caddy.log").write_text(logs.stdout + logs.stderr)
    with (results_dir / f"swap-{name}-apps.log").open("w") as out:
        for color in ("blue", "green"):
            logs = subprocess.run(
                ["docker", "logs", "-t", f"{stack.name}-{color}-web-1"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            out.write(f"### {stack.name}-{color}-web-1\n{logs.stdout}{logs.stderr}")


def slow_start_allowed(stack: Stack) -> None:
    """A start period of 30 s instead of the test stacks' 5 s: on a loaded host the app may take
    longer than 5 s + 3 checks to listen, and Docker would call it unhealthy (failing the deploy for
    every method). A passing check ends the start period, so a quick start costs nothing."""
    env = stack.root / ".env"
    env.write_text(env.read_text().replace("APP_HEALTH_START_PERIOD=5s", "APP_HEALTH_START_PERIOD=30s"))


def run_method(
    name: str,
    tags: list[str],
    rollbacks: int,
    gap: float,
    results_dir: Path,
    watch: DockerWatch,
    baseline: float = 0.0,
) -> dict[str, Any]:
    """One method on a fresh stack; a failure is recorded as `error`, with what was measured before
    it; `void` lists the Docker outages during it (its figures then measure the engine's absence)."""
    log(f"== {name}: {METHODS[name]}")
    t_method, began = time.monotonic(), time.time()
    stack: Stack | None = None
    record: dict[str, Any] = {"description": METHODS[name], "segments": {}}
    try:
        stack = Stack.create(image=BENCH_REPO, verify_window=VERIFY_WINDOW)
        slow_start_allowed(stack)
        if METHOD_CLASSES[name].caddyfile:
            (stack.root / "Caddyfile").write_text(
                (METHOD_CLASSES[name].caddyfile or "").replace("{app}", stack.name)
            )
        record["stack"] = stack.name
        log(f"   stack {stack.name} on {stack.url}; bootstrap: watcher deploy {tags[0]}")
        record["bootstrap"] = bootstrap(stack, tags[0])
        watcher_log = results_dir / f"swap-{name}-watcher.log"  # progress of each `watcher deploy`/`rollback`
        watcher_log.unlink(missing_ok=True)
        method = METHOD_CLASSES[name](stack, watcher_log, tags[0])
        if baseline > 0:
            record["baseline"] = run_baseline(stack, baseline)
        plan = {
            "deploys": [functools.partial(method.deploy, tag) for tag in tags[1:]],
            "rollbacks": [method.rollback] * rollbacks,
        }
        for kind, ops in plan.items():
            if not ops:
                continue
            log(f"   {plural(len(ops), kind)}")
            segment = record["segments"][kind] = {"planned": len(ops)}
            run_segment(stack, ops, kind, gap, segment)
            if "error" in segment:
                record["error"] = segment["error"]
                break
    except Exception as exc:  # noqa: BLE001 - keep what was measured; the stack goes below
        record["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{name} failed: {record['error']}")
    finally:
        outages = watch.outages(began, time.time())
        if outages:
            record["void"] = outages
        with shielded():
            if stack is not None:
                try:
                    save_logs(stack, name, results_dir)
                except Exception as exc:  # noqa: BLE001
                    log(f"   saving logs failed: {exc}")
                log(f"   destroying stack {stack.name}")
                try:
                    destroy(stack)
                except Exception as exc:  # noqa: BLE001
                    log(f"   destroying {stack.name} failed: {exc}; remove its containers by hand")
    record["seconds"] = round(time.monotonic() - t_method, 1)
    return record


# -- report --------------------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def ratio(failed: int, base: int) -> str:
    if base == 0:
        return "-" if failed == 0 else "inf (watcher 0)"
    return f"{failed / base:.1f}x"


def table_row(name: str, ops: str, load: str, r: dict[str, Any], vs: str) -> dict[str, Any]:
    return {
        "method": name,
        "ops": ops,
        "load": load,
        "requests": r["sent"],
        "failed": r["failed"],
        "failed_pct": round(100.0 * r["failed"] / r["sent"], 3) if r["sent"] else None,
        "errors": r["errors"],
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "max_ms": r["max_ms"],
        "vs_watcher": vs,
    }


def table(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per load: the no-swap baseline, then each method's deploys, then each method's rollbacks."""
    methods = record["methods"]
    baseline = next((m["baseline"] for m in methods.values() if "baseline" in m), None)
    rows = []
    for load in LOADS:
        if baseline is not None:
            rows.append(table_row("no swap", "none", load, baseline[load], ""))
        for kind in SEGMENTS:
            base = methods.get("watcher", {}).get("segments", {}).get(kind, {}).get("loads", {}).get(load, {})
            for name, m in methods.items():
                segment = m.get("segments", {}).get(kind)
                if segment is None or "loads" not in segment:
                    continue
                r = segment["loads"][load]
                vs = "" if name == "watcher" else ratio(r["failed"], base["failed"]) if base else "n/a"
                ops = plural(len(segment["ops"]), kind) + (
                    f" (of {segment['planned']}; failed)" if "error" in segment else ""
                )
                ops += " (void: Docker away)" if "void" in m else ""
                rows.append(table_row(name, ops, load, r, vs))
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("method", "ops", "load", "requests", "failed", "p50 ms", "p99 ms", "failed vs watcher")
    body = [
        (
            r["method"],
            r["ops"],
            r["load"],
            str(r["requests"]),
            f"{r['failed']} ({r['failed_pct']:.2f}%)" if r["failed_pct"] is not None else str(r["failed"]),
            fmt_ms(r["p50_ms"]),
            fmt_ms(r["p99_ms"]),
            r["vs_watcher"],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(head))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(line(b))


def print_report(record: dict[str, Any], json_path: Path) -> None:
    print()
    print(
        f"swap benchmark, {record['deploys_per_method']} deploys and {record['rollbacks_per_method']} rollbacks "
        f"per method, {os.cpu_count()} CPUs, {record['started_at']}"
    )
    print(f"watcher configured with verify window {VERIFY_WINDOW} (health interval 1s)")
    for k, v in LOADS.items():
        print(f"  load {k}: {v['label']}")
    print()
    print_table(record["table"])
    for kind in SEGMENTS:
        w = record["methods"].get("watcher", {}).get("segments", {}).get(kind, {}).get("watcher")
        if not w:
            continue
        print()
        print(
            f"watcher {kind}: own overhead per operation (total - health - drain): mean "
            f"{w['overhead_s']['mean']:.2f}s, max {w['overhead_s']['max']:.2f}s; total mean {w['total_s']['mean']:.2f}s"
        )
        print(
            f"  without the verify phase (its {VERIFY_WINDOW} window is configured): "
            f"mean {w['overhead_without_verify_s']['mean']:.2f}s, max {w['overhead_without_verify_s']['max']:.2f}s"
        )
        print("  mean phase times: " + ", ".join(f"{k} {v:.2f}s" for k, v in w["phases_mean_s"].items()))
    for name, m in record["methods"].items():
        if "error" in m:
            print(f"{name}: FAILED: {m['error']}")
        if m.get("voided_attempts"):
            print(
                f"{name}: {len(m['voided_attempts'])} earlier attempt(s) void: Docker did not answer during them"
            )
        hl = m.get("host_load_1min", {})
        print(
            f"{name}: {m.get('seconds', 0):.0f}s including stack set-up and tear-down; host 1-min load average "
            f"mean {hl.get('mean', float('nan')):.1f}, max {hl.get('max', float('nan')):.1f}"
        )
    print(f"total runtime {record['runtime_s']:.0f}s; results in {json_path}")


def push_images(tags: list[str]) -> dict[str, str]:
    """Build the test app at every tag and push it (both skipped or cheap when up to date)."""
    pushed = {}
    for tag in tags:
        ref = images.build_app_image(f"{BENCH_REPO}:{tag}", tag, healthy=True, shutdown="graceful")
        pushed[ref] = images.push(ref)
    return pushed


def run_attempts(
    name: str, tags: list[str], args: argparse.Namespace, watch: DockerWatch, baseline: float
) -> dict[str, Any]:
    """The method, again on a fresh stack while Docker went away during it (up to --attempts):
    on a shared engine, other tests restart or freeze dockerd."""
    voided: list[dict[str, Any]] = []
    for attempt in range(1, args.attempts + 1):
        with LoadAverage() as host_load:
            record = run_method(name, tags, args.rollbacks, args.gap, args.json.parent, watch, baseline)
        record["host_load_1min"] = host_load.summary()
        if "void" not in record:
            break
        log(
            f"{name}: Docker did not answer for {sum(o['seconds'] for o in record['void']):.0f}s during attempt "
            f"{attempt} of {args.attempts}: its figures are void"
        )
        voided.append({k: record.get(k) for k in ("void", "error", "seconds")})
    record["voided_attempts"] = voided
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deploys", type=int, default=20, help="consecutive deploys per method (default 20)")
    p.add_argument(
        "--rollbacks",
        type=int,
        default=5,
        help="consecutive rollbacks per method after the deploys (default 5; 0: none)",
    )
    p.add_argument("--gap", type=float, default=1.0, help="seconds between operations (default 1)")
    p.add_argument(
        "--baseline",
        type=float,
        default=10.0,
        help="seconds of both loads with no swap, on the first stack, before its deploys (default 10; "
        "0: none): what the machine gives without any swap",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / "swap.json",
        help="where to write the results (default benchmarks/results/swap.json)",
    )
    p.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="runs of a method while Docker goes away during it (default 3; see DockerWatch)",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all)",
    )
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if (
        args.deploys < 1
        or args.rollbacks < 0
        or args.attempts < 1
        or not methods
        or any(m not in METHODS for m in methods)
    ):
        p.error(
            f"--deploys and --attempts must be >= 1, --rollbacks >= 0 and --methods a subset of {','.join(METHODS)}"
        )

    signal.signal(signal.SIGTERM, _raise_interrupt)
    started, t0 = now_iso(), time.monotonic()
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        log(
            f"warning: the host is busy (1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs); "
            "figures will be worse for every method, and even watcher's can show failed requests"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tags = versions(args.deploys)

    log(f"building and pushing the test images {tags[0]}..{tags[-1]} (skipped when up to date)")
    images.build_caddy_image(CADDY_IMAGE)
    record: dict[str, Any] = {
        "started_at": started,
        "host": {"cpus": os.cpu_count()},
        "deploys_per_method": args.deploys,
        "rollbacks_per_method": args.rollbacks,
        "gap_s": args.gap,
        "warmup_s": WARMUP_S,
        "tail_s": TAIL_S,
        "watcher_settings": {
            "verify_window": VERIFY_WINDOW,
            "health_interval": "1s",
            "drain_timeout": "30s",
            "retain_old": True,
            "app_health_interval": "1s",
            "app_health_start_period": "30s",
        },
        "app": "tests/harness/app_server.py (images.build_app_image)",
        "images": push_images(tags),
        "loads": {k: v["label"] for k, v in LOADS.items()},
        "methods": {},
    }
    status = 0
    try:
        with DockerWatch() as watch:
            for i, name in enumerate(methods):
                record["methods"][name] = run_attempts(
                    name, tags, args, watch, args.baseline if i == 0 else 0.0
                )
                status = (
                    1 if "error" in record["methods"][name] or "void" in record["methods"][name] else status
                )
    except KeyboardInterrupt:
        log("interrupted; stacks were destroyed, partial results follow")
        status = 130
    record["runtime_s"] = round(time.monotonic() - t0, 1)
    record["table"] = table(record)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print_report(record, args.json)
    return status


if __name__ == "__main__":
    sys.exit(main())
