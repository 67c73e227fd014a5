"""Benchmark: push-to-live, phase by phase, from `docker push` returning (the image is in the
registry, the moment GitHub or the registry fires its event) to the new version answering through
Caddy, for one app and for three apps pushed at once.

    .venv/bin/python benchmarks/push_to_live.py [--runs 5] [--poll-interval 5]
                                                [--json benchmarks/results/push_to_live.json]

One throw-away stack (tests/harness/stack.py) with three apps behind its Caddy (A at /, B at /b,
C at /c, each with an image repository of its own), a docker-registry of its own on a free
loopback port whose notifications point at watcher, and one `watcher run` (receiver + poller +
worker pool, `[worker] concurrency = 1`, the default) per trigger and scenario, configured with
app A alone ("1 app") or with all three ("3 apps"). Each run pushes the next version (v2, v3, ...)
of the test app (images.build_app_image) for every app of the scenario, the three at once from
three threads:

  github     the benchmark sends the signed GitHub `package` delivery for an app as soon as that
             app's push returns (GitHub's own delivery delay, usually about a second, is not in it)
  registry   nothing is sent by the benchmark: the registry's own notification triggers the deploy
  poll       notifications refused; the poller (interval --poll-interval, jitter 0) finds the tag;
             each run waits a random part of the interval before pushing, so pushes fall anywhere
             in the poll cycle

Per app and run, counted from the moment its push returned (wall clock, as watcher's job times):
  detect         push -> the job exists: the job's `created` (its Redis hash, which `watcher
                 history --json` and `status --json` last_job show)
  queue          created -> started (the job hash): with three apps and concurrency 1 the second and
                 third wait for the swaps before theirs
  prepare        started -> the first phase (pull) begins: the engine's checks before it (the Docker
                 engine's id, the compose files' images, `docker compose config` twice)
  pull, inspect, start->healthy (start + health), switch, verify, drain, other (record, stop old)
                 the engine's phase durations: watcher records them nowhere but in its phase lines
                 (`[  3.2s] health done in 2.1s`, 0.1 s resolution) in `watcher run`'s output, read
                 here; prepare too (the `[  0.7s]` of the pull line: seconds since the job's engine
                 was set up)
  live           push -> the new version answers through Caddy (/version polled every 50 ms)
  job end        push -> the job's `finished` (drained, old colour stopped)
Medians over --runs per trigger; with three apps, per place in the queue (1st, 2nd, 3rd job to
start) and for the last of the three to go live; with the host's 1-minute load average, which moves
every Docker-bound phase. A trigger and scenario during which Docker stopped answering (see
tests/harness/docker_watch.py) runs again, up to --attempts. Not a test: prints a table and writes
JSON (benchmarks/results/ is git-ignored), and leaves each `watcher run`'s output beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker.errors  # noqa: E402
import httpx  # noqa: E402
import redis  # noqa: E402

from tests.harness import images  # noqa: E402
from tests.harness.docker_watch import DockerWatch, wait_for_docker  # noqa: E402
from tests.harness.registry import require_tool, running_registry  # noqa: E402
from tests.harness.stack import CADDY_IMAGE, Stack, free_port  # noqa: E402
from tests.harness.triggers import WatcherServer, github_delivery, jobs_created  # noqa: E402
from tests.unit.test_github_payloads import github_package  # noqa: E402
from watcher.queue import DeployQueue, Job  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/15"
SECRET = "bench-" + secrets.token_hex(16)
REGISTRY_TOKEN = "notify-" + secrets.token_hex(16)
CONCURRENCY = 1
PATHS = ("", "/b", "/c")
SCENARIOS = {"1 app": 1, "3 apps": 3}
#: The registry first: docker-registry retries a refused notification until it is accepted, so
#: after a github or poll section its queue would hold the old pushes when /hooks/registry opens.
TRIGGERS = ("registry", "github", "poll")
SETTLE_S = 3.0  # after `watcher run` starts: the registry redelivers what was sent before (no-ops)
TIMEOUT_S = 240.0
#: A phase's end in the engine's progress output: `[  3.2s] health done in 2.1s`.
PHASE_DONE = re.compile(r"^\[\s*[\d.]+s\] (?P<phase>.+?) done in (?P<took>[\d.]+)s$")
#: The worker's log line as a job starts: `... worker NAME: job 7 started: deploy v3 (webhook by ...)`.
JOB_STARTED = re.compile(r"worker .*: job (?P<id>\S+) started: \w+ (?P<version>\S+) ")
#: The first phase names the image, hence the app, and starts `at` seconds after the engine was
#: set up for the job: `[  0.7s] pull: 127.0.0.1:PORT/bench/APP:v3`.
PULL = re.compile(r"^\[\s*(?P<at>[\d.]+)s\] pull: (?P<ref>\S+)$")
NAMED = {
    "pull": "pull",
    "inspect": "inspect",
    "start": "start_to_healthy",
    "health": "start_to_healthy",
    "switch": "switch",
    "verify": "verify",
    "drain": "drain",
}
COLUMNS = (
    "detect",
    "queue",
    "prepare",
    "pull",
    "inspect",
    "start_to_healthy",
    "switch",
    "verify",
    "drain",
    "other",
    "live",
    "job_end",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def shielded() -> Iterator[None]:
    """Cleanup must finish: ignore SIGINT/SIGTERM meanwhile."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# -- the host: one stack, three apps, one registry -------------------------------------------------


