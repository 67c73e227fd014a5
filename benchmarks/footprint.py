"""Benchmark: what watcher costs the host it runs on, idle and while it deploys, and what it
leaves in Redis as jobs pile up. A deploy tool that sits on every host must be cheap to keep
running, and must not grow without bound.

    .venv/bin/python benchmarks/footprint.py [--idle-seconds 60] [--apps 1,10] [--jobs 1000]
                                             [--past-cap 500] [--redis URL]
                                             [--json benchmarks/results/footprint.json]

1. `watcher run` (webhook receiver + registry poller + worker pool in one process), configured
   with 1 and with 10 apps, every app deployed and live (v1), polling on at the default interval
   (60 s, jitter 5 s: the first poll of each app comes within 5 s of start, so an idle window of
   60 s holds about one poll per app). The apps share one stack's compose files (one Caddy, a
   path per app, as tests/integration/test_many_apps.py) and one image repository with a tag
   family per app (`a3-v1`, `a3-v2`; a regex policy each), so every app's poll lists and checks
   real tags. Sampled from /proc, summed over the process tree of `watcher run` (it and every
   descendant: worker children and the `docker`/`docker compose` processes a deploy runs):
   RSS (`VmRSS` of /proc/<pid>/status; pages shared between processes count once per process)
   and CPU (utime + stime of /proc/<pid>/stat, plus cutime + cstime, the CPU of descendants
   that already exited and were reaped). Idle: the first --idle-seconds after the receiver
   answers, sampled every second. During a deploy: `watcher enqueue a0-vN --wait` (a new
   version of app a0, pushed just before) from the moment it is started until it exits,
   sampled every 0.2 s. The Docker daemon's and Caddy's own CPU is not watcher's and not counted.
2. Redis: one tests/harness/fake_worker.py process (the real Worker, DeployLock and DeployQueue;
   a stand-in engine that returns at once, so no Docker time) runs jobs enqueued one after the
   other, each for a new version, each once the previous one ended. Measured at 10 %, 50 % and
   100 % of --jobs, and again --past-cap jobs past the history cap (HISTORY_LIMIT in
   watcher/queue/queue.py: finished jobs beyond it lose their hash), to show the key count stops
   growing there: the app's keys (SCAN of `watcher:<app>:*`; the stand-in engine's own
   `...:fake:*` record of every switch it made is not watcher's: counted apart), their memory
   (sum of MEMORY USAGE), and the instance's INFO used_memory. By default on a private
   redis-server on a free loopback port (tests/harness/redis_server.py), so DBSIZE and
   used_memory are this benchmark's alone; `--redis URL` uses another (then used_memory is the
   whole instance's).

Not a test: prints markdown tables and writes JSON (benchmarks/results/ is git-ignored).
Needs the services (`make services`): dockerd and the registry on 127.0.0.1:5000.
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
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from tests.harness import images  # noqa: E402
from tests.harness.redis_server import RedisServer  # noqa: E402
from tests.harness.stack import CADDY_IMAGE, REDIS_IMAGE, REGISTRY, Stack, free_port  # noqa: E402
from tests.harness.triggers import WatcherServer  # noqa: E402
from tests.harness.waiting import wait_until  # noqa: E402
from watcher.config import Retention  # noqa: E402
from watcher.queue import DeployQueue  # noqa: E402
from watcher.queue.connection import connect, key  # noqa: E402

HISTORY_LIMIT = Retention().keep

TICK = os.sysconf("SC_CLK_TCK")
RESULTS = REPO / "benchmarks" / "results"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- /proc ------------------------------------------------------------------------------------


def _stat(pid: str) -> tuple[int, int]:
    """(parent pid, CPU ticks of the process and of its reaped descendants)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()  # the command name may hold spaces and ')'
    return int(fields[1]), sum(int(x) for x in fields[11:15])  # utime stime cutime cstime


