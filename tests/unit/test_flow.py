"""The whole deploy flow through the real `Deployment`, on an in-memory platform: the seam
(watcher/platforms/base.py) is all the flow needs. The route file is the real `TrafficSwitch`'s,
in tmp_path; only the services around it are stood in for: the registry (as in test_arch.py),
Caddy's answers at the verify URL (the route file's colour answers with the version it runs) and
Caddy's admin API (nothing in flight, so drains end at once).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness.triggers import write_project
from tests.unit.test_arch import Registry, single
from watcher.backends.instance import Instance
from watcher.config import AppConfig, load_host
from watcher.config.promote import PromoteSettings
from watcher.engine import drain, verification
from watcher.engine.deployment import Deployment
from watcher.engine.maintenance import cleanup
from watcher.engine.run import DeployResult, run_of
from watcher.engine.state import awaiting
from watcher.engine.status import format_status, status
from watcher.engine.verification import Answer
from watcher.errors import DeployFailed
from watcher.platforms.base import agreed
from watcher.platforms.color import Color
from watcher.platforms.health import Health, judge
from watcher.platforms.health_check import HealthCheckFailed
from watcher.progress import Progress

REPO = "127.0.0.1:5000/acme/shop"
DIGEST, STORED = single("amd64")


class Quiet(Progress):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def say(self, message: str) -> None:
        self.lines.append(message)


class FakeImages:
    """Tags -> image IDs; every pulled tag carries the registry's digest."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def image_present(self, ref: str) -> bool:
        return ref in self.tags or ref in self.tags.values()

    def image_id(self, ref: str) -> str | None:
        return self.tags.get(ref, ref if ref in self.tags.values() else None)

    def tag(self, image_id: str, ref: str) -> None:
        self.tags[ref] = image_id

    def repo_digests(self, ref: str) -> list[str]:
        return [f"{REPO}@{DIGEST}"] if ref in self.tags else []

    def pull_digest(self, ref: str, digest: str) -> None:
        self.tags[ref] = f"sha256:image-of-{ref.rpartition(':')[2]}"

    def images_of(self, repository: str) -> list[str]:
        return sorted(ref for ref in self.tags if ref.rpartition(":")[0] == repository)

    def remove_image(self, ref: str) -> bool:
        return self.tags.pop(ref, None) is not None


class FakeColor:
    """One colour: a web instance per start, healthy unless its version is in `platform.sick`."""

    following: set[str] = {"web"}
    one_shots: set[str] = set()

    def __init__(self, platform: FakePlatform, color: Color) -> None:
        self.platform, self.color = platform, color
        self.running: list[Instance] = []

    def one_shot_report(self) -> list[str]:
        return []

    @property
    def name(self) -> str:
        return f"shop-{self.color}"

    def upstreams(self) -> list[str]:
        return [f"shop-web-{self.color}:8080"]

    def instances(self) -> list[Instance]:
        return list(self.running)

    def health(self, instances: list[Instance] | None = None) -> Health:
        return judge(self.running if instances is None else instances, ["web"])

    def version(self, instances: list[Instance] | None = None) -> str | None:
        return agreed({c.version for c in (self.running if instances is None else instances)})

    def image_id(self, instances: list[Instance] | None = None) -> str | None:
        return agreed({c.image_id for c in (self.running if instances is None else instances)})

    def retained(self, instances: list[Instance] | None = None) -> bool:
        found = self.running if instances is None else instances
        return bool(found) and all(c.state == "exited" for c in found)

    def start(self, version: str) -> None:
        self.platform.step("start", self.color)
        ref = f"{REPO}:{version}"
        health = "unhealthy" if version in self.platform.sick else "healthy"
        image = self.platform.images.tags[ref]
        self.running = [
            Instance(
                f"id-{self.color}-{version}", f"{self.name}-web-1", "web", ref, image, "running", health, 0
            )
        ]

    def resume(self) -> None:
        self.platform.step("resume", self.color)
        self.running = [replace_state(c, "running", "healthy") for c in self.running]

    def stop(self) -> None:
        self.platform.step("stop", self.color)
        self.running = [replace_state(c, "exited", None) for c in self.running]

    def remove(self) -> None:
        self.platform.step("remove", self.color)
        self.running = []

    def wait_healthy(self, *, timeout: float, interval: float, progress: Progress) -> float:
        self.platform.step("health", self.color)
        health = self.health()
        if not health.healthy:
            raise HealthCheckFailed(f"{self.color} failed its health check: {health.reason}", "")
        return 0.0


def replace_state(instance: Instance, state: str, health: str | None) -> Instance:
    return replace(instance, state=state, health=health)