@dataclass
class Bench:
    stack: Stack
    repos: dict[str, str]  # app -> image repository in the benchmark's registry
    paths: dict[str, str]  # app -> path prefix on Caddy ("" for A)
    client: redis.Redis
    port: int
    poll_interval: float

    def queue(self, app: str) -> DeployQueue:
        return DeployQueue(self.client, app)

    def label(self, app: str) -> str:
        """A, B or C: what the output calls the app."""
        return "ABC"[list(self.repos).index(app)]

    def write_config(self, apps: list[str], poll: bool) -> None:
        """The host's config with `apps` (the Caddyfile, written once for all three, stays)."""
        sections = [
            f"""
[caddy]
run_dir = ".watcher/run"

[redis]
url = "{REDIS_URL}"

[worker]
concurrency = {CONCURRENCY}

[webhook]
listen = "127.0.0.1:{self.port}"

[poll]
enabled = {"true" if poll else "false"}
interval = "{self.poll_interval:g}s"
jitter = "0s"
"""
        ]
        for name in apps:
            path = self.paths[name]
            sections.append(f"""
[apps.{name}]
image = "{self.repos[name]}"
shared_services = {'["caddy"]' if name == self.stack.name else "[]"}

[apps.{name}.services.web]
port = 8080

[apps.{name}.caddy]
{f'path = "{path}"' if path else ""}

[apps.{name}.health]
timeout = "60s"
interval = "1s"

[apps.{name}.verify]
url = "{self.stack.url}{path}/version"
timeout = "15s"
window = "1s"

[apps.{name}.policy]
kind = "regex"
include = "v(\\\\d+)"
""")
        self.stack.config.write_text("".join(sections))

    def build(self, app: str, version: str) -> str:
        return images.build_app_image(f"{self.repos[app]}:{version}", version)

    def deliver(self, server: WatcherServer, app: str, version: str, digest: str) -> None:
        """The signed `package` event GitHub sends for the app's image, naming the pushed digest."""
        registry, _, repository = self.repos[app].partition("/")
        owner, _, name = repository.partition("/")
        payload = github_package(
            "published",
            version,
            owner=owner,
            name=name,
            package_url=f"{registry}/{repository}:{version}",
            digest=digest,
        )
        response = github_delivery(server.url, "package", payload, SECRET)
        if response.status_code != 202:
            raise RuntimeError(
                f"/hooks/github answered {response.status_code} for {app} {version}: {response.text}"
            )

    def destroy(self, attempts: int = 3) -> None:
        """Every container of the three apps and the stack, again while Docker comes and goes (a
        restarted dockerd would leave it all behind); then the apps' Redis keys."""
        for found in (k for name in self.repos for k in self.client.scan_iter(f"watcher:{name}:*")):
            self.client.delete(found)
        for attempt in range(1, attempts + 1):
            if not wait_for_docker():
                log("   Docker does not answer; cleaning up anyway")
            for name in list(self.repos)[1:]:
                for color in ("blue", "green"):
                    self.stack.compose(
                        "down",
                        "--remove-orphans",
                        "-t",
                        "1",
                        project=f"{name}-{color}",
                        files=("compose.yml", f"compose.{color}.yml"),
                        check=False,
                    )
            self.stack.destroy()
            try:
                self.remove_leftovers()
                return
            except (docker.errors.DockerException, OSError) as exc:
                log(f"   cleaning up failed (attempt {attempt} of {attempts}): {exc}")
        raise RuntimeError(f"{self.stack.name} could not be cleaned up")

    def remove_leftovers(self) -> None:
        client = images.client()
        for name in self.repos:
            for project in (name, f"{name}-blue", f"{name}-green"):
                for container in client.containers.list(
                    all=True, filters={"label": f"com.docker.compose.project={project}"}
                ):
                    log(f"   force-removing leftover {container.name}")
                    container.remove(force=True)
        for network in client.networks.list(names=[f"{self.stack.name}_web"]):
            network.remove()
        for volume in client.volumes.list(filters={"label": f"com.docker.compose.project={self.stack.name}"}):
            volume.remove(force=True)

    def remove_images(self) -> None:
        """The app images built for this run: their repositories (a random registry port) are never reused."""
        client = images.client()
        for repo in self.repos.values():
            for image in client.images.list(name=repo):
                for tag in image.tags:
                    try:
                        client.images.remove(tag)
                    except docker.errors.APIError as exc:
                        log(f"   keeping image {tag}: {exc}")


