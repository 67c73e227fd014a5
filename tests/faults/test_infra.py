"""Infrastructure faults: Redis, Caddy, the registry, the Docker engine and the state directory's
disk fail under a real deploy (or while jobs wait, or while the poller polls), under constant
load through Caddy (keep-alive POSTs from a non-retrying client and 1 s requests). Then the
invariants of tests/harness/invariants.py, and a following deploy: the case's own job when it
deployed after the fault was over (taken over, resumed, polled), else `assert_next_deploy_works`.

What each fault promises (docs/reliability.md, "When the infrastructure fails"):

- Redis killed (kill -9) mid-deploy for longer than the lock's lease: the deploy aborts without
  switching, a worker takes the job over once Redis is back (AOF) and completes it; killed while
  a job waits: the job and the pause are still there. READONLY or OOM within the lease: ridden
  out. No request fails.
- Caddy killed: it is the one front door, so requests fail from the kill until Docker has
  restarted it (`restart: unless-stopped`, a second or two); none before or after, and a deploy
  in its verification waits for Caddy and completes. Its admin socket removed: deploys still
  succeed with no failed request, waiting the whole DRAIN_TIMEOUT, and `status` says why.
  Caddy stopped: `status` and /metrics say it is down and nothing is served.
- The registry down, slow (5 s per request) or answering 429 with Retry-After: a pull that
  cannot finish fails with nothing changed; a slow one, or one asked to wait, completes; a poll
  that fails enqueues nothing and a later one enqueues exactly one job. No request fails.
- The Docker engine restarted (dockerd stops every container): the site is down until the engine
  has restarted Caddy and the live colour; afterwards the same colour serves, nothing else
  changed; a deploy in its health wait then fails and removes what it started.
- The state directory's disk full at the record step: the record was prepared before the switch,
  so it lands whole and the deploy completes; a deploy that starts on a full disk changes
  nothing and says the disk is full.

One stack for the module (its image pulled through a registry front the cases can break, its
Redis a private redis-server they can kill); each case deploys whichever of v1 and v2 is not live.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import generate_latest

from tests.conftest import require
from tests.harness.faults import (
    RegistryFront,
    Window,
    caddy_container,
    kill_caddy,
    kill_redis,
    restart_caddy,
    restart_dockerd,
    small_disk,
)
from tests.harness.invariants import assert_next_deploy_works, assert_settled
from tests.harness.metrics import parse, value
from tests.harness.redis_server import RedisServer
from tests.harness.stack import Stack, free_port
from tests.harness.traffic import Loads, Output, spawn, under_load
from tests.harness.waiting import wait_until
from watcher.config import load_host
from watcher.engine.deployment import Deployment
from watcher.host import Host
from watcher.metrics import registry_for
from watcher.queue import DeployQueue, Job, Status, Suspension
from watcher.queue.connection import connect

pytestmark = pytest.mark.integration

LOCK_TTL = 4.0
VERSIONS = ("v1", "v2")


@dataclass
class Infra:
    """The module's stack, its private Redis and the registry front its image is pulled through."""

    stack: Stack
    server: RedisServer
    front: RegistryFront
    client: redis.Redis

    @property
    def queue(self) -> DeployQueue:
        return DeployQueue(self.client, self.stack.name)

    def configure(self, extra: str = "") -> None:
        """The stack's config: its Redis, polling every second (for `watcher run`), and `extra`."""
        self.stack.write_config(
            image=f"{self.front.host}/watcher-test/app",
            verify_window="1s",
            drain_timeout="3s",
            extra=f"""
[redis]
url = "{self.server.url}"
lock_ttl = "{LOCK_TTL:g}s"

[webhook]
listen = "127.0.0.1:{free_port()}"

[poll]
interval = "1s"
jitter = "0s"
{extra}""",
        )

    def enqueue(self, version: str) -> Job:
        return self.queue.enqueue(version, source="cli", requested_by="fault test").job

    def final(self, job_id: str, timeout: float, *logs: Output) -> Job:
        def ended() -> Job | None:
            job = self.queue.get(job_id)
            return job if job and job.status.final else None

        return wait_until(
            ended,
            timeout,
            f"job {job_id} to end",
            poll=0.1,
            detail=lambda: "\n".join(out.text[-5000:] for out in logs),
        )

    def forget_jobs(self) -> None:
        """A fresh queue: its keys (fences only ever grow) and what the host keeps of it."""
        for found in self.client.scan_iter(f"watcher:{self.stack.name}:*"):
            if not found.endswith(":fence"):
                self.client.delete(found)
        (self.stack.root / ".watcher" / self.stack.name / "redis.json").unlink(missing_ok=True)


