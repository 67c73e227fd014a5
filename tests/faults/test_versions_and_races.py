"""Broken versions and racing deployers, on the real Docker engine, Compose, Caddy, registry and
Redis, each deploy under a strict non-retrying keep-alive load through Caddy and checked with the
invariants of tests/harness/invariants.py (issue 9, item 2, part C).

Versions: unhealthy (while the live colour's healthcheck flaps), slow past the timeout, healthy
then sick inside the verification window, crash-looping at start; and the live colour flapping
during a good deploy. A broken version never answers a load request (the one that sickens
answers only between the switch, when it was healthy, and the switch back), the old colour keeps
serving, and the next deploy succeeds.

Races: three `watcher worker`s, a `watcher run` and a host-CLI `watcher deploy` on one app's
lock: one swap at a time. A flood: 1,000 webhook deliveries at once on `watcher serve` with three
apps, mostly copies and forgeries: one job per genuinely new version per app, no 5xx.

Cost: one stack for the module (each case leaves one healthy colour live, and the next case
starts from whatever that is), short timeouts, and the flood on a receiver with no stack at all.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.harness import flood
from tests.harness.invariants import assert_next_deploy_works, assert_settled
from tests.harness.racers import Racers, assert_one_at_a_time
from tests.harness.registry import push_images, require_tool, running_registry
from tests.harness.sampler import IdSampler
from tests.harness.stack import REPO, STACK_FILES, Stack, free_port
from tests.harness.traffic import Loads, spawn, under_load
from tests.harness.triggers import WatcherServer, forget, jobs_created
from tests.harness.waiting import wait_until
from watcher.engine.state import StateStore
from watcher.queue import DeployQueue, Job, Status, Suspension
from watcher.queue.connection import connect

pytestmark = pytest.mark.integration

LOCK_TTL = "4s"  # expiries and renewals happen within a case
READ_LAG = 0.5  # how late this process may read a racer's line under the load it generates
SECRET = "flood-secret-" + os.urandom(16).hex()
TOKEN = "flood-token-" + os.urandom(16).hex()
#: A fast failure ends long before HEALTH_CHECK_TIMEOUT=300s, the whole deploy included (pull,
#: start) on a loaded 2-core machine, where it has taken up to 52 s (alone: under 15 s).
FAST = 100

FAIL_FAST = {  # crash-looping version -> what stderr names (any one of them)
    "crash": ("restarting", "exited (code 1)"),
    "loop127": ("restarting", "exited (code 127)"),
}


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture(scope="module")
def module_stack(app_images: dict[str, str], redis_url: str, client: redis.Redis) -> Iterator[Stack]:
    """One stack with Redis (so `watcher deploy` takes the Redis lock, as workers do), v1 live."""
    created = Stack.create(
        extra=f'[redis]\nurl = "{redis_url}"\nlock_ttl = "{LOCK_TTL}"\n\n'
        f'[webhook]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    try:
        deployed(created, "v1")
        yield created
    finally:
        created.destroy()
        forget(client, created.name)


@pytest.fixture
def stack(module_stack: Stack, client: redis.Redis, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The module's stack for one case; after a failed case, repaired (queue keys gone, a fresh
    deploy), so one failure does not fail every later case."""
    failures = request.session.testsfailed
    yield module_stack
    if request.session.testsfailed > failures:
        forget(client, module_stack.name, module_stack.root)
        proc = module_stack.watcher("deploy", "v2" if module_stack.version() == "v1" else "v1")
        print(f"repair after the failure: deploy exited {proc.returncode}\n{proc.stderr[-2000:]}")


def deployed(stack: Stack, version: str) -> None:
    proc = stack.watcher("deploy", version)
    assert proc.returncode == 0, f"deploy {version} failed:\n{proc.stdout}\n{proc.stderr}"


def other(color: str) -> str:
    return "green" if color == "blue" else "blue"


def serving(stack: Stack) -> tuple[str, str]:
    """(colour, version) serving now, from the route file and Caddy: what a case starts from."""
    color, version = stack.live_route(), stack.version()
    assert color in ("blue", "green") and version, (color, version)
    return color, version


def recorded_previous(stack: Stack) -> str | None:
    """The previous version the state records (what `rollback` goes back to)."""
    previous = StateStore(stack.state_file.parent, None).load().previous
    return previous.version if previous else None