# -- one run: push, wait live, wait for the jobs' end ---------------------------------------------------


def push_all(
    bench: Bench, server: WatcherServer, trigger: str, apps: list[str], version: str
) -> dict[str, dict[str, float]]:
    """Push `version` of every app at once (built beforehand, so only the pushes are timed); for
    github, each app's delivery goes the moment its push returns. Returns per app when the push
    returned (time.time()) and how long it took; the pushes run while the caller waits for live."""
    refs = {app: bench.build(app, version) for app in apps}
    pushed: dict[str, dict[str, float]] = {}
    errors: list[str] = []

    def push(app: str) -> None:
        try:
            began = time.time()
            digest = images.push(refs[app])
            returned = time.time()
            pushed[app] = {"at": returned, "push_s": round(returned - began, 3)}
            if trigger == "github":
                bench.deliver(server, app, version, digest)
        except Exception as exc:  # noqa: BLE001 - raised in the caller's thread below
            errors.append(f"{app}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=push, args=(app,), daemon=True) for app in apps]
    for thread in threads:
        thread.start()
    live = wait_live(bench, apps, version, errors)
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return {app: {**pushed[app], "live_at": live[app]} for app in apps}


def wait_live(bench: Bench, apps: list[str], version: str, errors: list[str]) -> dict[str, float]:
    """When (time.time()) each app first answers `version` through Caddy, polled every 50 ms."""
    live: dict[str, float] = {}
    deadline = time.monotonic() + TIMEOUT_S
    with httpx.Client(timeout=5) as client:
        while len(live) < len(apps):
            if errors:
                raise RuntimeError("; ".join(errors))
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not live within {TIMEOUT_S:g}s: {sorted(set(apps) - set(live))} at {version}"
                )
            for app in apps:
                if (
                    app not in live
                    and answers(client, f"{bench.stack.url}{bench.paths[app]}/version") == version
                ):
                    live[app] = time.time()
            time.sleep(0.05)
    return live


def answers(client: httpx.Client, url: str) -> str | None:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return None
    return response.text.strip() if response.is_success else None


def finished_job(bench: Bench, app: str, version: str) -> Job:
    """The app's job for `version`, once it has ended and nothing of the app runs."""
    deadline = time.monotonic() + TIMEOUT_S
    queue = bench.queue(app)
    while time.monotonic() < deadline:
        job = next((j for j in queue.history(5) if j.version == version), None)
        if job is not None and not queue.running():
            if job.status.value != "succeeded":
                raise RuntimeError(f"{app}: {job.describe()}")
            return job
        time.sleep(0.1)
    raise RuntimeError(f"{app}: no finished job for {version} within {TIMEOUT_S:g}s")