class FakePlatform:
    def __init__(self) -> None:
        self.images = FakeImages()
        self.colors = {color: FakeColor(self, color) for color in Color}
        self.sick: set[str] = set()  # versions whose instances are unhealthy
        self.wrong: set[str] = set()  # versions that answer something else through Caddy
        self.dies_in_verify: Color | None = None  # this colour's instances exit during the verification
        self.interrupt_at: str | None = None  # raise KeyboardInterrupt at this step
        self.steps: list[tuple[str, str]] = []

    def step(self, what: str, color: object = "") -> None:
        self.steps.append((what, str(color)))
        if what == self.interrupt_at:
            raise KeyboardInterrupt(what)

    def color(self, color: Color) -> FakeColor:
        return self.colors[color]

    def observe(self) -> dict[Color, list[Instance]]:
        self.step("inspect")
        return {color: stack.instances() for color, stack in self.colors.items()}

    def host_id(self) -> str:
        return "fake-host"

    def architecture(self) -> tuple[str, str]:
        return "linux", "x86_64"

    def declared_images(self, version: str) -> dict[str, tuple[str, bool]]:
        return {"web": (f"{REPO}:{version}", True)}

    def pull(self, version: str, services: list[str] | None = None) -> None:
        self.step("pull")
        self.images.tags[f"{REPO}:{version}"] = f"sha256:image-of-{version}"

    def ensure_shared(self, version: str) -> None:
        pass

    def answers(self) -> bool:
        return True

    def proxy_log(self, since: float) -> list[str]:
        return []