def timed_deploy(stack: Stack, version: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = stack.watcher("deploy", version, timeout=120, **env)
    took = time.monotonic() - started
    print(f"deploy {version}: exit {proc.returncode} after {took:.1f}s")
    return proc, took


def reported(loads: Loads, case: str) -> None:
    """The load really ran (the closing note's figures: run with -s)."""
    print(f"load: {case}: sent {loads.sent}, failed {loads.failed}")
    assert loads.sent > 300, loads.describe()


def assert_untouched(loads: Loads, color: str, version: str) -> None:
    """The broken version never answered a load request: only the old colour did."""
    assert loads.versions() == {version}, loads.describe()
    assert loads.colors() == {color}, loads.describe()


def seen_so_far(loads: Loads) -> tuple[set[str], set[str]]:
    """Versions and colours answered so far on a running load (its snapshot)."""
    snaps = [loads.fast.snapshot(), loads.slow.snapshot()]
    return {v for s in snaps for v in s.versions}, {c for s in snaps for c in s.colors}


def settled(
    stack: Stack, loads: Loads, client: redis.Redis, job_ids: list[str] | None = None
) -> dict[str, Any]:
    """Every invariant, the load's `failed == 0` included (docs/reliability.md: zero failed requests)."""
    return assert_settled(stack, loads, max_failed=0, client=client, job_ids=job_ids or [])


def failed_colour_removed(status: dict[str, Any], color: str, version: str) -> None:
    assert (status["live_color"], status["live_version"]) == (color, version), status
    assert status["colors"][other(color)]["role"] == "absent", "the failed colour is removed"


# -- broken versions ---------------------------------------------------------------------------------


@pytest.mark.serial  # its time bounds need the CPU to itself: beside other tests it flakes
@pytest.mark.timeout(180)
def test_unhealthy_version_fails_fast_while_the_live_colour_flaps(stack: Stack, client: redis.Redis) -> None:
    """v3 never turns healthy: Docker's `unhealthy` ends the wait at once, not the 300 s timeout.
    Meanwhile the live colour flaps (unhealthy in Docker's eyes for most of the deploy): v3's
    colour is removed, and the live one, its containers untouched, serves throughout."""
    color, version = serving(stack)
    ids = stack.container_ids(f"{stack.name}-{color}")
    with under_load(stack) as loads:
        flap = stack.flap(color, 14)
        stack.wait_health(color, "unhealthy", timeout=15)
        proc, took = timed_deploy(stack, "v3", HEALTH_CHECK_TIMEOUT="300s")
        flap.join()
        stack.wait_health(color, "healthy", timeout=15)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{other(color)} failed its health check" in proc.stderr and "is unhealthy" in proc.stderr, (
        proc.stderr
    )
    assert "last log lines" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert took < FAST, f"v3 took {took:.1f}s to fail with HEALTH_CHECK_TIMEOUT=300s"
    reported(loads, "unhealthy, the live colour flapping")
    assert_untouched(loads, color, version)
    assert stack.container_ids(f"{stack.name}-{color}") == ids, "the live colour was not touched"
    failed_colour_removed(settled(stack, loads, client), color, version)
    assert_next_deploy_works(stack)


@pytest.mark.timeout(180)
def test_slow_boot_beyond_the_timeout_fails_and_within_it_passes(stack: Stack, client: redis.Redis) -> None:
    color, version = serving(stack)
    with under_load(stack) as loads:
        proc, _ = timed_deploy(stack, "slow", HEALTH_CHECK_TIMEOUT="5s")
    assert proc.returncode == 1 and "not healthy after 5s" in proc.stderr, proc.stdout + proc.stderr
    reported(loads, "slow past the timeout")
    assert_untouched(loads, color, version)
    failed_colour_removed(settled(stack, loads, client), color, version)
    # The next deploy is the slow boot within the timeout (4 s of the stack's 60 s): it passes.
    assert_next_deploy_works(stack, ("slowok", version))