def one_run(
    bench: Bench, server: WatcherServer, trigger: str, apps: list[str], version: str
) -> list[dict[str, Any]]:
    """One push of every app; a row per app with the times from its push (phases added later)."""
    jobs_before = {app: jobs_created(bench.client, app) for app in apps}
    host_load = os.getloadavg()[0]
    pushed = push_all(bench, server, trigger, apps, version)
    rows = []
    for app in apps:
        job = finished_job(bench, app, version)
        at = pushed[app]["at"]
        rows.append(
            {
                "app": app,
                "label": bench.label(app),
                "version": version,
                "job": job.id,
                "source": job.source,
                "push_s": pushed[app]["push_s"],
                "jobs_created": jobs_created(bench.client, app) - jobs_before[app],
                "detect": round(job.created - at, 3),
                "queue": round((job.started or 0) - job.created, 3),
                "live": round(pushed[app]["live_at"] - at, 3),
                "job_end": round((job.finished or 0) - at, 3),
                "started": job.started,
                "host_load_1min": round(host_load, 1),
            }
        )
    rows.sort(key=lambda row: row["started"])
    return rows


# -- the engine's phase lines ------------------------------------------------------------------------


def phase_times(output: str, repos: dict[str, str]) -> dict[tuple[str, str], dict[str, float]]:
    """(app, version) -> {phase: seconds} from `watcher run`'s output. With concurrency 1 the jobs
    run one after the other in the pool's own process, so each job's lines follow its `started`
    line; its first phase, pull, names the image and so the app."""
    apps = {repo: app for app, repo in repos.items()}
    found: dict[tuple[str, str], dict[str, float]] = {}
    current: dict[str, float] | None = None
    version = ""
    for line in output.splitlines():
        if started := JOB_STARTED.search(line):
            version, current = started["version"], None
        elif (pull := PULL.match(line)) and current is None:
            repo, _, tag = pull["ref"].rpartition(":")
            if repo in apps and tag == version:
                current = found.setdefault((apps[repo], version), {"prepare": float(pull["at"])})
        if current is not None and (done := PHASE_DONE.match(line)):
            current[done["phase"]] = current.get(done["phase"], 0.0) + float(done["took"])
    return found


def add_phases(rows: list[dict[str, Any]], phases: dict[tuple[str, str], dict[str, float]]) -> None:
    for row in rows:
        each = phases.get((row["app"], row["version"]), {})
        row["phases"] = each
        row["prepare"] = each.get("prepare")
        for column in set(NAMED.values()):
            row[column] = (
                round(sum(v for k, v in each.items() if NAMED.get(k) == column), 3) if each else None
            )
        row["other"] = (
            round(sum(v for k, v in each.items() if k not in NAMED and k != "prepare"), 3) if each else None
        )


# -- one trigger, one scenario -------------------------------------------------------------------------


class DockerAway(RuntimeError):
    """Docker did not answer during a section: its figures measure the engine's absence."""


def run_trigger(
    bench: Bench,
    trigger: str,
    apps: list[str],
    runs: int,
    versions: Iterator[str],
    results_dir: Path,
    scenario: str,
    watch: DockerWatch,
) -> list[list[dict[str, Any]]]:
    """`runs` pushes through one `watcher run` configured with `apps` and this trigger."""
    bench.write_config(apps, poll=trigger == "poll")
    env = {"WEBHOOK_SECRET": SECRET}
    if trigger == "registry":
        env["WEBHOOK_REGISTRY_TOKEN"] = REGISTRY_TOKEN
    began = time.time()
    server = WatcherServer(bench.stack.config, env, bench.port, command=("run",)).start()
    out: list[list[dict[str, Any]]] = []
    try:
        time.sleep(SETTLE_S)
        for run in range(runs):
            if trigger == "poll":
                time.sleep(random.uniform(0, bench.poll_interval))
            try:
                rows = one_run(bench, server, trigger, apps, next(versions))
            except Exception as exc:  # noqa: BLE001 - re-raised, as DockerAway when Docker was away
                if watch.outages(began, time.time()):
                    raise DockerAway(f"{exc} (Docker did not answer meanwhile)") from exc
                raise
            out.append(rows)
            log(
                f"{scenario} {trigger} run {run + 1}: "
                + "; ".join(
                    f"{row['label']} detect {row['detect']:.2f} queue {row['queue']:.2f} "
                    f"live {row['live']:.2f} end {row['job_end']:.2f}"
                    for row in rows
                )
            )
    finally:
        with shielded():
            server.stop()
            output = server.log()
            (results_dir / f"push_to_live-{scenario.replace(' ', '')}-{trigger}.log").write_text(output)
    outages = watch.outages(began, time.time())
    if outages:
        raise DockerAway(f"Docker did not answer for {sum(o['seconds'] for o in outages):.0f}s")
    phases = phase_times(output, bench.repos)
    for rows in out:
        add_phases(rows, phases)
    return out


