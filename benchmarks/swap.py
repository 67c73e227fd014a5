"""Benchmark: failed requests and latency while the app version is replaced, three ways.

    .venv/bin/python benchmarks/swap.py [--swaps 10] [--json benchmarks/results/swap.json]

One run measures, against the same example stack (a fresh throw-away copy per method, see
tests/harness/stack.py) and the same two loads:

  watcher   `watcher deploy VERSION`, alternating two versions: start the idle colour, wait
            healthy, switch the live-colour file, verify, drain, stop the old colour;
  recreate  recreate in place: the route file stays on blue and
            `docker compose -p <stack>-blue -f compose.yml -f compose.blue.yml up -d web`
            runs with APP_VERSION set to the new tag (compose stops the old container, then
            starts the new one: what Watchtower or a plain `docker compose up -d` does);
  fallback  the old script's way: both colours are health-checked upstreams in Caddy and
            nothing switches: `compose up -d` the idle colour with the new version, wait until
            Docker reports it healthy, `docker compose stop` the old colour and let Caddy's
            health checks / retries find the new one. The route file is never touched (blue
            stays first in the route, green second).

Loads (tests/harness/load.py: open-loop, keep-alive HTTP/1.1, never retries), both running for
the whole swap sequence of a method and reported separately:
  fast   POST /cgi-bin/work          200/s, 16 connections
  slow   POST /cgi-bin/work?sleep=1   40/s, 64 connections (each request takes 1 s)

Each method: create stack, `watcher deploy a` (blue live, route file "blue"), start the loads,
wait 2 s, run N swaps back to back with ~1 s gaps, wait 2 s, stop the loads, destroy the stack
(also on failure or Ctrl-C). Latency is measured from each request's scheduled send time.
Not a test: it prints a table and writes JSON (benchmarks/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import images  # noqa: E402
from tests.harness.load import LoadGenerator, LoadResult  # noqa: E402
from tests.harness.stack import CADDY_IMAGE, Stack  # noqa: E402

BENCH_REPO = "127.0.0.1:5000/watcher-bench/app"
VERSIONS = ("a", "b")  # the bootstrap deploys VERSIONS[0]; swaps alternate b, a, b, ...
VERIFY_WINDOW = "2s"
WARMUP_S = 2.0
TAIL_S = 2.0
HEALTHY_TIMEOUT_S = 60.0

LOADS: dict[str, dict[str, Any]] = {
    "fast": {"path": "/cgi-bin/work", "rate": 200.0, "connections": 16,
             "label": "POST /cgi-bin/work, 200/s, 16 conns"},
    "slow": {"path": "/cgi-bin/work?sleep=1", "rate": 40.0, "connections": 64,
             "label": "POST /cgi-bin/work?sleep=1 (1 s), 40/s, 64 conns"},
}

METHODS: dict[str, str] = {
    "watcher": f"watcher deploy (blue-green, explicit switch of the live-colour file; verify window "
               f"{VERIFY_WINDOW})",
    "recreate": "recreate in place: compose up -d web on the blue project with the new APP_VERSION",
    "fallback": "both colours upstreams, no switch: compose up -d idle colour, wait healthy, "
                "compose stop old colour",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


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
    argv = ["docker", "compose", "-p", f"{stack.name}-{color}", "--project-directory", str(stack.root),
            "-f", str(stack.root / "compose.yml"), "-f", str(stack.root / f"compose.{color}.yml"), *args]
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
        found = client.containers.list(all=True, filters={"label": [f"com.docker.compose.project={project}",
                                                                     "com.docker.compose.service=web"]})
        for container in found:
            env = dict(e.split("=", 1) for e in container.attrs["Config"].get("Env") or [] if "=" in e)
            state = container.attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            seen = f"{container.name}: {env.get('APP_VERSION')} {state.get('Status')} {health}"
            if env.get("APP_VERSION") == version and state.get("Running") and health == "healthy":
                return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"{project} web did not turn healthy at {version} within {timeout:g}s ({seen})")


def destroy(stack: Stack) -> None:
    """Remove everything of the stack. The colour projects go first, with every profile active:
    `web` sits behind the `app` profile, and a `compose down` without `--profile` neither removes
    it nor counts it as an orphan (Stack.destroy alone leaves the colour containers and so the
    network behind). Then Stack.destroy; then a check that nothing of the stack is left."""
    for color in ("blue", "green"):
        try:
            compose_color(stack, color, "--profile", "*", "down", "--remove-orphans", "-t", "1")
        except Exception as exc:  # noqa: BLE001 - go on: force-remove below
            log(f"   compose down of {stack.name}-{color} failed: {exc}")
    stack.destroy()
    client = images.client()
    left = [c for color in ("", "-blue", "-green") for c in client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={stack.name}{color}"})]
    for container in left:
        log(f"   force-removing leftover {container.name}")
        container.remove(force=True)
    for network in client.networks.list(names=[f"{stack.name}_web"]):
        log(f"   removing leftover network {network.name}")
        network.remove()


def bootstrap(stack: Stack) -> dict[str, Any]:
    """`watcher deploy a` on the empty stack: caddy up, blue live at a, route file says blue."""
    proc = stack.watcher("deploy", VERSIONS[0], "--json", check=True)
    stack.wait_serving()
    route = stack.route_file.read_text().strip()
    if route != "blue":
        raise RuntimeError(f"after the bootstrap deploy the route file says {route!r}, not blue")
    return json.loads(proc.stdout)


# -- the swap methods ----------------------------------------------------------------------------


class Method:
    """A way to replace the app version; `swap(i)` puts the i-th next version live."""

    name = ""
    caddyfile: str | None = None   # a Caddyfile of the method's own, instead of watcher's

    def __init__(self, stack: Stack, log_file: Path) -> None:
        self.stack = stack
        self.log_file = log_file
        self.version = VERSIONS[0]
        self.color = "blue"

    def next_version(self) -> str:
        return VERSIONS[1] if self.version == VERSIONS[0] else VERSIONS[0]

    def note(self, text: str) -> None:
        with self.log_file.open("a") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")

    def swap(self) -> dict[str, Any]:
        raise NotImplementedError


class WatcherDeploy(Method):
    name = "watcher"

    def swap(self) -> dict[str, Any]:
        version = self.next_version()
        proc = self.stack.watcher("deploy", version, "--json")
        interrupted(proc.returncode)
        self.note(f"### watcher deploy {version} (exit {proc.returncode}) at {now_iso()}\n{proc.stderr}")
        if proc.returncode != 0:
            raise RuntimeError(f"watcher deploy {version} exited {proc.returncode}:\n{proc.stderr}")
        result = json.loads(proc.stdout)
        phases = result["phases"]
        overhead = result["total"] - phases.get("health", 0.0) - phases.get("drain", 0.0)
        self.version, self.color = version, result["color"]
        return {"version": version, "color": self.color, "phases": phases, "total": result["total"],
                "drained": result["drained"], "overhead_s": round(overhead, 3)}


class RecreateInPlace(Method):
    name = "recreate"

    def swap(self) -> dict[str, Any]:
        version = self.next_version()
        t0 = time.monotonic()
        compose_color(self.stack, "blue", "up", "-d", "web", version=version)
        up_s = time.monotonic() - t0
        healthy_s = wait_healthy(self.stack, "blue", version)
        self.version = version
        return {"version": version, "color": "blue", "compose_up_s": round(up_s, 3),
                "then_healthy_s": round(healthy_s, 3)}


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

    def swap(self) -> dict[str, Any]:
        version = self.next_version()
        idle = "green" if self.color == "blue" else "blue"
        t0 = time.monotonic()
        compose_color(self.stack, idle, "up", "-d", "web", version=version)
        up_s = time.monotonic() - t0
        healthy_s = wait_healthy(self.stack, idle, version)
        t1 = time.monotonic()
        compose_color(self.stack, self.color, "stop", "web")
        stop_s = time.monotonic() - t1
        self.version, self.color = version, idle
        return {"version": version, "color": idle, "compose_up_s": round(up_s, 3),
                "healthy_s": round(healthy_s, 3), "stop_old_s": round(stop_s, 3)}


METHOD_CLASSES: dict[str, type[Method]] = {m.name: m for m in (WatcherDeploy, RecreateInPlace, FallbackNoSwitch)}


# -- one method, start to end --------------------------------------------------------------------


def failed_counts(loads: dict[str, LoadGenerator]) -> dict[str, tuple[int, dict[str, int]]]:
    out = {}
    for name, gen in loads.items():
        snap = gen.snapshot()
        out[name] = (snap.failed, dict(snap.errors))
    return out


def diff_failed(before: dict[str, tuple[int, dict[str, int]]],
                after: dict[str, tuple[int, dict[str, int]]]) -> dict[str, Any]:
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

    def _record(self, scheduled: float, now: float, status: int, body: bytes, reason: str | None,
                color: str = "") -> None:
        if reason is None and status >= 400:
            reason = f"status {status}"
        if reason is not None:
            wall = time.time() - (time.monotonic() - now)  # loop.time() is time.monotonic()
            self.failures.append({"reason": reason, "ended_at": iso(wall),
                                  "scheduled_at": iso(wall - (now - scheduled)),
                                  "latency_ms": round((now - scheduled) * 1000, 1)})
        super()._record(scheduled, now, status, body, reason, color)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds")


class LoadAverage:
    """Samples the host's 1-minute load average every 2 s: a busy host makes every method look worse
    (the test app is fork-per-connection busybox httpd with a listen backlog of 9; starved of CPU it
    drops SYNs and resets connections whatever the swap method)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(2.0)

    def __enter__(self) -> "LoadAverage":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": round(statistics.fmean(s), 2), "max": round(max(s), 2)}