def _status(pid: int) -> tuple[int, int]:
    """(VmRSS in kB, threads); a kernel thread or a zombie has no VmRSS."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


@dataclass(frozen=True)
class Sample:
    at: float
    rss_kb: int  # the whole tree
    main_rss_kb: int  # `watcher run` itself
    cpu_ticks: int  # the whole tree, reaped descendants included
    processes: int
    threads: int


def sample(root: int) -> Sample:
    """One reading of `root` and every descendant of it that is alive now."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parents[int(entry.name)], ticks[int(entry.name)] = _stat(entry.name)
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited while we looked
    children: dict[int, list[int]] = defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children[pid])
    rss = threads = main = cpu = 0
    for pid in tree:
        try:
            each, count = _status(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss, threads, cpu = rss + each, threads + count, cpu + ticks.get(pid, 0)
        main = each if pid == root else main
    return Sample(time.monotonic(), rss, main, cpu, len(tree), threads)


def watch(root: int, done: Callable[[], bool], every: float) -> list[Sample]:
    """Samples of `root`'s tree every `every` seconds, from now until `done()`."""
    samples = [sample(root)]
    while not done():
        time.sleep(max(0.0, samples[-1].at + every - time.monotonic()))
        samples.append(sample(root))
    return samples


def summarise(samples: list[Sample]) -> dict[str, Any]:
    seconds = samples[-1].at - samples[0].at
    cpu = (samples[-1].cpu_ticks - samples[0].cpu_ticks) / TICK
    mb = [s.rss_kb / 1024 for s in samples]
    return {
        "seconds": round(seconds, 1),
        "samples": len(samples),
        "rss_mb_mean": round(statistics.mean(mb), 1),
        "rss_mb_max": round(max(mb), 1),
        "main_rss_mb_max": round(max(s.main_rss_kb for s in samples) / 1024, 1),
        "cpu_s": round(cpu, 2),
        "cpu_pct_of_a_core": round(100 * cpu / seconds, 2) if seconds else None,
        "processes_max": max(s.processes for s in samples),
        "threads_max": max(s.threads for s in samples),
    }


# -- part 1: `watcher run` on a real stack --------------------------------------------------------


@dataclass
class Host:
    """One stack (its Caddy routes every app), apps a0..a<n-1> on one image repository."""

    stack: Stack
    names: list[str]
    repo: str
    redis_url: str
    prefix: str
    port: int

    def push(self, index: int, version: int) -> str:
        tag = f"a{index}-v{version}"
        images.push(images.build_app_image(f"{self.repo}:{tag}", tag))
        return tag

    def write_config(self, count: int) -> None:
        """The host and the first `count` apps; app a0 owns the shared Caddy."""
        sections = [
            f"""
[caddy]
run_dir = ".watcher/run"

[redis]
url = "{self.redis_url}"
prefix = "{self.prefix}"

[webhook]
listen = "127.0.0.1:{self.port}"

[poll]
enabled = true
interval = "60s"
jitter = "5s"
"""
        ]
        for index, name in enumerate(self.names[:count]):
            path = f"/a{index}" if index else ""
            sections.append(f"""
[apps.{name}]
image = "{self.repo}"
shared_services = {'["caddy"]' if index == 0 else "[]"}

[apps.{name}.services.web]
port = 8080

[apps.{name}.caddy]
{f'path = "{path}"' if path else ""}

[apps.{name}.health]
interval = "1s"

[apps.{name}.verify]
url = "{self.stack.url}{path}/version"
window = "2s"

[apps.{name}.policy]
kind = "regex"
include = "a{index}-v(\\\\d+)"
""")
        self.stack.config.write_text("".join(sections))

    def watcher(self, *args: str) -> None:
        done = self.stack.watcher(*args, timeout=600)
        if done.returncode != 0:
            raise SystemExit(
                f"benchmark: watcher {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )

    def destroy(self) -> None:
        for name in self.names[1:]:  # a0 is the stack's own project: destroy() takes it down
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


@contextmanager
def host(apps: int, redis_url: str) -> Iterator[Host]:
    """Every app deployed with its v1 and live; all taken down afterwards, also on Ctrl-C."""
    images.build_caddy_image(CADDY_IMAGE)
    images.build_redis_image(REDIS_IMAGE)
    suffix = uuid.uuid4().hex[:8]
    repo = f"{REGISTRY}/watcher-bench-fp{suffix}/app"
    stack = Stack.create(image=repo)
    names = [stack.name] + [f"{stack.name}x{i}" for i in range(1, apps)]
    setup = Host(stack, names, repo, redis_url, f"fp{suffix}", free_port())
    try:
        setup.write_config(apps)
        stack.write_caddyfile()  # every app's route, once: Caddy reads it when a0's deploy starts it
        for index, name in enumerate(names):
            log(f"deploying a{index}-v1 ({index + 1} of {apps})")
            setup.watcher("deploy", setup.push(index, 1), "--app", name)
        yield setup
    finally:
        setup.destroy()


def run_footprint(setup: Host, count: int, version: int, idle_seconds: float) -> dict[str, Any]:
    """`watcher run` with `count` apps: idle, then a deploy of a0's next version."""
    setup.write_config(count)
    server = WatcherServer(setup.stack.config, {}, setup.port, command=("run",)).start()
    try:
        assert server.proc is not None
        root = server.proc.pid
        idle_until = time.monotonic() + idle_seconds
        idle = watch(root, lambda: time.monotonic() >= idle_until, 1.0)
        tag = setup.push(0, version)
        enqueue = subprocess.Popen(
            [sys.executable, "-m", "watcher", "enqueue", tag, "--app", setup.names[0], "--wait"],
            cwd=setup.stack.root,
            env=setup.stack.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deploy = watch(root, lambda: enqueue.poll() is not None, 0.2)
        out = enqueue.communicate()[0]
        if enqueue.returncode != 0:
            raise SystemExit(f"benchmark: the deploy of {tag} failed:\n{out}\n{server.log()[-4000:]}")
    finally:
        server.stop()
    client = redis.Redis.from_url(setup.redis_url, decode_responses=True)
    keys = sum(1 for _ in client.scan_iter(f"{setup.prefix}:*", count=1000))
    return {
        "apps": count,
        "idle": summarise(idle),
        "deploy": {"version": tag, **summarise(deploy)},
        "redis_keys_after": keys,
    }


# -- part 2: Redis as jobs pile up ---------------------------------------------------------------


def kib(client: redis.Redis, keys: list[str]) -> float:
    return round(sum(client.memory_usage(k, samples=0) or 0 for k in keys) / 1024, 1)


def redis_figures(client: redis.Redis, app: str, jobs: int) -> dict[str, Any]:
    every = list(client.scan_iter(key(app, "*"), count=1000))
    stand_in = [k for k in every if k.startswith(key(app, "fake", ""))]
    own = [k for k in every if k not in stand_in]
    hashes = [k for k in own if k.startswith(key(app, "job", ""))]
    return {
        "jobs": jobs,
        "keys": len(own),
        "job_hashes": len(hashes),
        "other_keys": sorted(k.removeprefix(key(app, "")) for k in set(own) - set(hashes)),
        "history": client.llen(key(app, "history")),
        "memory_kib": kib(client, own),
        "stand_in_kib": kib(client, stand_in),
        "used_memory_mib": round(int(client.info("memory")["used_memory"]) / 2**20, 2),
        "dbsize": client.dbsize(),
    }


def run_jobs(url: str, checkpoints: list[int], worker_log: Path) -> list[dict[str, Any]]:
    """Jobs one after the other through one fake worker; the figures at each checkpoint."""
    app = f"fp{uuid.uuid4().hex[:8]}"
    client = connect(url)
    queue = DeployQueue(client, app)
    with worker_log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.fake_worker", url, app, "--name", "fp"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        rows = [redis_figures(client, app, 0)]
        for n in range(1, max(checkpoints) + 1):
            job_id = queue.enqueue(f"b{n}", source="cli", requested_by="benchmark").job.id
            wait_until(
                lambda: (j := queue.get(job_id)) is not None and j.status.final,
                30,
                f"job {job_id}",
                poll=0.005,
            )
            if n in checkpoints:
                rows.append(redis_figures(client, app, n))
                log(f"redis after {n} jobs: {rows[-1]}")
        return rows
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        for found in client.scan_iter(key(app, "*"), count=1000):
            client.delete(found)


# -- report -------------------------------------------------------------------------------------


def print_tables(runs: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> None:
    print(
        "\n| apps | what | seconds | RSS mean MB | RSS max MB | `watcher run` alone, max MB | CPU s "
        "| CPU % of a core | processes max | threads max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        for what in ("idle", "deploy"):
            s = run[what]
            label = "idle" if what == "idle" else f"deploy {s['version']}"
            print(
                f"| {run['apps']} | {label} | {s['seconds']:g} | {s['rss_mb_mean']:g} | {s['rss_mb_max']:g} "
                f"| {s['main_rss_mb_max']:g} | {s['cpu_s']:g} | {s['cpu_pct_of_a_core']:g} "
                f"| {s['processes_max']} | {s['threads_max']} |"
            )
    print(
        "\n| jobs run | keys of the app | job hashes | history length | MEMORY USAGE of those keys KiB "
        "| stand-in engine's keys KiB | used_memory MiB | DBSIZE |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in jobs:
        print(
            f"| {row['jobs']:,} | {row['keys']:,} | {row['job_hashes']:,} | {row['history']:,} "
            f"| {row['memory_kib']:,} | {row['stand_in_kib']:,} | {row['used_memory_mib']:g} | {row['dbsize']:,} |"
        )


def checkpoints(jobs: int, past_cap: int) -> list[int]:
    marks = {max(1, jobs // 10), max(1, jobs // 2), jobs}
    if past_cap:
        marks.add(max(jobs, HISTORY_LIMIT) + past_cap)
    return sorted(marks)


@contextmanager
def private_redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--apps", default="1,10", help="comma-separated app counts (default 1,10)")
    parser.add_argument("--jobs", type=int, default=1000, help="measured at 10 %%, 50 %% and 100 %% of it")
    parser.add_argument(
        "--past-cap",
        type=int,
        default=500,
        help=f"and this many jobs past the history cap ({HISTORY_LIMIT}); 0: not",
    )
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server on a free port)")
    parser.add_argument("--json", type=Path, default=RESULTS / "footprint.json")
    args = parser.parse_args()
    counts = [int(x) for x in args.apps.split(",") if x.strip()]
    if not counts or min(counts) < 1 or args.jobs < 1 or args.past_cap < 0:
        parser.error("--apps needs counts >= 1, --jobs >= 1, --past-cap >= 0")
    RESULTS.mkdir(parents=True, exist_ok=True)
    worker_log = RESULTS / "footprint-worker.log"
    worker_log.write_text("")
    started = time.monotonic()
    with private_redis(args.redis) as url:
        log(f"redis: {args.jobs} jobs and {args.past_cap} past the cap, through a fake worker")
        jobs = run_jobs(url, checkpoints(args.jobs, args.past_cap), worker_log)
        runs = []
        with host(max(counts), url) as setup:
            for version, count in enumerate(counts, start=2):
                log(
                    f"watcher run with {count} app{'s' if count > 1 else ''}: idle {args.idle_seconds:g} s, "
                    f"then a deploy"
                )
                runs.append(run_footprint(setup, count, version, args.idle_seconds))
                log(f"{count} apps: {runs[-1]}")
    print_tables(runs, jobs)
    load = os.getloadavg()[0]
    print(
        f"\nruntime {time.monotonic() - started:.0f} s, 1-minute load average at the end {load:.1f} "
        f"on {os.cpu_count()} CPUs; history cap {HISTORY_LIMIT}"
    )
    args.json.write_text(
        json.dumps(
            {
                "footprint": runs,
                "redis": jobs,
                "history_limit": HISTORY_LIMIT,
                "idle_seconds": args.idle_seconds,
                "load_average_at_end": load,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
