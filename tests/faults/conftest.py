"""Fixtures of the fault-injection suite, shared by its modules.

- `queued_stack` (module scope): one stack with Redis configured (lock TTL 3 s, so expiries
  happen within a case), v1 deployed; cases reuse it, each deploying the other version from
  whatever is live (`other_version`), so a module pays for one Caddy and one first deploy.
- `watchers`: the watcher processes a case starts (`worker`, `spawn`), each followed line by
  line (`Followed`) and able to be frozen (SIGSTOP) the instant a given line is read; every one
  still running is stopped at the end of the case.
- `two_apps` (module scope): a host with two apps behind one Caddy and `[worker] concurrency = 2`,
  v1 deployed on both; cases deploy the other version of each.

A case that fails leaves its stack repaired (queue keys gone, the other version deployed), so
one failure does not fail every later case of the module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.harness.stack import APP_REPO, Stack, free_port
from tests.harness.traffic import Output
from tests.harness.triggers import forget
from tests.harness.waiting import wait_until
from watcher.config import load_host
from watcher.engine.deployment import Deployment
from watcher.engine.reconcile import View
from watcher.queue import DeployQueue, Job
from watcher.queue.connection import connect

LOCK_TTL = 3.0
VERSIONS = ("v1", "v2")
FAILED = pytest.StashKey[bool]()
#: A Progress line of the engine's own ("[  1.2s] switch: ..."), not one of its detail lines.
PHASE_LINE = re.compile(r"^\[\s*[0-9.]+s\] (\S.*)$")


def other_version(live: str | None) -> str:
    """The version a case deploys: whichever of v1 and v2 is not live."""
    return VERSIONS[1] if live == VERSIONS[0] else VERSIONS[0]


def running_colors(stack: Stack) -> set[str]:
    """The colours with a running container, as Docker says."""
    return {
        color
        for color in ("blue", "green")
        if any(
            stack.health(name) not in ("exited", "created", "absent") for name in stack.containers_of(color)
        )
    }


def view_of(stack: Stack) -> View:
    """What `watcher status` reports of the stack (the engine's reconciled view), read in-process:
    a case that must act within a lock's TTL cannot wait for a CLI to start."""
    return Deployment(load_host(stack.config, stack.env()).app(stack.name)).view()


def quick_healthcheck(stack: Stack) -> None:
    """Docker checks the app's health every 0.5 s (the test stacks' default is 1 s): each new
    colour is seen healthy half a second sooner, a saving every case makes, often twice."""
    env = stack.root / ".env"
    env.write_text(env.read_text().replace("APP_HEALTH_INTERVAL=1s", "APP_HEALTH_INTERVAL=500ms"))


def redis_extra(url: str, *, lock_ttl: float = LOCK_TTL) -> str:
    return f'[redis]\nurl = "{url}"\nlock_ttl = "{lock_ttl:g}s"\n'


def forget_app(client: redis.Redis, app: str, stack: Stack | None = None) -> None:
    """The app's keys gone, and with its stack what the host keeps of its queue (a fresh start)."""
    forget(client, app, stack.root if stack else None)


# -- processes ----------------------------------------------------------------------------------


class Followed(Output):
    """A spawned watcher's output (see Output) that can freeze its process group (SIGSTOP) from
    the reading thread itself, the instant a marker line is read: a fault then lands as close
    to a phase as an outside observer can put it."""

    def __init__(self, proc: subprocess.Popen[str], started: float) -> None:
        self._trap: str | None = None
        self._trap_after = 0.0
        self.frozen = threading.Event()
        self.landed_at_freeze = ""
        super().__init__(proc, started)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def freeze_at(self, marker: str, after: float = 0.0) -> None:
        """SIGSTOP the process group when a line containing `marker` is read (or `after` seconds
        later: a phase that prints nothing while it runs)."""
        with self._cond:
            self._trap = marker
            self._trap_after = after

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line))
                if self._trap is not None and self._trap in line:
                    self._spring()
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def _spring(self) -> None:
        self._trap = None
        if self._trap_after:
            threading.Timer(self._trap_after, self.freeze).start()
        else:
            self.freeze()

    def freeze(self) -> None:
        os.killpg(self.pid, signal.SIGSTOP)
        self.frozen.set()

    def thaw(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    @property
    def lease_lost(self) -> bool:
        """Whether it was frozen past its lock's lease (a loaded host) and found it gone once
        thawed: then it touched nothing, and an heir takes the job over as after a kill."""
        return "aborting without touching anything" in self.text

    def signal_frozen(self, signum: int) -> None:
        """The fault on a frozen worker: kill -9 of its process group, or SIGTERM, then thawed so
        that it unwinds, exiting 0."""
        if signum == signal.SIGKILL:
            os.killpg(self.pid, signal.SIGKILL)
            return
        self.proc.send_signal(signal.SIGTERM)
        self.thaw()
        assert self.wait(60) == 0, self.text

    def frozen_output(self, timeout: float = 90) -> str:
        """Once frozen, everything it printed (the pipe drained): where the fault landed."""
        if not self.frozen.wait(timeout):
            raise AssertionError(f"never reached the marker (exit {self.proc.poll()}):\n{self.text}")
        count = -1
        while count != len(self.lines):
            count = len(self.lines)
            time.sleep(0.2)
        self.landed_at_freeze = self.landed()
        return self.text

    def landed(self) -> str:
        """The last phase line (not a detail line) printed so far: where a freeze landed."""
        found = [m.group(1) for _, line in self.lines if (m := PHASE_LINE.match(line))]
        return found[-1].strip() if found else "(no phase line)"


class Watchers:
    """The watcher processes of one case, in their own process groups (as a container's are)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: dict[str, Followed] = {}

    def spawn(self, label: str, *args: str, **env: str) -> Followed:
        """`watcher ARGS` in the stack's directory, followed as `label`."""
        begun = time.monotonic()
        out = Followed(self.stack.spawn(*args, **env), begun)
        self.started[label] = out
        return out

    def worker(self, name: str, **env: str) -> Followed:
        return self.spawn(name, "worker", "--name", name, **env)

    def logs(self) -> str:
        return "\n".join(f"--- {label}\n{out.text[-6000:]}" for label, out in self.started.items())

    def stop_all(self) -> None:
        """SIGCONT then SIGTERM to every live one; SIGKILL to the group of any that will not stop."""
        for out in self.started.values():
            if out.proc.poll() is None:
                out.thaw()
                out.proc.terminate()
        for out in self.started.values():
            try:
                out.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(out.pid, signal.SIGKILL)
                out.proc.wait()


# -- the module's stack ----------------------------------------------------------------------------


@dataclass
class QueuedStack:
    """The module's stack, its Redis and the app's queue."""

    stack: Stack
    client: redis.Redis
    queue: DeployQueue

    def enqueue(self, version: str) -> Job:
        return self.queue.enqueue(version, source="cli", requested_by="fault test").job

    def final(self, job_id: str, timeout: float, detail: Watchers) -> Job:
        """The job once it has ended (the processes' output in the message if it does not)."""

        def ended() -> Job | None:
            job = self.queue.get(job_id)
            return job if job and job.status.final else None

        return wait_until(ended, timeout, f"job {job_id} to end", poll=0.1, detail=detail.logs)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True


@pytest.fixture(scope="module")
def queued_stack(app_images: dict[str, str], redis_url: str) -> Iterator[QueuedStack]:
    stack = Stack.create(extra=redis_extra(redis_url))
    quick_healthcheck(stack)
    client = connect(redis_url)
    try:
        stack.watcher("deploy", VERSIONS[0], check=True)
        yield QueuedStack(stack, client, DeployQueue(client, stack.name))
    finally:
        stack.destroy()
        forget_app(client, stack.name)


@pytest.fixture
def watchers(request: pytest.FixtureRequest) -> Iterator[Watchers]:
    """The case's processes on the module's stack (or on `two_apps`' when the case uses it)."""
    names = request.fixturenames
    stack = (
        request.getfixturevalue("two_apps").stack
        if "two_apps" in names
        else request.getfixturevalue("queued_stack").stack
    )
    started = Watchers(stack)
    yield started
    started.stop_all()
    if request.node.stash.get(FAILED, False) and "queued_stack" in names:
        repair(request.getfixturevalue("queued_stack"))


def repair(queued: QueuedStack) -> None:
    """After a failed case: no job or lock left, and a fresh deploy, so later cases start clean."""
    forget_app(queued.client, queued.stack.name, queued.stack)
    live = queued.stack.version()
    proc = queued.stack.watcher("deploy", other_version(live))
    print(f"repair after the failure: deploy exited {proc.returncode}\n{proc.stderr[-2000:]}")


# -- two apps on one host -----------------------------------------------------------------------------


@dataclass
class AppStack(Stack):
    """One app of a several-app config: `status` and `version` of that app alone (the CLI needs
    `--app`, and its route has a path prefix)."""

    path: str = ""

    def status(self) -> dict[str, object]:
        return json.loads(self.watcher("status", "--json", "--app", self.name, check=True).stdout)

    def version(self) -> str | None:
        try:
            response = httpx.get(f"{self.url}{self.path}/version", timeout=5)
        except httpx.HTTPError:
            return None
        return response.text.strip() if response.is_success else None


@dataclass
class TwoApps:
    """Apps `a` (at /, the stack's name, its Caddy) and `b` (at /b) in one config; both v1 live."""

    stack: Stack
    apps: dict[str, AppStack]  # by path prefix
    client: redis.Redis

    def queue(self, app: AppStack) -> DeployQueue:
        return DeployQueue(self.client, app.name)


def two_app_config(stack: Stack, b: str, redis_url: str) -> str:
    """Both apps on the stack's compose files; health interval 1 s, verify window 2 s."""
    sections = [
        redis_extra(redis_url)
        + f"""
[caddy]
run_dir = ".watcher/run"

[worker]
concurrency = 2

[webhook]
listen = "127.0.0.1:{free_port()}"

[poll]
enabled = false
"""
    ]
    for name, path, shared in ((stack.name, "", '["caddy"]'), (b, "/b", "[]")):
        sections.append(f"""
[apps.{name}]
image = "{APP_REPO}"
project_dir = "."
shared_services = {shared}

[apps.{name}.services.web]
port = 8080

[apps.{name}.caddy]
{f'path = "{path}"' if path else ""}

[apps.{name}.health]
timeout = "60s"
interval = "1s"

[apps.{name}.verify]
url = "{stack.url}{path}/version"
timeout = "15s"
window = "2s"
""")
    return "".join(sections)


@pytest.fixture(scope="module")
def two_apps(app_images: dict[str, str], redis_url: str) -> Iterator[TwoApps]:
    stack = Stack.create()
    b = f"{stack.name}b"
    client = connect(redis_url)
    apps = {
        "": AppStack(stack.root, stack.name, stack.port),
        "/b": AppStack(stack.root, b, stack.port, path="/b"),
    }
    quick_healthcheck(stack)
    try:
        stack.config.write_text(two_app_config(stack, b, redis_url))
        stack.write_caddyfile()
        shared = stack.compose(
            "up", "-d", "caddy", check=False
        )  # first, so both first deploys can run at once
        assert shared.returncode == 0, shared.stderr
        first = [stack.spawn("deploy", VERSIONS[0], "--app", app.name) for app in apps.values()]
        for proc in first:
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, out
        yield TwoApps(stack, apps, client)
    finally:
        stack.destroy()  # app b's projects too: named after the stack
        for app in apps.values():
            forget_app(client, app.name)