@pytest.mark.timeout(180)
def test_new_version_that_sickens_in_the_verify_window_is_switched_back(
    stack: Stack, client: redis.Redis
) -> None:
    """`sick` is healthy at the switch (so it may answer), then fails its healthcheck inside the
    window: traffic goes straight back, and the last answers are the old colour's."""
    color, version = serving(stack)
    with under_load(stack) as loads:
        out = spawn(stack, "deploy", "sick", VERIFY_WINDOW="15s")
        code = out.wait(timeout=90)
    assert code == 1, out.text
    assert "during the verification window" in out.text, out.text
    assert f"switching traffic back to {color} ({version})" in out.text, out.text
    reported(loads, "sick in the verification window")
    assert loads.versions() <= {version, "sick"}, loads.describe()
    assert loads.colors() <= {color, other(color)}, loads.describe()
    first_new = loads.first_seen(other(color))
    assert first_new is None or first_new >= out.printed_after("switch:"), "sick answered before the switch"
    assert loads.results[0].last_versions[-5:] == [version] * 5, loads.describe()
    failed_colour_removed(settled(stack, loads, client), color, version)
    assert_next_deploy_works(stack)


@pytest.mark.timeout(240)
def test_crash_looping_versions_fail_fast_and_the_rollback_target_stays_truthful(
    stack: Stack, client: redis.Redis
) -> None:
    """A crash at start and an entrypoint that cannot exec both restart-loop (`restarting`): each
    deploy fails within seconds with HEALTH_CHECK_TIMEOUT=300s. The failures leave the rollback
    target on the previous version (its retained containers gone: a full deploy), and it works."""
    if recorded_previous(stack) is None:  # only when this case runs alone
        assert_next_deploy_works(stack)
    color, version = serving(stack)
    previous = recorded_previous(stack)
    live_ids = stack.container_ids(f"{stack.name}-{color}")
    with under_load(stack) as loads:
        outcomes = {v: timed_deploy(stack, v, HEALTH_CHECK_TIMEOUT="300s") for v in FAIL_FAST}
        during = seen_so_far(loads)
        after = stack.status()
        after_ids = stack.container_ids(f"{stack.name}-{color}")
        rolled = stack.watcher("rollback")
    for v, (proc, took) in outcomes.items():
        assert proc.returncode == 1, f"{v}:\n{proc.stdout}\n{proc.stderr}"
        assert any(state in proc.stderr for state in FAIL_FAST[v]), (
            f"{v}: stderr names none of {FAIL_FAST[v]}:\n{proc.stderr}"
        )
        assert took < FAST, f"{v} took {took:.1f}s to fail with HEALTH_CHECK_TIMEOUT=300s"
    assert during == ({version}, {color}), loads.describe()
    assert after_ids == live_ids, "the live colour was not touched"
    failed_colour_removed(after, color, version)
    assert after["live_health"] == "healthy", after
    rollback = after["rollback"]
    assert rollback is not None, after
    assert (rollback["version"], rollback["color"], rollback["way"]) == (previous, other(color), "full"), (
        rollback
    )
    assert "digest" in rollback

    assert rolled.returncode == 0, f"{rolled.stdout}\n{rolled.stderr}"
    reported(loads, "crash-looping, then rollback")
    assert loads.versions() <= {version, previous}, loads.describe()
    status = settled(stack, loads, client)
    assert (status["live_color"], status["live_version"]) == (other(color), previous), status
    assert_next_deploy_works(stack)


@pytest.mark.timeout(180)
def test_live_colour_flapping_during_a_deploy_never_moves_the_target(
    stack: Stack, client: redis.Redis
) -> None:
    """The live colour turns unhealthy in Docker's eyes (a flapping healthcheck) right before and
    during a deploy of a good version: the target is the other colour all the same, the live
    colour's containers are the same ones all along (stopped and retained at the end), and no
    request reaches the new colour before the switch."""
    live, version = serving(stack)
    idle = other(live)
    ids = stack.container_ids(f"{stack.name}-{live}")
    target = "v2" if version == "v1" else "v1"
    with under_load(stack) as loads:
        flap = stack.flap(live, 12)
        stack.wait_health(live, "unhealthy", timeout=15)
        sampler = IdSampler(stack, f"{stack.name}-{live}")
        out = spawn(stack, "deploy", target)
        code = out.wait(timeout=100)
        samples = sampler.stop()
        flap.join()
    assert code == 0, out.text
    reported(loads, f"live flapping, {target}")
    assert loads.versions() == {version, target}, loads.describe()
    assert loads.colors() == {live, idle}, loads.describe()
    switched = out.printed_after("switch:")
    first_new = loads.first_seen(idle)
    assert first_new is not None and first_new >= switched, (
        f"{idle} answered {switched - (first_new or 0):.2f}s before the switch\n{out.text}"
    )
    assert samples and all(s == ids for s in samples), f"{live}'s containers changed: {ids} -> {samples}"
    assert stack.container_ids(f"{stack.name}-{live}") == ids, "the retained containers are the same"
    status = settled(stack, loads, client)
    assert (status["live_color"], status["live_version"]) == (idle, target), status
    assert [c["state"] for c in status["colors"][live]["containers"]] == ["exited"], status
    assert_next_deploy_works(stack)