def the_other(live: str | None) -> str:
    return VERSIONS[1] if live == VERSIONS[0] else VERSIONS[0]


def other_version(stack: Stack) -> tuple[str, str]:
    """(what serves, the version a case deploys): whichever of v1 and v2 is not live."""
    live = stack.version()
    assert live is not None, "nothing serves before the case"
    return live, the_other(live)


@pytest.fixture(scope="module")
def infra(app_images: dict[str, str]) -> Iterator[Infra]:
    if shutil.which("redis-server") is None:
        require("the Redis faults", ["redis-server (run scripts/install.sh)"])
    server = RedisServer().start()
    front = RegistryFront()
    front.come_back()
    stack = Stack.create()
    built = Infra(stack, server, front, connect(server.url))
    try:
        built.configure()
        stack.watcher("deploy", VERSIONS[0], check=True)
        yield built
    finally:
        stack.destroy()
        front.go_down()
        server.destroy()


@pytest.fixture
def case(infra: Infra) -> Iterator[Infra]:
    """The module's stack, healed of any fault and settled, before the case and after it."""
    heal(infra)
    yield infra
    heal(infra)


def heal(infra: Infra) -> None:
    """Every fault undone, no job left, the config back to the module's; a repair deploy when
    the stack is not settled (an earlier case failed half-way)."""
    infra.front.heal()
    if infra.server.proc is None or infra.server.proc.poll() is not None:
        infra.server.start()
    infra.server.take_over()
    infra.server.free_up()
    infra.forget_jobs()
    infra.configure()
    view = Deployment(load_host(infra.stack.config, infra.stack.env()).app(None)).view()
    if not (view.in_sync and not view.warnings and view.live_health.healthy):
        infra.stack.watcher("deploy", the_other(infra.stack.version()), check=True)


@pytest.fixture
def procs() -> Iterator[list[Output]]:
    """The watcher processes a case starts; each still running is stopped (SIGTERM) at the end."""
    started: list[Output] = []
    yield started
    for out in started:
        if out.proc.poll() is None:
            out.proc.terminate()
    for out in started:
        try:
            out.wait(timeout=60)
        except subprocess.TimeoutExpired:
            out.proc.kill()


def start(infra: Infra, procs: list[Output], *args: str) -> Output:
    out = spawn(infra.stack, *args)
    procs.append(out)
    return out


def job_in(infra: Infra, version: str, phase: str, worker: Output) -> Job:
    job = infra.enqueue(version)
    wait_until(
        lambda: (j := infra.queue.get(job.id)) and j.phase == phase,
        120,
        f"job {job.id} in {phase}",
        poll=0.1,
        detail=lambda: worker.text,
    )
    return job


def settled(infra: Infra, loads: Loads, job_ids: list[str], *, max_failed: int = 0) -> dict[str, Any]:
    return assert_settled(infra.stack, loads, max_failed=max_failed, client=infra.client, job_ids=job_ids)


def figures(case: str, loads: Loads, window: Window | None = None) -> None:
    """The case's load figures, for the suite's report (`pytest -s`)."""
    outage = f"; {window.failed} of them in the {window.seconds:.1f}s outage" if window else ""
    print(f"\n{case}: sent {loads.sent}, failed {loads.failed}{outage}")


# -- Redis --------------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_redis_killed_mid_deploy_aborts_without_switching_then_the_job_completes(
    case: Infra, procs: list[Output]
) -> None:
    """Redis is killed while a worker starts the new colour, and stays away longer than the
    lock's lease: the worker cannot prove it holds the lock, so it does not switch (traffic
    stays on the live version, no request fails). When Redis is back (AOF: the job is still
    there), a worker takes the job over and deploys it."""
    stack = case.stack
    live, target = other_version(stack)
    worker = start(case, procs, "worker", "--name", "w1")
    with under_load(stack) as loads:
        job = job_in(case, target, "start", worker)
        kill_redis(case.server)
        time.sleep(LOCK_TTL + 4)  # the lease ends before the switch, whenever health is done
        assert stack.version() == live
        case.server.start()
        done = case.final(job.id, 120, worker)
    settled(case, loads, [job.id])
    assert done.status is Status.SUCCEEDED and done.attempts == 2, done.describe()
    log = worker.text
    assert "aborting without touching anything" in log and "switch: traffic" in log, log
    assert log.index("aborting without touching anything") < log.index("switch: traffic"), log
    assert "works again after" in log and worker.proc.poll() is None, log
    assert stack.version() == target
    figures("redis killed mid-deploy", loads)  # the taken-over job was the following deploy


