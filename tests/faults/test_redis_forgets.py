"""Redis forgets the queue (issue 20, defect 3): FLUSHALL with a job waiting, FLUSHALL with a job
running, and a Redis restarted without persistence, each under constant load through Caddy
(keep-alive POSTs from a non-retrying client and 1 s requests), on a private redis-server (the
shared one is never touched). Then the invariants of tests/harness/invariants.py; each case's own
job is the following deploy (it deploys once the fault is over).

What each promises (docs/reliability.md, "When Redis forgets the queue"):

- FLUSHALL while a job waits in a paused queue, an idle worker running: the worker notices
  within its poll and says so; the pause and the waiting job (same id) are back from the host;
  `status` says what happened; a new job's id is above every id handed out before; resumed, the
  job deploys once. No request fails.
- FLUSHALL while a job runs (its health wait; its verification, after the switch): its lock goes
  with the data, so it aborts without touching anything; it goes back in Redis (same id) and is
  taken over: deployed again (after the switch, the unverified colour is switched back first);
  the loss records what became of it. No request fails.
- Redis restarted without persistence with a paused job waiting and no worker: the first
  `watcher status` notices and puts the pause and the job back; a worker started then deploys it
  once resumed. No request fails.
- FLUSHALL while a deploy awaits promotion (`[promote] mode = "manual"`): the job and its mark
  come back from the host (its colour still waits in the state), so `watcher promote` queues its
  promote and the waiting colour goes live; `status` says what came back. No request fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import require
from tests.harness.invariants import assert_settled
from tests.harness.redis_server import RedisServer
from tests.harness.stack import Stack
from tests.harness.traffic import Loads, Output, spawn, under_load
from tests.harness.waiting import wait_until
from watcher.queue import DeployQueue, Job, Status
from watcher.queue.connection import connect
from watcher.queue.continuity import IDS_BLOCK

pytestmark = pytest.mark.integration

LOCK_TTL = 4.0
VERSIONS = ("v1", "v2")
SLOW_HEALTH = "slowok"  # healthy about 4 s after its start (tests/conftest.py APP_VARIANTS)


@dataclass
class Forgetful:
    """The module's stack and its private Redis."""

    stack: Stack
    server: RedisServer
    client: redis.Redis

    @property
    def queue(self) -> DeployQueue:
        return DeployQueue(self.client, self.stack.name)

    @property
    def kept(self) -> Path:
        """What the host keeps of the app's queue (watcher/queue/continuity.py)."""
        return self.stack.root / ".watcher" / self.stack.name / "redis.json"

    def kept_awaited(self) -> str | None:
        """The id of the job awaiting promotion the host keeps a copy of."""
        try:
            return (json.loads(self.kept.read_text()).get("awaited") or {}).get("id")
        except FileNotFoundError:
            return None

    def cli(self, *args: str) -> str:
        return self.stack.watcher(*args, check=True).stdout

    def configure(self, extra: str = "") -> None:
        """The module's config, with `extra` sections."""
        self.stack.write_config(
            verify_window="1s",
            drain_timeout="3s",
            extra=f'[redis]\nurl = "{self.server.url}"\nlock_ttl = "{LOCK_TTL:g}s"\n{extra}',
        )

    def enqueue(self, version: str) -> str:
        """`watcher enqueue`, as an operator queues a deploy: the job's id."""
        return self.cli("enqueue", version).strip()

    def final(self, job_id: str, timeout: float, *logs: Output) -> Job:
        def ended() -> Job | None:
            job = self.queue.get(job_id)
            return job if job and job.status.final else None

        return wait_until(
            ended,
            timeout,
            f"job {job_id} to end",
            poll=0.1,
            detail=lambda: "\n".join(o.text[-5000:] for o in logs),
        )


def other_version(stack: Stack) -> str:
    live = stack.version()
    assert live is not None, "nothing serves before the case"
    return VERSIONS[1] if live == VERSIONS[0] else VERSIONS[0]


@pytest.fixture(scope="module")
def forgetful(app_images: dict[str, str]) -> Iterator[Forgetful]:
    if shutil.which("redis-server") is None:
        require("the Redis faults", ["redis-server (run scripts/install.sh)"])
    server = RedisServer().start()
    stack = Stack.create(verify_window="1s", drain_timeout="3s")
    built = Forgetful(stack, server, connect(server.url))
    try:
        built.configure()
        stack.watcher("deploy", VERSIONS[0], check=True)
        yield built
    finally:
        stack.destroy()
        server.destroy()