# -- racing deployers -------------------------------------------------------------------------------


def final(queue: DeployQueue, job_id: str) -> Job | None:
    job = queue.get(job_id)
    return job if job and job.status.final else None


def enqueue_burst(queue: DeployQueue, burst: int, last: str) -> list[str]:
    """Ten requests alternating between v1 and v2, ending with `last`, as one burst: enqueued
    while the queue is paused, so that a worker freed in the middle of the burst (on a loaded
    host ten enqueues take a while) cannot take one of its first requests; it coalesces to its
    newest, as a burst arriving at once does."""
    first = "v1" if last == "v2" else "v2"
    pause = Suspension(queue.client, queue.app)
    pause.pause(by="test", reason=f"burst {burst} arriving")
    try:
        return [
            queue.enqueue(
                last if i % 2 else first,
                source=("webhook", "poll", "cli")[burst],
                requested_by=f"burst {burst}",
            ).job.id
            for i in range(10)
        ]
    finally:
        pause.resume()


def assert_jobs_one_at_a_time(jobs: list[Job]) -> list[Job]:
    """The jobs that ran, in order: each ended before the next began, under a larger fence."""
    ran = sorted((j for j in jobs if j.started is not None), key=lambda j: j.started or 0)
    for earlier, later in zip(ran, ran[1:]):
        assert earlier.finished is not None and later.started is not None
        assert earlier.finished <= later.started, f"swaps overlap:\n{earlier.describe()}\n{later.describe()}"
        assert (earlier.fence or 0) < (later.fence or 0)
    return ran