@pytest.mark.timeout(120)
def test_redis_killed_while_a_job_waits_loses_neither_the_job_nor_the_pause(
    case: Infra, procs: list[Output]
) -> None:
    """A paused queue with a job waiting, an idle worker: Redis killed and restarted. The job
    (written more than a second before the kill: AOF fsyncs every second) and the pause are
    still there, the worker rode it out; resumed, the job runs once."""
    stack = case.stack
    _, target = other_version(stack)
    pause = Suspension(case.client, stack.name)
    worker = start(case, procs, "worker", "--name", "w1")
    worker.wait_for("started for")
    pause.pause(by="fault test", reason="release freeze")
    with under_load(stack) as loads:
        job = case.enqueue(target)
        time.sleep(1.5)
        kill_redis(case.server)
        time.sleep(2)
        case.server.start()
        assert pause.paused() is not None, "the pause was lost"
        waiting = case.queue.get(job.id)
        assert waiting is not None and waiting.status is Status.QUEUED, waiting
        worker.wait_for("works again after", timeout=30)
        pause.resume()
        done = case.final(job.id, 90, worker)
    settled(case, loads, [job.id])
    assert done.status is Status.SUCCEEDED and done.attempts == 1 and done.version == target, done.describe()
    assert "failed (ConnectionError" in worker.text and worker.proc.poll() is None, worker.text
    figures("redis killed while a job waits", loads)  # the job ran once Redis was back: the following deploy


@pytest.mark.timeout(120)
def test_redis_failing_over_then_full_mid_deploy_the_deploy_completes_and_the_worker_lives(
    case: Infra, procs: list[Output]
) -> None:
    """A failover (READONLY), then a full Redis (OOM), each for less than the lock's lease, while
    the job waits for health: ridden out like a dropped connection, through the real engine."""
    stack, server = case.stack, case.server
    _, target = other_version(stack)
    worker = start(case, procs, "worker", "--name", "w1")
    with under_load(stack) as loads:
        job = job_in(case, target, "health", worker)
        for trouble, undo in ((server.fail_over, server.take_over), (server.fill_up, server.free_up)):
            trouble()
            time.sleep(1.0)  # well inside the lease (TTL - 10 %), whenever the last renewal landed
            undo()
            time.sleep(1.5)  # a renewal lands in between
        done = case.final(job.id, 90, worker)
    settled(case, loads, [job.id])
    assert done.status is Status.SUCCEEDED and done.attempts == 1, done.describe()
    assert worker.proc.poll() is None, "the worker keeps running"
    assert stack.version() == target
    figures("redis READONLY then OOM mid-deploy", loads)
    assert_next_deploy_works(stack)


# -- Caddy --------------------------------------------------------------------------------------


def admin_socket(stack: Stack) -> Path:
    return stack.root / ".watcher" / "run" / "caddy-admin.sock"


@pytest.mark.timeout(150)
def test_caddy_killed_mid_deploy_fails_requests_only_while_it_is_down(
    case: Infra, procs: list[Output]
) -> None:
    """kill -9 of Caddy right after the switch: requests fail until Docker has restarted it (the
    bound docs/reliability.md states), none before or after; the deploy's verification waits for Caddy to
    answer again, then completes."""
    stack = case.stack
    _, target = other_version(stack)
    with under_load(stack) as loads:
        deploy = start(case, procs, "deploy", target)
        deploy.wait_for("] verify:")
        window = Window(loads).open()
        kill_caddy(stack)
        stack.wait_serving(30)
        window.close()
        code = deploy.wait()
    assert code == 0, deploy.text
    settled(case, loads, [], max_failed=window.failed)
    assert window.seconds < 10, f"Caddy took {window.seconds:.1f}s to come back"
    assert stack.version() == target
    figures("caddy killed mid-deploy", loads, window)
    assert_next_deploy_works(stack)