def start_loads(stack: Stack) -> dict[str, LoadGenerator]:
    return {load: TimedLoad(stack.url + spec["path"], rate=spec["rate"], connections=spec["connections"]).start()
            for load, spec in LOADS.items()}


def run_method(name: str, swaps: int, gap: float, results_dir: Path, baseline: float = 0.0) -> dict[str, Any]:
    log(f"== {name}: {METHODS[name]}")
    t_method = time.monotonic()
    stack: Stack | None = None
    loads: dict[str, LoadGenerator] = {}
    record: dict[str, Any] = {"description": METHODS[name], "swaps": []}
    try:
        stack = Stack.create(image=BENCH_REPO, verify_window=VERIFY_WINDOW)
        if METHOD_CLASSES[name].caddyfile:
            (stack.root / "Caddyfile").write_text((METHOD_CLASSES[name].caddyfile or "").replace("{app}", stack.name))
        record["stack"] = stack.name
        log(f"   stack {stack.name} on {stack.url}; bootstrap: watcher deploy {VERSIONS[0]}")
        record["bootstrap"] = bootstrap(stack)
        watcher_log = results_dir / f"swap-{name}-watcher.log"  # progress of each `watcher deploy`
        watcher_log.unlink(missing_ok=True)
        method = METHOD_CLASSES[name](stack, watcher_log)

        if baseline > 0:
            log(f"   baseline: both loads for {baseline:g}s, no swap")
            loads = start_loads(stack)
            time.sleep(baseline)
            record["baseline"] = {k: g.stop().as_dict() | {"label": LOADS[k]["label"]} for k, g in loads.items()}
        loads = start_loads(stack)
        record["load_started_at"] = now_iso()
        time.sleep(WARMUP_S)
        before = failed_counts(loads)
        if any(count for count, _ in before.values()):
            log(f"   warning: failures before the first swap: {before}")
        record["failed_before_first_swap"] = diff_failed({k: (0, {}) for k in before}, before)

        swap_rows = record["swaps"]
        for i in range(1, swaps + 1):
            started_at, t0 = now_iso(), time.monotonic()
            row = method.swap()
            row.update(i=i, started_at=started_at, ended_at=now_iso(), seconds=round(time.monotonic() - t0, 3))
            swap_rows.append(row)
            time.sleep(gap)
            after = failed_counts(loads)  # failures from this swap's start to the next one's
            row["failed"] = diff_failed(before, after)
            before = after
            extra = f", overhead {row['overhead_s']:.2f}s" if "overhead_s" in row else ""
            fails = ", ".join(f"{k} {v['failed']}" for k, v in row["failed"].items())
            log(f"   swap {i:2d}: {row['version']} on {row['color']} in {row['seconds']:.1f}s{extra}; "
                f"failed: {fails}")
        time.sleep(max(0.0, TAIL_S - gap))
        results: dict[str, LoadResult] = {k: g.stop() for k, g in loads.items()}
        tail = diff_failed(before, {k: (r.failed, dict(r.errors)) for k, r in results.items()})
        record["failed_after_last_swap"] = tail  # from the last swap's gap to the end of the load
        record["loads"] = {k: r.as_dict() for k, r in results.items()}
        for k, r in results.items():
            record["loads"][k]["label"] = LOADS[k]["label"]
            record["loads"][k]["failures"] = getattr(loads[k], "failures", [])
        if name == "watcher":
            overheads = [row["overhead_s"] for row in swap_rows]
            beyond_verify = [row["overhead_s"] - row["phases"].get("verify", 0.0) for row in swap_rows]
            totals = [row["total"] for row in swap_rows]
            phase_names = list(dict.fromkeys(p for row in swap_rows for p in row["phases"]))
            record["watcher"] = {
                "verify_window": VERIFY_WINDOW,
                "overhead_s": {"mean": round(statistics.fmean(overheads), 3), "max": round(max(overheads), 3)},
                "overhead_without_verify_s": {"mean": round(statistics.fmean(beyond_verify), 3),
                                              "max": round(max(beyond_verify), 3)},
                "total_s": {"mean": round(statistics.fmean(totals), 3), "max": round(max(totals), 3)},
                "phases_mean_s": {p: round(statistics.fmean(row["phases"].get(p, 0.0) for row in swap_rows), 3)
                                  for p in phase_names},
                "phases_max_s": {p: round(max(row["phases"].get(p, 0.0) for row in swap_rows), 3)
                                 for p in phase_names},
            }
    finally:
        with shielded():
            for gen in loads.values():
                try:
                    gen.stop()
                except Exception as exc:  # noqa: BLE001 - cleanup goes on
                    log(f"   stopping a load failed: {exc}")
            if stack is not None:
                try:
                    logs = subprocess.run(["docker", "logs", "-t", f"{stack.name}-caddy-1"],
                                          capture_output=True, text=True, timeout=30)
                    (results_dir / f"swap-{name}-caddy.log").write_text(logs.stdout + logs.stderr)
                    with (results_dir / f"swap-{name}-apps.log").open("w") as out:
                        for color in ("blue", "green"):
                            logs = subprocess.run(["docker", "logs", "-t", f"{stack.name}-{color}-web-1"],
                                                  capture_output=True, text=True, timeout=30)
                            out.write(f"### {stack.name}-{color}-web-1\n{logs.stdout}{logs.stderr}")
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