@pytest.fixture
def case(forgetful: Forgetful) -> Forgetful:
    """A fresh start: Redis empty and nothing kept on the host, so each case sees its own loss."""
    if forgetful.server.proc is None or forgetful.server.proc.poll() is not None:
        forgetful.server.start()
    forgetful.server.command("FLUSHALL")
    forgetful.kept.unlink(missing_ok=True)
    return forgetful


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


def worker(case: Forgetful, procs: list[Output]) -> Output:
    out = spawn(case.stack, "worker", "--name", "w1")
    procs.append(out)
    out.wait_for("started for", timeout=30)
    return out


def settled(case: Forgetful, loads: Loads, job_ids: list[str]) -> dict:
    return assert_settled(case.stack, loads, client=case.client, job_ids=job_ids)


def said(case: Forgetful, job_id: str, *, pause: bool) -> dict:
    """`status` (text and JSON) names the loss and what came back."""
    status = case.stack.status()
    lost = status["redis_lost"]
    assert lost is not None and lost["losses"] == 1, json.dumps(status, indent=1)
    assert lost["job"] == job_id and lost["pause"] is pause, lost
    assert "Redis lost the queue of" in case.cli("status")
    return status


def figures(name: str, loads: Loads, **seconds: float) -> None:
    """The case's load figures and how long each step took, for the suite's report (`-s`)."""
    took = "".join(f", {what.replace('_', ' ')} {value:.1f}s" for what, value in seconds.items())
    print(f"\n{name}: sent {loads.sent}, failed {loads.failed}{took}")


@pytest.mark.timeout(150)
def test_flushall_with_a_job_waiting_gives_back_the_pause_and_the_job_and_never_reuses_an_id(
    case: Forgetful, procs: list[Output]
) -> None:
    stack = case.stack
    target = other_version(stack)
    idle = worker(case, procs)
    case.cli("pause", "--reason", "release freeze")
    job_id = case.enqueue(target)
    with under_load(stack) as loads:
        flushed = time.monotonic()
        case.server.command("FLUSHALL")
        noticed = idle.wait_for("Redis lost the queue of", timeout=10) - flushed
        status = said(case, job_id, pause=True)
        assert status["paused"]["reason"] == "release freeze", status["paused"]
        assert status["queue"]["next"]["id"] == job_id and status["queue"]["next"]["version"] == target
        extra = case.enqueue(target)  # the same version waits: nothing added
        assert extra == job_id
        case.cli("resume")
        done = case.final(job_id, 90, idle)
    settled(case, loads, [job_id])
    assert done.status is Status.SUCCEEDED and done.attempts == 1, done.describe()
    assert done.duration is not None
    case.cli("pause")
    after = case.enqueue(VERSIONS[0] if target == VERSIONS[1] else VERSIONS[1])
    assert int(after) > IDS_BLOCK >= int(job_id), f"job {after} after job {job_id}: an id was reused"
    case.cli("cancel", after)
    case.cli("resume")
    assert idle.proc.poll() is None and idle.text.count("Redis lost the queue of") == 1, idle.text
    figures("FLUSHALL with a job waiting", loads, noticed_after=noticed, deploy_after_resume=done.duration)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("phase", ["health", "verify"])
def test_flushall_with_a_job_running_aborts_it_untouched_and_it_is_taken_over(
    case: Forgetful, procs: list[Output], phase: str
) -> None:
    """In its health wait the job had switched nothing: taken over, it deploys again. In its
    verification traffic was on the new colour already, unrecorded: the job taken over switches
    it back (never taking an unverified colour for live, engine/unwind.py `undo_unverified`),
    then deploys and verifies the version itself.

    The health case deploys slowok, whose health wait lasts about 4 s: v1 and v2 are healthy
    within 1 s (a retained colour at once), less than a loaded host may take between the
    worker printing its health line and this process flushing Redis after reading it."""
    stack = case.stack
    target = SLOW_HEALTH if phase == "health" else other_version(stack)
    running = worker(case, procs)
    with under_load(stack) as loads:
        job_id = case.enqueue(target)
        running.wait_for(f"] {phase}: ", timeout=120)
        flushed = time.monotonic()
        case.server.command("FLUSHALL")
        aborted = running.wait_for("stopped touching nothing more", timeout=60) - flushed
        done = case.final(job_id, 150, running)
        ended = time.monotonic() - flushed
    settled(case, loads, [job_id])
    assert done.status is Status.SUCCEEDED and done.attempts == 2, done.describe()
    assert stack.version() == target
    log = running.text
    assert "taking it over" in log, log
    switched = log.index("switch: traffic") < log.index("stopped touching nothing more")
    assert switched is (phase == "verify"), log
    if switched:  # its next fenced step found the lock gone: the heir undoes the unverified switch
        assert f"undoing a deploy of {target} interrupted during" in log, log
        assert done.message and f"{target} is live on" in done.message, done.describe()
    else:
        assert "aborting without touching anything" in log, log
    lost = stack.status()["redis_lost"]
    assert lost is not None and len(lost["interrupted"]) == 1, lost
    what = lost["interrupted"][0]  # with the receipt of what users were served meanwhile
    assert what.startswith(f"job {job_id} (deploy {target}), running in phase {phase}, stopped touching"), (
        what
    )
    assert what.endswith("and is back in the queue") and (switched or " 0 failed" in what), what
    print(f"\nthe loss records: {what}")
    figures(f"FLUSHALL with a job running ({phase})", loads, stopped_after=aborted, job_done_after=ended)