@pytest.mark.timeout(150)
def test_caddy_admin_socket_removed_deploys_wait_the_whole_drain_and_status_says_why(
    case: Infra, procs: list[Output]
) -> None:
    """Without the admin socket nobody can count requests in flight: the deploy still succeeds
    with no failed request, waiting the whole DRAIN_TIMEOUT (3 s here) instead, and `status`
    warns until Caddy is restarted (which recreates the socket)."""
    stack = case.stack
    _, target = other_version(stack)
    with under_load(stack) as loads:
        admin_socket(stack).unlink()
        proc = stack.watcher("deploy", target)
    assert proc.returncode == 0, proc.stderr
    assert "waiting the full drain timeout instead" in proc.stderr, proc.stderr
    status = stack.status()
    warnings = status["warnings"]
    assert any("admin API" in w and "restart Caddy" in w for w in warnings), warnings
    assert status["proxy"]["up"] and not status["proxy"]["admin"], status  # serving: not "down"
    assert not any("Caddy is down" in w for w in warnings), warnings
    restart_caddy(stack)  # the repair, after the load: a restart closes client connections
    assert admin_socket(stack).is_socket()
    settled(case, loads, [])
    figures("caddy admin socket removed", loads)
    assert_next_deploy_works(stack)


def proxy_up(case: Infra) -> float:
    """`watcher_proxy_up` of the stack's app, as `watcher serve`'s /metrics would scrape it."""
    host = Host(load_host(case.stack.config, case.stack.env()), client=case.client)
    samples = parse(generate_latest(registry_for(list(host.apps.values()))).decode())
    return value(samples, "watcher_proxy_up", app=case.stack.name)


@pytest.mark.timeout(120)
def test_caddy_stopped_status_says_it_is_down_and_nothing_is_served(case: Infra) -> None:
    """`docker stop` of Caddy: `status` (text, --json) and /metrics say Caddy is down, not just
    that its admin socket is silent (the case above: serving, not down). Started again: up."""
    stack = case.stack
    subprocess.run(["docker", "stop", "-t", "5", caddy_container(stack)], check=True, capture_output=True)
    try:
        data = stack.status()
        text = stack.watcher("status").stdout
        down = proxy_up(case)
    finally:
        subprocess.run(["docker", "start", caddy_container(stack)], check=True, capture_output=True)
        stack.wait_serving(30)
    proxy = data["proxy"]
    assert (proxy["up"], proxy["admin"]) == (False, False) and proxy["site_problem"], proxy
    assert data["warnings"][0].startswith(f"Caddy is down: nothing takes connections at {proxy['site']}"), (
        data
    )
    assert f"so nothing of {stack.name} is served" in data["warnings"][0], data
    assert [c.split(":")[0] for c in proxy["containers"]] == [caddy_container(stack)], proxy
    assert f"Docker: {caddy_container(stack)}: Exited" in data["warnings"][0], data
    assert f"caddy: DOWN at {proxy['site']}" in text and "nothing is served" in text, text
    assert down == 0
    again = stack.status()
    assert again["proxy"]["up"] and again["proxy"]["admin"] and again["warnings"] == [], again
    assert proxy_up(case) == 1


# -- the registry -------------------------------------------------------------------------------


def digest_check(method: str, path: str) -> bool:
    """watcher's last own look at the image before docker pulls it: the tag's digest (HEAD), its
    manifest, then the config that names its platform (the first blob anyone reads)."""
    return method == "GET" and "/blobs/" in path