class Guard:
    def check(self) -> None:
        pass


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    path = write_project(tmp_path, app="shop", image=REPO, port=9)
    verify = 'url = "http://127.0.0.1:9/version"'
    path.write_text(path.read_text().replace(verify, f'{verify}\ntimeout = "1s"\nwindow = "0s"'))
    return load_host(path, {}).app(None)


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def engine(
    config: AppConfig, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    with Registry(DIGEST, STORED).client() as registry:
        built = Deployment(config, progress=Quiet(), platform=platform, registry=registry)
        built.caddy = SimpleNamespace(in_flight=lambda upstreams: platform.step("drain") or 0)  # type: ignore[assignment]
        monkeypatch.setattr(drain, "QUIET", 0.0)
        monkeypatch.setattr(verification, "answer", lambda url, header, timeout=5.0: caddy(built, platform))
        yield built


def caddy(engine: Deployment, platform: FakePlatform) -> Answer:
    """What Caddy answers at the verify URL: the route file's colour, with the version it runs."""
    color = engine.switch.current()
    if color is None:
        return Answer(None, None, 503)
    platform.step("verify", color)
    if platform.dies_in_verify not in (None, color):  # once traffic moved away from it
        assert platform.dies_in_verify is not None
        platform.color(platform.dies_in_verify).running = []
        platform.dies_in_verify = None
    stack = platform.color(color)
    if not stack.health().healthy:
        return Answer(None, None, 502)
    version = stack.version()
    return Answer("garbage" if version in platform.wrong else version, color.value, 200)


def deploy(engine: Deployment, version: str) -> DeployResult:
    return engine.deploy(version, guard=Guard())


def serving(engine: Deployment) -> tuple[str, str | None]:
    """The route file's colour and the recorded live version."""
    recorded = engine.store.load().live
    return engine.switch.route_file.read_text(), recorded.version if recorded else None


def versions(platform: FakePlatform) -> dict[str, str | None]:
    return {
        color.value: stack.version() if stack.running else None for color, stack in platform.colors.items()
    }


# -- the flow ------------------------------------------------------------------------------------


def test_deploys_go_to_the_idle_colour_and_keep_the_old_one_for_a_rollback(
    engine: Deployment, platform: FakePlatform
) -> None:
    first = deploy(engine, "v1")
    assert (first.color, first.previous, first.digest) == (Color.BLUE, None, DIGEST)
    assert serving(engine) == ("blue", "v1")
    second = deploy(engine, "v2")
    assert second.color is Color.GREEN and second.previous is not None and second.previous.version == "v1"
    assert serving(engine) == ("green", "v2")
    assert platform.color(Color.BLUE).retained() and versions(platform) == {"blue": "v1", "green": "v2"}
    assert second.receipt is not None and second.moved is None
    assert ("stop", "blue") in platform.steps and ("remove", "green") not in platform.steps


def test_the_live_version_again_is_a_noop(engine: Deployment, platform: FakePlatform) -> None:
    deploy(engine, "v1")
    platform.steps.clear()
    again = deploy(engine, "v1")
    assert again.noop and again.message == "v1 is already live on blue"
    assert not [step for step in platform.steps if step[0] in ("start", "stop", "remove", "resume")]


def test_a_failed_health_check_switches_nothing_and_removes_the_target(
    engine: Deployment, platform: FakePlatform
) -> None:
    deploy(engine, "v1")
    platform.sick.add("v2")
    with pytest.raises(HealthCheckFailed) as failed:
        deploy(engine, "v2")
    assert serving(engine) == ("blue", "v1")
    assert platform.color(Color.GREEN).running == [] and engine.store.load().pending is None
    run = run_of(failed.value)
    assert run is not None and run.started and not run.switched and run.receipt is not None


def test_a_failed_verification_switches_back(engine: Deployment, platform: FakePlatform) -> None:
    deploy(engine, "v1")
    platform.wrong.add("v2")
    with pytest.raises(DeployFailed, match="did not answer v2 from green") as failed:
        deploy(engine, "v2")
    run = run_of(failed.value)
    assert run is not None and run.switched and run.moved_at is not None and run.receipt is not None
    assert serving(engine) == ("blue", "v1")
    assert versions(platform) == {"blue": "v1", "green": None}


def test_an_old_colour_that_died_during_the_verification_leaves_the_new_one_serving(
    engine: Deployment, platform: FakePlatform
) -> None:
    deploy(engine, "v1")
    platform.wrong.add("v2")
    platform.dies_in_verify = Color.BLUE
    with pytest.raises(DeployFailed, match="v2 is left serving on green"):
        deploy(engine, "v2")
    assert serving(engine) == ("green", "v2")
    assert ("remove", "green") not in platform.steps


def test_a_rollback_resumes_the_retained_colour(engine: Deployment, platform: FakePlatform) -> None:
    deploy(engine, "v1")
    deploy(engine, "v2")
    platform.steps.clear()
    back = engine.rollback(guard=Guard())
    assert (back.kind, back.version, back.color) == ("rollback", "v1", Color.BLUE)
    assert serving(engine) == ("blue", "v1")
    assert ("resume", "blue") in platform.steps and ("pull", "") not in platform.steps
    assert platform.color(Color.GREEN).retained()


def test_a_rollback_records_what_it_left_until_that_version_goes_live_again(
    engine: Deployment, platform: FakePlatform
) -> None:
    """What an operator rolled back from is recorded with its digest (the triggers hold it back,
    watcher/host.py), kept by the deploys in between, and dropped once it goes live again."""
    deploy(engine, "v1")
    deploy(engine, "v2")
    engine.rollback(guard=Guard())
    held = engine.store.load().rolled_back
    assert [(entry.version, entry.digest) for entry in held] == [("v2", DIGEST)] and held[0].at
    assert engine.store.load().withheld("v2", DIGEST) == held[0]
    assert engine.store.load().withheld("v2", "sha256:" + "0" * 64) is None  # a new digest is not held
    engine.caddy.upstreams = dict  # type: ignore[attr-defined]  # the admin API answers
    assert f"rolled back from: v2@{DIGEST[:19]} at {held[0].at}" in format_status(status(engine, None))
    deploy(engine, "v3")
    assert engine.store.load().rolled_back == held
    deploy(engine, "v2")  # an operator asks for it again
    assert engine.store.load().rolled_back == ()


def test_a_waiting_colour_is_promoted_or_aborted(engine: Deployment, platform: FakePlatform) -> None:
    deploy(engine, "v1")
    engine.config = replace(engine.config, promote=PromoteSettings(manual=True))
    waiting = deploy(engine, "v2")
    assert waiting.awaiting and awaiting(engine.store.load().pending)
    assert serving(engine) == ("blue", "v1") and versions(platform)["green"] == "v2"
    promoted = engine.promote(guard=Guard())
    assert promoted.version == "v2" and serving(engine) == ("green", "v2")
    assert engine.store.load().pending is None
    assert deploy(engine, "v3").awaiting
    said = engine.abort_awaited(guard=Guard())
    assert said.startswith("removed shop-blue (v3); v2 is still live on green")
    assert serving(engine) == ("green", "v2") and versions(platform)["blue"] is None


def test_cleanup_keeps_the_rollback_target(engine: Deployment, platform: FakePlatform) -> None:
    for version in ("v1", "v2", "v3"):
        deploy(engine, version)
    removed = cleanup(engine, guard=Guard())
    assert removed == [f"{REPO}:v1"]
    assert versions(platform) == {"blue": "v3", "green": "v2"} and platform.color(Color.GREEN).retained()


@pytest.mark.parametrize("phase", ["pull", "inspect", "start", "health", "verify"])
def test_an_interrupt_before_the_record_leaves_the_old_version_serving(
    engine: Deployment, platform: FakePlatform, phase: str
) -> None:
    deploy(engine, "v1")
    platform.interrupt_at = phase
    with pytest.raises(KeyboardInterrupt) as interrupted:
        deploy(engine, "v2")
    platform.interrupt_at = None
    assert serving(engine) == ("blue", "v1")
    assert versions(platform) == {"blue": "v1", "green": None}
    assert engine.store.load().pending is None
    run = run_of(interrupted.value)
    assert run is not None and run.version == "v2"


@pytest.mark.parametrize("phase", ["drain", "stop"])
def test_an_interrupt_after_the_record_leaves_both_colours_running(
    engine: Deployment, platform: FakePlatform, phase: str
) -> None:
    deploy(engine, "v1")
    platform.interrupt_at = phase
    with pytest.raises(KeyboardInterrupt):
        deploy(engine, "v2")
    assert serving(engine) == ("green", "v2")
    assert all(stack.health().healthy for stack in platform.colors.values())