@pytest.mark.timeout(300)
def test_three_workers_a_run_and_a_host_deploy_race_for_the_lock_one_swap_at_a_time(
    stack: Stack, client: redis.Redis
) -> None:
    """Thirty jobs in three bursts (each arriving while the previous burst's newest job swaps)
    for three workers and a `watcher run`, and a host-CLI deploy waiting for the same lock: the
    bursts coalesce to three jobs, and the four swaps run one after the other."""
    if serving(stack)[1] != "v1":  # the bursts' first job must be a swap, not a no-op
        deployed(stack, "v1")
    queue = DeployQueue(client, stack.name)
    racers = Racers(stack)
    ids: list[str] = []
    try:
        for name in ("w1", "w2", "w3"):
            racers.start(name, "worker", "--name", name)
        racers.start("run", "run", "--no-poll", "--name", "run")
        for out in racers.outputs.values():
            out.wait_for("started for", timeout=60)
        with under_load(stack) as loads:
            for burst, last in enumerate(("v2", "v1", "v2")):
                ids += enqueue_burst(queue, burst, last)
                if burst == 0:
                    cli = racers.start("cli", "deploy", "slowok", "--wait-lock", "180")
                wait_until(
                    lambda: (j := queue.get(ids[-1])) and j.status is not Status.QUEUED,
                    120,
                    f"job {ids[-1]} to start",
                    poll=0.1,
                    detail=racers.text,
                )
                time.sleep(1)
            jobs = [
                wait_until(
                    lambda job_id=job_id: final(queue, job_id),
                    240,
                    f"job {job_id} to end",
                    poll=0.2,
                    detail=racers.text,
                )
                for job_id in dict.fromkeys(ids)
            ]
            cli_code = cli.wait(timeout=180)
    finally:
        codes = racers.stop()
    assert cli_code == 0, racers.text()
    assert all(code == 0 for code in codes.values()), f"{codes}\n{racers.text()}"

    assert len(jobs) == 30, (
        "every request made its own job (alternating versions never repeat one that waits)"
    )
    ran = assert_jobs_one_at_a_time(jobs)
    assert [j.version for j in ran] == ["v2", "v1", "v2"], [j.describe() for j in jobs]
    assert all(j.status is Status.SUCCEEDED for j in ran), [j.describe() for j in ran]
    assert {j.status for j in jobs} <= {Status.SUCCEEDED, Status.SUPERSEDED}
    assert {j.worker for j in ran} <= {"w1", "w2", "w3", "run"}, [j.describe() for j in ran]

    swaps = assert_one_at_a_time(racers.swaps())
    offset = time.time() - time.monotonic()
    assert sorted(s.version for s in swaps) == ["slowok", "v1", "v2", "v2"], racers.text()
    assert all(s.switches == 1 for s in swaps), racers.text()
    [host] = [s for s in swaps if s.racer == "cli"]
    # The host's swap fell between two jobs, never inside one. A line is stamped when this
    # process reads it, and under the load generated in this process the reader may lag the
    # print by tens of ms: the host's last line, printed right before it released the lock, can
    # be read after the next job had taken the lock (a job's start is its worker's own clock).
    # So its end is allowed READ_LAG, and the job that followed must have found the host's swap
    # done: its version recorded live and serving.
    for job in ran:
        before = host.end - READ_LAG + offset < (job.started or 0)
        assert before or host.start + offset > (job.finished or 0), (
            f"the host deploy ran during job {job.describe()}\n{racers.text()}"
        )
    following = [job for job in ran if (job.started or 0) > host.start + offset]
    if following:
        after = min(following, key=lambda job: job.started or 0)
        out = racers.outputs[str(after.worker)].text
        begun = out.index(f"job {after.id} started")
        inspected = out[begun : out.index("inspect done", begun)]
        assert re.search(r"live: \w+ \(slowok\b", inspected), (
            f"job {after.id} began before the host deploy was done:\n{inspected}"
        )

    reported(loads, "three workers, a run and a host deploy")
    assert loads.versions() <= {"v1", "v2", "slowok"}, loads.describe()
    status = settled(stack, loads, client, ids)
    assert status["live_version"] == swaps[-1].version == stack.version(), status
    assert status["queue"]["length"] == 0 and status["queue"]["running"] is None, status["queue"]
    assert status["paused"] is None
    assert status["last_job"]["id"] == ran[-1].id and status["last_job"]["status"] == "succeeded"
    running = [c for info in status["colors"].values() for c in info["containers"] if c["state"] == "running"]
    assert len(running) == 1, "no half-switched state: one colour runs"
    history = stack.watcher("history", "-n", "40")
    assert history.returncode == 0 and "superseded by job" in history.stdout
    assert_next_deploy_works(stack)


# -- a webhook flood ----------------------------------------------------------------------------------


def flood_config(root: Path, apps: dict[str, tuple[str, str]], redis_url: str, port: int) -> Path:
    """`watcher serve` for `apps` (name -> image, the regex of the tags it follows), each on its
    own Caddy path. No stack: the receiver only enqueues."""
    root.mkdir(parents=True, exist_ok=True)
    for name in STACK_FILES:
        shutil.copy(REPO / name, root / name)
    sections = [
        f'[redis]\nurl = "{redis_url}"\n\n[webhook]\nlisten = "127.0.0.1:{port}"\n\n[poll]\nenabled = false\n'
    ]
    for name, (image, include) in apps.items():
        sections.append(f"""
[apps.{name}]
image = "{image}"
project_dir = "."

[apps.{name}.services.web]
port = 8080

[apps.{name}.caddy]
path = "/{name}"

[apps.{name}.verify]
url = "http://127.0.0.1:9/version"

[apps.{name}.policy]
kind = "regex"
include = '{include}'
""")
    config = root / "watcher.toml"
    config.write_text("".join(sections))
    return config


@dataclass
class Flood:
    server: WatcherServer
    pushes: dict[str, flood.Pushed]  # app -> its one genuinely new version