@pytest.mark.timeout(180)
def test_registry_trouble_during_the_pull_fails_with_nothing_changed_or_only_makes_it_wait(
    case: Infra, procs: list[Output]
) -> None:
    """The registry goes down right after watcher's look at the tag: docker's pull finds nobody,
    the deploy fails and nothing was changed. Back, it answers two 429s asking to wait 1 s, then
    5 s for every answer (below the client's 10 s timeout): watcher waits as asked, docker's pull
    waits, and the deploy, the one following the outage, completes."""
    stack, front = case.stack, case.front
    live, target = other_version(stack)
    before, routed = stack.state_file.read_text(), stack.live_route()
    with under_load(stack) as loads:
        front.down_after(digest_check)
        failed = stack.watcher("deploy", target)
        assert failed.returncode == 1, failed.stderr
        assert "pull failed, nothing was changed" in failed.stderr, failed.stderr
        assert stack.state_file.read_text() == before and stack.live_route() == routed
        assert stack.version() == live
        back = time.monotonic()
        front.limit(2, retry_after=1)
        front.delay = 5.0
        front.come_back()
        waited = stack.watcher("deploy", target)
        front.delay = 0.0
    assert waited.returncode == 0, waited.stderr
    seen = front.requests(since=back)
    assert [s.status for s in seen[:3]] == [429, 429, 200], seen
    assert seen[1].at - seen[0].answered >= 1.0 and seen[2].at - seen[1].answered >= 1.0, (
        "Retry-After honoured"
    )
    answered = seen[2:]
    assert len(answered) >= 3 and all(s.answered - s.at >= 5.0 for s in answered), seen  # watcher's, docker's
    settled(case, loads, [])
    assert stack.version() == target
    figures("registry down, then rate-limiting and slow, during the pull", loads)
    assert_next_deploy_works(stack)


def jobs_created(infra: Infra) -> int:
    return int(infra.client.get(f"watcher:{infra.stack.name}:seq") or 0)


@pytest.mark.timeout(150)
def test_registry_down_then_slow_and_rate_limiting_while_polling_enqueues_one_job(
    case: Infra, procs: list[Output]
) -> None:
    """`watcher run` polls every second (digest policy on the tag to deploy). The registry down:
    the poll retries (1, 2, 4 s), logs the failure and enqueues nothing. Back, but 5 s per answer
    and one 429 asking to wait 1 s: Retry-After is honoured, polls never overlap (one at a time,
    whatever the interval), and exactly one job is enqueued, which the worker deploys once the
    registry is well again: the following deploy."""
    stack, front = case.stack, case.front
    _, target = other_version(stack)
    case.configure(f'[policy]\nkind = "digest"\ntag = "{target}"\n')
    front.go_down()
    with under_load(stack) as loads:
        run = start(case, procs, "run")
        run.wait_for(f"poll {stack.name}: registry:", timeout=60)
        assert jobs_created(case) == 0, "a failed poll enqueued"
        back = time.monotonic()
        front.limit(1, retry_after=1)
        front.delay = 5.0
        front.come_back()
        wait_until(lambda: jobs_created(case), 60, "a poll to enqueue", poll=0.1, detail=lambda: run.text)
        enqueued = time.monotonic()
        front.delay = 0.0
        done = case.final(str(jobs_created(case)), 90, run)
        run.proc.terminate()
        run.wait(60)
    assert done.status is Status.SUCCEEDED and done.version == target and done.source == "poll", (
        done.describe()
    )
    assert jobs_created(case) == 1, run.text
    log = run.text
    assert "retry 1 of 3" in log and "retry 3 of 3" in log and "unavailable after 4 attempts" in log, log
    polled = [s for s in front.requests(since=back) if s.at < enqueued]
    assert polled[0].status == 429 and polled[1].at - polled[0].answered >= 1.0, polled
    assert all(b.at >= a.answered for a, b in zip(polled, polled[1:])), f"polls overlapped: {polled}"
    settled(case, loads, [done.id])
    figures("registry down, then slow and rate-limiting, while polling", loads)


# -- the Docker engine --------------------------------------------------------------------------


def colors_running(stack: Stack) -> set[str]:
    return {
        color
        for color in ("blue", "green")
        if any(
            stack.health(name) not in ("exited", "created", "absent") for name in stack.containers_of(color)
        )
    }


@pytest.mark.serial  # dockerd stops every container of the host
@pytest.mark.timeout(180)
def test_docker_engine_restarted_between_deploys_brings_the_same_colour_back(
    case: Infra, procs: list[Output]
) -> None:
    """dockerd stops every container when it stops: the site is down until the engine has
    restarted Caddy and the live colour (`restart: unless-stopped`); the retained colour stays
    stopped, the record is unchanged, and the next deploy succeeds."""
    stack = case.stack
    live = stack.live_route()
    assert live is not None
    before = stack.state_file.read_text()
    with under_load(stack) as loads:
        window = Window(loads).open()
        restart_dockerd()
        stack.wait_serving(120)
        window.close()
    stack.wait_health(live, "healthy", 60)
    settled(case, loads, [], max_failed=window.failed)
    assert colors_running(stack) == {live}
    assert stack.state_file.read_text() == before
    figures("docker engine restarted between deploys", loads, window)
    assert_next_deploy_works(stack)