@pytest.mark.timeout(150)
def test_redis_restarted_without_persistence_status_notices_and_the_job_still_deploys(
    case: Forgetful, procs: list[Output]
) -> None:
    stack = case.stack
    target = other_version(stack)
    case.cli("pause", "--reason", "maintenance")
    job_id = case.enqueue(target)
    with under_load(stack) as loads:
        begun = time.monotonic()
        case.server.restart_empty()
        restarted = time.monotonic() - begun
        assert case.client.dbsize() == 0
        status = said(case, job_id, pause=True)  # the first `status` notices and puts them back
        assert status["paused"]["reason"] == "maintenance"
        late = worker(case, procs)
        case.cli("resume")
        done = case.final(job_id, 90, late)
    settled(case, loads, [job_id])
    assert done.status is Status.SUCCEEDED and done.attempts == 1, done.describe()
    assert "Redis lost the queue of" not in late.text, "noticed once, by `status`"
    figures(
        "Redis restarted without persistence",
        loads,
        restart=restarted,
        deploy_after_resume=done.duration or 0.0,
    )


@pytest.fixture
def manual(case: Forgetful) -> Iterator[Forgetful]:
    """The case's deploys wait for `watcher promote`; automatic again afterwards."""
    case.configure('[promote]\nmode = "manual"\ntimeout = "1h"\n')
    yield case
    case.configure()


@pytest.mark.timeout(150)
def test_flushall_with_a_deploy_awaiting_promotion_gives_it_back_and_promote_goes_live(
    manual: Forgetful, procs: list[Output]
) -> None:
    case, stack = manual, manual.stack
    target = other_version(stack)
    idle = worker(case, procs)
    with under_load(stack) as loads:
        job_id = case.enqueue(target)
        wait_until(
            lambda: case.kept_awaited() == job_id,
            90,
            f"job {job_id} to await promotion, kept on the host",
            poll=0.1,
            detail=lambda: idle.text[-5000:],
        )
        waiting = stack.status()["recorded"]["pending"]
        assert waiting["phase"] == "awaiting promotion" and waiting["version"] == target, waiting
        flushed = time.monotonic()
        case.server.command("FLUSHALL")
        promoting = stack.watcher("promote", timeout=90, check=True)  # through the queue, followed
        promoted = time.monotonic() - flushed
        promote_id = promoting.stdout.split()[0]
        assert f"queued: promote {target} (job {job_id})" in promoting.stderr, promoting.stderr
    settled(case, loads, [job_id, promote_id])
    assert stack.version() == target
    done = case.queue.get(promote_id)
    assert done is not None and done.status is Status.SUCCEEDED, done
    waited = case.queue.get(job_id)
    assert waited is not None and waited.status is Status.SUCCEEDED, waited
    assert waited.message and waited.message.startswith(f"promoted by job {promote_id}"), waited.describe()
    lost = stack.status()["redis_lost"]
    assert lost is not None and lost["losses"] == 1, lost
    assert lost["awaited"] == job_id and lost["job"] is None and not lost["pause"], lost
    assert f"job {job_id} awaiting promotion was put back from this host" in case.cli("status")
    assert case.kept_awaited() is None, "settled: the host's copy is gone"
    figures("FLUSHALL with a deploy awaiting promotion", loads, promoted_after=promoted)