@pytest.fixture
def flooded(redis_url: str, client: redis.Redis, tmp_path: Path) -> Iterator[Flood]:
    """Three apps on a registry of the test's own (tags no other run re-pushes): two on one image,
    each following its own tags, one on another image; a new version pushed for each."""
    suffix = os.urandom(4).hex()
    names = [f"fl{suffix}a", f"fl{suffix}b", f"fl{suffix}c"]
    with running_registry(require_tool("docker-registry"), tmp_path / "registry") as registry:
        digests = {
            **push_images(registry.url, "acme/app", ["v2", "abrupt1"]),
            "1": push_images(registry.url, "acme/worker", ["1"])["1"],
        }
        follows = dict(
            zip(
                names,
                (
                    ("acme/app", "v2", r"v(\d+)"),
                    ("acme/app", "abrupt1", r"abrupt(\d+)"),
                    ("acme/worker", "1", r"(\d+)"),
                ),
            )
        )
        port = free_port()
        config = flood_config(
            tmp_path / "project",
            {name: (f"{registry.host}/{repo}", include) for name, (repo, _, include) in follows.items()},
            redis_url,
            port,
        )
        server = WatcherServer(config, {"WEBHOOK_SECRET": SECRET, "WEBHOOK_REGISTRY_TOKEN": TOKEN}, port)
        try:
            yield Flood(
                server.start(),
                {
                    name: flood.Pushed(registry.host, repo, tag, digests[tag])
                    for name, (repo, tag, _) in follows.items()
                },
            )
        finally:
            server.stop()
            for name in names:
                forget(client, name)


@pytest.mark.timeout(120)
def test_a_webhook_flood_makes_one_job_per_new_version_per_app(flooded: Flood, client: redis.Redis) -> None:
    """1,000 deliveries at once across three apps: a new version for each (its GitHub delivery
    and its registry notification), replays of those (same and fresh delivery ids), forgeries
    (wrong key, body changed after signing, no signature, wrong token) and signed noise."""
    server, names, pushes = flooded.server, list(flooded.pushes), list(flooded.pushes.values())
    deliveries = (
        flood.copies(pushes, SECRET, TOKEN, replays=194, fresh_ids=250, notifications=100)
        + flood.forgeries(pushes, SECRET, github_count=250, registry_count=100)
        + flood.noise(SECRET, 100)
    )
    assert len(deliveries) == 1000
    try:
        answers, took = flood.send(server.url, deliveries, budget=90)
        codes = collections.Counter(a.status for a in answers)
        by_kind = flood.codes_by_kind(answers)
        print(
            f"flood: {len(answers)} deliveries in {took:.1f}s; codes {dict(codes)}; "
            f"by kind { ({k: dict(v) for k, v in by_kind.items()}) }"
        )
        assert not flood.wrong(answers), "\n".join(flood.wrong(answers)[:20])
        enqueued = [
            (r["app"], r["job_id"])
            for a in answers
            for r in a.body.get("results", [])
            if r.get("status") == "enqueued"
        ]
        print(f"flood: jobs {enqueued}; created {[jobs_created(client, n) for n in names]}")
        assert codes[202] == len(names) and sorted(app for app, _ in enqueued) == sorted(names), enqueued
        for name in names:
            assert jobs_created(client, name) == 1, f"{name}: {jobs_created(client, name)} jobs"
            [job] = DeployQueue(client, name).waiting()
            push = flooded.pushes[name]
            assert (job.version, job.digest, job.source) == (push.tag, push.digest, "webhook"), job.describe()

        # The receiver still answers, and still knows what it saw.
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["ready"] is True, health.text
        deliveries += [
            *flood.noise(SECRET, 1),
            *flood.copies(pushes[:1], SECRET, TOKEN, replays=0, fresh_ids=1, notifications=0)[-1:],
            *flood.forgeries(pushes, SECRET, github_count=1, registry_count=1),
        ]
        after, _ = flood.send(server.url, deliveries[-4:])
        # The registry forgery comes from the forger, throttled by its hundred failures (401 once
        # its minute is over); GitHub's deliveries are never throttled.
        statuses = [a.status for a in after]
        assert statuses[:3] == [200, 200, 401] and statuses[3] in (401, 429), [
            (a.status, a.body) for a in after
        ]
        assert after[1].body["outcome"] == "duplicate", after[1].body
        assert jobs_created(client, names[0]) == 1
        log = server.log()
        assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]
    finally:
        client.delete(*flood.delivery_keys(deliveries))