@pytest.mark.serial  # dockerd stops every container of the host
@pytest.mark.timeout(180)
def test_docker_engine_restarted_during_the_health_wait_leaves_one_colour(
    case: Infra, procs: list[Output]
) -> None:
    """The engine restarts while the deploy waits for the new colour's health. Either the wait
    rides it out (the new colour comes back by its restart policy and is healthy before the
    switch) and the deploy completes, or it fails, waits for the engine to answer again and
    removes the colour it started. Which one depends on whether a health poll falls into the
    moment nothing answers; both leave one colour running and serving, and `cleanup` keeps the
    rollback target, to which a rollback then works."""
    stack = case.stack
    live, target = other_version(stack)
    color = stack.live_route()
    assert color is not None
    with under_load(stack) as loads:
        deploy = start(case, procs, "deploy", target)
        deploy.wait_for("] health:")
        window = Window(loads).open()
        restart_dockerd()
        stack.wait_serving(120)
        window.close()
        code = deploy.wait()
    if code == 0:
        serving, running = target, {"blue", "green"} - {color}
    else:
        assert code == 1 and "Docker" in deploy.text.splitlines()[-1], deploy.text
        assert "Docker answers again" in deploy.text and f"{live} is still live on {color}" in deploy.text, (
            deploy.text
        )
        serving, running = live, {color}
    stack.wait_health(next(iter(running)), "healthy", 60)
    settled(case, loads, [], max_failed=window.failed)
    assert colors_running(stack) == running and stack.version() == serving, deploy.text
    figures(f"docker engine restarted during the health wait (deploy exited {code})", loads, window)
    cleanup_keeps_the_rollback_target(stack)
    assert_next_deploy_works(stack)


def cleanup_keeps_the_rollback_target(stack: Stack) -> None:
    """Issue 20 #8: after the restart, `cleanup` keeps the rollback target (whatever state the
    engine left its containers in), and the rollback to it works."""
    target = stack.status()["rollback"]
    clean = stack.watcher("cleanup")
    assert clean.returncode == 0, clean.stderr
    if target is None:
        return
    kept = stack.status()["rollback"]
    assert kept is not None and kept["version"] == target["version"], clean.stderr
    back = stack.watcher("rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert stack.version() == target["version"], back.stderr
    assert_settled(stack)


# -- the state directory's disk -----------------------------------------------------------------


def recorded(stack: Stack) -> dict[str, object]:
    return json.loads(stack.state_file.read_text())


@pytest.mark.timeout(120)
def test_state_disk_full_at_the_record_step_never_leaves_half_a_deploy(
    case: Infra, procs: list[Output]
) -> None:
    """The disk under the state directory fills up while the new version is verified: the record
    lands whole all the same (it was written before the switch), so nothing is half-switched. A
    deploy that then starts on the full disk changes nothing and says the disk is full."""
    stack = case.stack
    live, target = other_version(stack)
    with small_disk(stack.state_file.parent) as disk:
        with under_load(stack) as loads:
            deploy = start(case, procs, "deploy", target)
            wait_until(
                lambda: (recorded(stack).get("pending") or {}).get("phase") == "verify",
                60,
                "the deploy to note its verification",
                poll=0.02,
                detail=lambda: deploy.text,
            )
            disk.fill()
            code = deploy.wait()
            assert code == 0, deploy.text
            state = recorded(stack)
            assert state["live"]["version"] == target and state["pending"] is None, state  # type: ignore[index]
            assert stack.live_route() == state["live"]["color"]  # type: ignore[index]
            before = stack.state_file.read_text()
            disk.fill()  # the record's rename freed the old state's page
            refused = stack.watcher("deploy", live)
        assert refused.returncode == 1, refused.stderr
        assert "No space left on device" in refused.stderr and "nothing was changed" in refused.stderr, (
            refused.stderr
        )
        assert stack.state_file.read_text() == before and stack.version() == target
        disk.free()
        settled(case, loads, [])
    figures("state disk full at the record step", loads)
    assert_next_deploy_works(stack)