def table(record: dict[str, Any]) -> list[dict[str, Any]]:
    methods = dict(record["methods"])
    for m in record["methods"].values():
        if "baseline" in m:
            methods = {"no swap": {"loads": m["baseline"]}, **methods}
    rows = []
    for load in LOADS:
        base = methods.get("watcher", {}).get("loads", {}).get(load, {}).get("failed")
        for name, m in methods.items():
            if "loads" not in m:
                continue
            r = m["loads"][load]
            rows.append({"method": name, "load": load, "requests": r["sent"], "failed": r["failed"],
                         "failed_pct": round(100.0 * r["failed"] / r["sent"], 3) if r["sent"] else None,
                         "errors": r["errors"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"],
                         "vs_watcher": "" if name in ("watcher", "no swap") else
                         ratio(r["failed"], base) if base is not None else "n/a"})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("method", "load", "requests", "failed", "p50 ms", "p99 ms", "failed vs watcher")
    body = [(r["method"], r["load"], str(r["requests"]),
             f"{r['failed']} ({r['failed_pct']:.2f}%)" if r["failed_pct"] is not None else str(r["failed"]),
             fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), r["vs_watcher"]) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print(line(b))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--swaps", type=int, default=10, help="consecutive swaps per method (default 10)")
    p.add_argument("--gap", type=float, default=1.0, help="seconds between swaps (default 1)")
    p.add_argument("--baseline", type=float, default=10.0,
                   help="seconds of both loads with no swap, on the first stack, before its swaps (default 10; "
                        "0: none): what the machine gives without any swap")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "swap.json",
                   help="where to write the results (default benchmarks/results/swap.json)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of {','.join(METHODS)} (default: all)")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.swaps < 1 or not methods or any(m not in METHODS for m in methods):
        p.error(f"--swaps must be >= 1 and --methods a subset of {','.join(METHODS)}")

    signal.signal(signal.SIGTERM, _raise_interrupt)
    started, t0 = now_iso(), time.monotonic()
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        log(f"warning: the host is busy (1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs); "
            "figures will be worse for every method, and even watcher's can show failed requests")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results_dir = args.json.parent

    log("building and pushing the test images (skipped when up to date)")
    images.build_caddy_image(CADDY_IMAGE)
    pushed = {}
    for version in VERSIONS:
        ref = images.build_app_image(f"{BENCH_REPO}:{version}", version, healthy=True, shutdown="graceful")
        pushed[ref] = images.push(ref)

    record: dict[str, Any] = {
        "started_at": started, "host": {"cpus": os.cpu_count()}, "swaps_per_method": args.swaps,
        "gap_s": args.gap, "warmup_s": WARMUP_S, "tail_s": TAIL_S,
        "watcher_settings": {"verify_window": VERIFY_WINDOW, "health_interval": "1s", "drain_timeout": "30s",
                             "retain_old": True, "app_health_interval": "1s"},
        "images": pushed, "loads": {k: v["label"] for k, v in LOADS.items()}, "methods": {},
    }
    status = 0
    try:
        for i, name in enumerate(methods):
            with LoadAverage() as host_load:
                try:
                    record["methods"][name] = run_method(name, args.swaps, args.gap, results_dir,
                                                         args.baseline if i == 0 else 0.0)
                except Exception as exc:  # noqa: BLE001 - the stack is gone; go on with the next method
                    log(f"{name} failed: {type(exc).__name__}: {exc}")
                    record["methods"][name] = {"description": METHODS[name], "error": f"{type(exc).__name__}: {exc}"}
                    status = 1
            record["methods"][name]["host_load_1min"] = host_load.summary()
    except KeyboardInterrupt:
        log("interrupted; stacks were destroyed, partial results follow")
        status = 130
    except Exception as exc:  # noqa: BLE001 - report what we have
        log(f"failed: {type(exc).__name__}: {exc}")
        record["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    record["runtime_s"] = round(time.monotonic() - t0, 1)
    record["table"] = table(record)
    args.json.write_text(json.dumps(record, indent=2) + "\n")

    print()
    print(f"swap benchmark, {args.swaps} swaps per method, {os.cpu_count()} CPUs, {started}")
    print(f"watcher configured with verify window {VERIFY_WINDOW} (health interval 1s)")
    for k, v in LOADS.items():
        print(f"  load {k}: {v['label']}")
    print()
    print_table(record["table"])
    w = record["methods"].get("watcher", {}).get("watcher")
    if w:
        print()
        print(f"watcher's own overhead per swap (total - health - drain): mean {w['overhead_s']['mean']:.2f}s, "
              f"max {w['overhead_s']['max']:.2f}s; total per swap mean {w['total_s']['mean']:.2f}s")
        print(f"  without the verify phase (its {VERIFY_WINDOW} window is configured): "
              f"mean {w['overhead_without_verify_s']['mean']:.2f}s, max {w['overhead_without_verify_s']['max']:.2f}s")
        print("  mean phase times: " + ", ".join(f"{k} {v:.2f}s" for k, v in w["phases_mean_s"].items()))
    for name, m in record["methods"].items():
        if "error" in m:
            print(f"{name}: FAILED: {m['error']}")
        hl = m.get("host_load_1min", {})
        print(f"{name}: {m.get('seconds', 0):.0f}s including stack set-up and tear-down; host 1-min load average "
              f"mean {hl.get('mean', float('nan')):.1f}, max {hl.get('max', float('nan')):.1f}")
    print(f"total runtime {record['runtime_s']:.0f}s; results in {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