def run_section(
    bench: Bench,
    trigger: str,
    apps: list[str],
    args: argparse.Namespace,
    versions: Iterator[str],
    scenario: str,
    watch: DockerWatch,
) -> dict[str, Any]:
    """One trigger and scenario, again while Docker went away during it (up to --attempts): on a
    shared engine, other tests restart or freeze dockerd."""
    voided = []
    for attempt in range(1, args.attempts + 1):
        log(f"== {scenario}, {trigger}: {args.runs} run(s)" + (f", attempt {attempt}" if attempt > 1 else ""))
        try:
            runs = run_trigger(bench, trigger, apps, args.runs, versions, args.json.parent, scenario, watch)
        except DockerAway as exc:
            log(f"   void: {exc}")
            voided.append(str(exc))
            if not wait_for_docker():
                raise
            continue
        load = [rows[0]["host_load_1min"] for rows in runs]
        return {
            "summary": summarise(runs),
            "runs": runs,
            "voided_attempts": voided,
            "host_load_1min": {"mean": round(statistics.fmean(load), 1), "max": max(load)},
        }
    raise RuntimeError(
        f"{scenario}, {trigger}: Docker went away in each of {args.attempts} attempts: {voided}"
    )


# -- summary -----------------------------------------------------------------------------------------


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarise(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians per place in the queue (by job start), and for the last app live when there are several."""
    places = ["app"] if len(runs[0]) == 1 else ["1st", "2nd", "3rd"][: len(runs[0])]
    summary = {
        place: {column: median([rows[i][column] for rows in runs]) for column in COLUMNS}
        for i, place in enumerate(places)
    }
    for i, place in enumerate(places):
        live = [rows[i]["live"] for rows in runs]
        summary[place].update(
            live_min=min(live), live_max=max(live), push_s=median([rows[i]["push_s"] for rows in runs])
        )
    if len(places) > 1:
        last = [max(row["live"] for row in rows) for rows in runs]
        summary["all live"] = {
            "live": median(last),
            "job_end": median([max(r["job_end"] for r in rows) for rows in runs]),
            "live_min": min(last),
            "live_max": max(last),
        }
    return summary


def print_table(results: dict[str, dict[str, dict[str, Any]]], runs: int, poll_interval: float) -> None:
    print(
        f"\npush-to-live, seconds from `docker push` returning; median of {runs} run{'s' * (runs != 1)} per trigger"
    )
    print(
        f"poll interval {poll_interval:g} s (jitter 0 s); [worker] concurrency {CONCURRENCY}; phases from watcher's "
        "phase lines (0.1 s resolution)"
    )
    head = (
        "scenario",
        "trigger",
        "job",
        "detect",
        "queue",
        "prepare",
        "pull",
        "inspect",
        "start->healthy",
        "switch",
        "verify",
        "drain",
        "other",
        "live",
        "(min-max)",
        "job end",
        "host load",
    )
    lines = []
    for scenario in SCENARIOS:
        for trigger in TRIGGERS:
            section = results.get(trigger, {}).get(scenario, {})
            for place, m in section.get("summary", {}).items():
                label = f"poll {poll_interval:g}s" if trigger == "poll" else trigger
                cells = [fmt(m.get(c)) for c in COLUMNS[:-1]]
                lines.append(
                    (
                        scenario,
                        label,
                        place,
                        *cells,
                        f"{m['live_min']:.1f}-{m['live_max']:.1f}",
                        fmt(m.get("job_end")),
                        f"{section['host_load_1min']['mean']:.1f}",
                    )
                )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    for row in (head, tuple("-" * w for w in widths), *lines):
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# -- main -------------------------------------------------------------------------------------------


def set_up(bench: Bench) -> None:
    """All three apps configured (and in the Caddyfile), each live at v1. The apps' health start
    period is 30 s instead of the test stacks' 5 s: on a loaded host the app may take longer than
    5 s + 3 checks to listen; a passing check ends the start period, so a quick start costs nothing."""
    env = bench.stack.root / ".env"
    env.write_text(env.read_text().replace("APP_HEALTH_START_PERIOD=5s", "APP_HEALTH_START_PERIOD=30s"))
    bench.write_config(list(bench.repos), poll=False)
    bench.stack.write_caddyfile()
    for app in bench.repos:
        images.push(bench.build(app, "v1"))
        deployed = bench.stack.watcher("deploy", "v1", "--app", app)
        if deployed.returncode != 0:
            raise RuntimeError(f"the first deploy of {app} failed:\n{deployed.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="pushes per trigger and scenario (default 5)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--triggers", default=",".join(TRIGGERS), help=f"a subset of {','.join(TRIGGERS)}")
    parser.add_argument("--scenarios", default="1,3", help="apps pushed at once: 1, 3 or 1,3 (default)")
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="runs of a trigger and scenario while Docker goes away during it (default 3)",
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "push_to_live.json")
    args = parser.parse_args(argv)
    triggers = [t for t in TRIGGERS if t in args.triggers.split(",")]
    scenarios = [s for s, n in SCENARIOS.items() if str(n) in args.scenarios.split(",")]
    if args.runs < 1 or args.attempts < 1 or args.poll_interval < 1 or not triggers or not scenarios:
        parser.error("--runs >= 1, --attempts >= 1, --poll-interval >= 1, and a known trigger and scenario")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    args.json.parent.mkdir(parents=True, exist_ok=True)

    images.build_caddy_image(CADDY_IMAGE)
    port = free_port()
    notifications = {
        "notifications": {
            "endpoints": [
                {
                    "name": "watcher",
                    "url": f"http://127.0.0.1:{port}/hooks/registry",
                    "headers": {"Authorization": [f"Bearer {REGISTRY_TOKEN}"]},
                    "timeout": "2s",
                    "threshold": 3,
                    "backoff": "1s",
                }
            ]
        }
    }
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    work = Path(f"/tmp/watcher-bench-ptl-{uuid.uuid4().hex[:6]}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    started, status, error = time.strftime("%Y-%m-%dT%H:%M:%S%z"), 0, None
    versions = (f"v{n}" for n in count(2))
    try:
        with running_registry(
            require_tool("docker-registry"), work / "registry", extra=notifications
        ) as registry:
            stack = Stack.create()
            names = [stack.name, f"{stack.name}b", f"{stack.name}c"]
            bench = Bench(
                stack,
                {name: f"{registry.host}/bench/{name}" for name in names},
                dict(zip(names, PATHS)),
                client,
                port,
                args.poll_interval,
            )
            try:
                set_up(bench)
                with DockerWatch() as watch:
                    for trigger in triggers:
                        for scenario in scenarios:
                            results.setdefault(trigger, {})[scenario] = run_section(
                                bench, trigger, names[: SCENARIOS[scenario]], args, versions, scenario, watch
                            )
            finally:
                with shielded():
                    log(f"destroying stack {stack.name} and its apps")
                    bench.destroy()
                    bench.remove_images()
    except KeyboardInterrupt:
        log("interrupted; the stack was destroyed, partial results follow")
        status = 130
    except Exception as exc:  # noqa: BLE001 - the stack is gone; report what was measured
        log(f"failed: {type(exc).__name__}: {exc}")
        error = f"{type(exc).__name__}: {exc}"
        status = 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.write_text(
        json.dumps(
            {
                "started_at": started,
                "runs_per_trigger": args.runs,
                "poll_interval_s": args.poll_interval,
                "poll_jitter_s": 0,
                "worker_concurrency": CONCURRENCY,
                "verify_window_s": 1,
                "phase_source": "watcher run's phase lines (0.1 s); job times from Redis",
                "error": error,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print_table(results, args.runs, args.poll_interval)
    print(f"results in {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
