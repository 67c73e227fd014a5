"""The whole deploy flow through the real `Deployment`, on an in-memory platform: the seam
(watcher/platforms/base.py) is all the flow needs. The route file is the real `TrafficSwitch`'s,
in tmp_path; only the services around it are stood in for: the registry (as in test_arch.py),
Caddy's answers at the verify URL (the route file's colour answers with the version it runs) and
Caddy's admin API (nothing in flight, so drains end at once).
"""

from __future__ import annotations

import json
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
from watcher.engine import deployment, drain, unwind, verification
from watcher.engine.deployment import Deployment
from watcher.engine.maintenance import cleanup
from watcher.engine.promotion import promoting
from watcher.engine.run import DeployResult, run_of
from watcher.engine.state import PROMOTED, ROLLED_BACK, UNVERIFIED, VERIFIED, Pending, awaiting
from watcher.engine.status import format_status, status
from watcher.engine.verification import Answer
from watcher.errors import DeployFailed, UsageError
from watcher.platforms.base import agreed
from watcher.platforms.color import Color
from watcher.platforms.health import Health, judge
from watcher.platforms.health_check import HealthCheckFailed
from watcher.progress import Progress
from watcher.queue.outcome import unchanged

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
        self.networks: list[str] = []  # a half-failed start's, without instances

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
        return bool(found) and all(c.state in ("exited", "created") for c in found)

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
        self.running, self.networks = [], []

    def leftovers(self) -> list[str]:
        return [] if self.running else [f"network {n}" for n in self.networks]

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

    def proxy_containers(self, run_dir: Path) -> list[str]:
        return []

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
    with pytest.raises(DeployFailed, match="v2 is left serving on green, unverified"):
        deploy(engine, "v2")
    assert serving(engine) == ("green", "v2")
    assert ("remove", "green") not in platform.steps


# -- how a release came to be live (issue 20, defect 5) -------------------------------------------


def hows(engine: Deployment) -> tuple[str | None, str | None]:
    state = engine.store.load()
    return (state.live.how if state.live else None, state.previous.how if state.previous else None)


def test_a_release_left_serving_is_recorded_unverified_and_status_says_so(
    engine: Deployment, platform: FakePlatform
) -> None:
    deploy(engine, "v1")
    assert hows(engine) == (VERIFIED, None)
    platform.wrong.add("v2")
    platform.dies_in_verify = Color.BLUE
    with pytest.raises(DeployFailed) as failed:
        deploy(engine, "v2")
    assert hows(engine) == (UNVERIFIED, VERIFIED)
    audit = unchanged(engine, {}, failed.value)  # what the job's history keeps
    assert (audit.before, audit.after) == ("v1", "v2") and "unverified" in str(failed.value)
    view = engine.view()
    assert view.in_sync and view.live is not None and view.live.unverified
    assert any("v2 on green serves unverified" in warning for warning in view.warnings), view.warnings


def test_the_unverified_version_deployed_again_is_verified_on_the_other_colour(
    engine: Deployment, platform: FakePlatform
) -> None:
    deploy(engine, "v1")
    platform.wrong.add("v2")
    platform.dies_in_verify = Color.BLUE
    with pytest.raises(DeployFailed):
        deploy(engine, "v2")
    platform.wrong.clear()
    again = deploy(engine, "v2")
    assert not again.noop and serving(engine) == ("blue", "v2")
    assert hows(engine) == (VERIFIED, UNVERIFIED) and engine.rollback_target(engine.view()) is None
    assert deploy(engine, "v2").noop  # verified now: the usual no-op


def test_an_unverified_release_is_never_the_rollback_target_unawares(
    engine: Deployment, platform: FakePlatform
) -> None:
    """Once a verified deploy replaced it, the unverified release is the previous one: `status`
    names it unverified, and `rollback` goes to it only when it is named (`--to`)."""
    deploy(engine, "v1")
    platform.wrong.add("v2")
    platform.dies_in_verify = Color.BLUE
    with pytest.raises(DeployFailed):
        deploy(engine, "v2")
    platform.wrong.clear()
    deploy(engine, "v3")
    assert hows(engine) == (VERIFIED, UNVERIFIED) and engine.view().warnings == []
    target = engine.rollback_target(engine.view())
    assert target is not None and target.to_dict()["unverified"]
    assert target.describe() == "v2 (instant: retained on green; unverified: it never passed verification)"
    with pytest.raises(UsageError, match=r"v2 never passed verification .*`watcher rollback --to v2`"):
        engine.rollback(guard=Guard())
    assert serving(engine) == ("blue", "v3")
    back = engine.rollback(guard=Guard(), to="v2")
    assert back.version == "v2" and serving(engine) == ("green", "v2")
    assert hows(engine) == (ROLLED_BACK, VERIFIED)  # verified by the rollback itself


def test_both_colours_dead_after_the_switch_leave_the_new_one_recorded_unverified(
    engine: Deployment, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(engine, "v1")

    def everything_died(url: str, header: str | None, timeout: float = 5.0) -> Answer:
        if engine.switch.current() != Color.GREEN:  # the check of the live route, before the switch
            return caddy(engine, platform)
        for stack in platform.colors.values():
            stack.running = []
        return Answer(None, None, 502)

    monkeypatch.setattr(verification, "answer", everything_died)
    with pytest.raises(DeployFailed, match=r"traffic stays on green \(v2, unverified\)"):
        deploy(engine, "v2")
    assert serving(engine) == ("green", "v2") and hows(engine) == (UNVERIFIED, VERIFIED)


def test_a_promotion_and_an_older_state_file_say_how(engine: Deployment, platform: FakePlatform) -> None:
    deploy(engine, "v1")
    engine.config = replace(engine.config, promote=PromoteSettings(manual=True))
    deploy(engine, "v2")
    engine.promote(guard=Guard())
    assert hows(engine) == (PROMOTED, VERIFIED)
    raw = json.loads(engine.store.path.read_text())
    del raw["live"]["how"], raw["previous"]["how"]  # written before `how` existed
    engine.store.path.write_text(json.dumps(raw))
    assert hows(engine) == (None, None) and engine.view().in_sync
    assert engine.rollback_target(engine.view()) is not None  # not judged unverified


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


def waiting_v2(engine: Deployment) -> Pending:
    """v1 live on blue, v2 awaiting promotion on green; the waiting note."""
    deploy(engine, "v1")
    engine.config = replace(engine.config, promote=PromoteSettings(manual=True))
    assert deploy(engine, "v2").awaiting
    note = engine.store.load().pending
    assert note is not None and awaiting(note)
    return note


def stopped_promote(engine: Deployment, note: Pending, phase: str, *, switched: bool) -> None:
    """What a promote leaves when its worker is killed (kill -9) in `phase`: its note, the
    prepared record, and the route file moved if it got that far."""
    engine.store.save(replace(engine.store.load(), pending=replace(promoting(note), phase=phase, pid=1)))
    if switched:
        engine.switch.route_file.write_text("green")


@pytest.mark.parametrize(("phase", "switched"), [("promote", False), ("switch", True), ("verify", True)])
def test_a_promote_whose_worker_died_is_taken_over_and_completed(
    engine: Deployment, platform: FakePlatform, phase: str, switched: bool
) -> None:
    note = waiting_v2(engine)
    stopped_promote(engine, note, phase, switched=switched)
    done = engine.promote(guard=Guard(), version="v2")
    assert (done.version, done.color) == ("v2", Color.GREEN) and not done.noop
    recorded = engine.store.load()
    assert serving(engine) == ("green", "v2") and recorded.pending is None
    assert recorded.previous is not None and recorded.previous.version == "v1"
    assert platform.color(Color.BLUE).retained() and ("verify", "green") in platform.steps
    assert any("taking over the promote of v2 on green" in line for line in engine.progress.lines)  # type: ignore[attr-defined]


def test_a_promote_that_recorded_its_version_before_it_died_retires_the_old_colour(
    engine: Deployment, platform: FakePlatform
) -> None:
    waiting_v2(engine)
    platform.interrupt_at = "drain"
    with pytest.raises(KeyboardInterrupt):
        engine.promote(guard=Guard(), version="v2")
    platform.interrupt_at = None
    assert serving(engine) == ("green", "v2") and platform.color(Color.BLUE).health().healthy
    done = engine.promote(guard=Guard(), version="v2")
    assert done.noop and done.message.startswith("v2 is live on green (promoted;")
    assert platform.color(Color.BLUE).retained() and engine.store.load().pending is None


@pytest.mark.parametrize("how", ["interrupted", "failed"])
def test_an_unwound_promote_switches_back_and_its_colour_waits_again(
    engine: Deployment, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """SIGTERM in the verification (issue 20, defect 2), or a failed one: traffic goes back to
    blue, green keeps running v2 and awaits promotion again until the same moment."""
    note = waiting_v2(engine)
    if how == "interrupted":

        def stopped(*args: object) -> None:
            raise KeyboardInterrupt("SIGTERM")

        monkeypatch.setattr(deployment, "verify", stopped)
    else:
        platform.wrong.add("v2")
    with pytest.raises(KeyboardInterrupt if how == "interrupted" else DeployFailed):
        engine.promote(guard=Guard(), version="v2")
    assert serving(engine) == ("blue", "v1") and versions(platform) == {"blue": "v1", "green": "v2"}
    again = engine.store.load().pending
    assert (
        again is not None
        and awaiting(again)
        and (again.version, again.until, again.image)
        == (
            note.version,
            note.until,
            note.image,
        )
    )
    assert ("remove", "green") not in platform.steps
    monkeypatch.setattr(deployment, "verify", verification.verify)
    platform.wrong.clear()
    assert engine.promote(guard=Guard(), version="v2").color is Color.GREEN
    assert serving(engine) == ("green", "v2")


def test_a_taken_over_promote_whose_colour_sickened_waits_again_with_nothing_switched(
    engine: Deployment, platform: FakePlatform
) -> None:
    note = waiting_v2(engine)
    stopped_promote(engine, note, "promote", switched=False)
    platform.color(Color.GREEN).running = [
        replace_state(c, "running", "unhealthy") for c in platform.color(Color.GREEN).running
    ]
    with pytest.raises(DeployFailed, match="was not promoted and nothing was switched"):
        engine.promote(guard=Guard(), version="v2")
    assert serving(engine) == ("blue", "v1") and awaiting(engine.store.load().pending)


@pytest.mark.parametrize("how", ["abort", "expiry"])
def test_an_abort_or_expiry_undoes_a_promote_left_halfway_then_removes_its_colour(
    engine: Deployment, platform: FakePlatform, how: str
) -> None:
    note = waiting_v2(engine)
    if how == "expiry":
        note = replace(note, until="2000-01-01T00:00:00+00:00")
    stopped_promote(engine, note, "verify", switched=True)
    said = engine.abort_awaited(guard=Guard()) if how == "abort" else engine.expire_awaited(guard=Guard())
    assert said is not None and "removed shop-green (v2); v1 is still live on blue" in said
    assert serving(engine) == ("blue", "v1") and versions(platform) == {"blue": "v1", "green": None}
    assert engine.store.load().pending is None


def test_cleanup_keeps_the_rollback_target(engine: Deployment, platform: FakePlatform) -> None:
    for version in ("v1", "v2", "v3"):
        deploy(engine, version)
    removed = cleanup(engine, guard=Guard())
    assert removed == [f"{REPO}:v1"]
    assert versions(platform) == {"blue": "v3", "green": "v2"} and platform.color(Color.GREEN).retained()


@pytest.mark.parametrize("state", ["exited", "created", "restarting", "running"])
def test_cleanup_keeps_the_rollback_target_in_any_state_an_engine_restart_leaves(
    engine: Deployment, platform: FakePlatform, state: str
) -> None:
    """Issue 20 #8: after a Docker engine restart the retained colour's containers can be
    created, restarting or running (its restart policy) as well as exited: cleanup keeps them
    (stopped, as a deploy leaves them) and the rollback that follows works."""
    deploy(engine, "v1")
    deploy(engine, "v2")
    blue = platform.color(Color.BLUE)
    blue.running = [replace_state(c, state, "healthy" if state == "running" else None) for c in blue.running]
    platform.steps.clear()
    assert cleanup(engine, guard=Guard()) == []
    lines = engine.progress.lines  # type: ignore[attr-defined]
    assert f"keeping blue (v1): the rollback target, {state} (use --include-rollback to remove it)" in lines
    assert versions(platform)["blue"] == "v1" and blue.retained()
    assert (("stop", "blue") in platform.steps) == (state in ("running", "restarting"))
    assert f"{REPO}:v1" in platform.images.tags
    back = engine.rollback(guard=Guard())
    assert (back.version, back.color) == ("v1", Color.BLUE) and serving(engine) == ("blue", "v1")


def test_cleanup_removes_a_later_deploys_leftovers_from_the_rollback_colour(
    engine: Deployment, platform: FakePlatform
) -> None:
    """The rollback colour holding another version (a deploy stopped before it could remove what
    it started there) is no rollback target: cleanup removes it, the target's image stays."""
    deploy(engine, "v1")
    deploy(engine, "v2")
    platform.pull("v3")
    platform.color(Color.BLUE).start("v3")
    assert cleanup(engine, guard=Guard()) == ["shop-blue (shop-blue-web-1)", f"{REPO}:v3"]
    assert versions(platform)["blue"] is None and f"{REPO}:v1" in platform.images.tags
    assert engine.rollback(guard=Guard()).version == "v1" and serving(engine) == ("blue", "v1")


def test_cleanup_removes_what_a_start_that_failed_half_way_left_of_the_idle_colour(
    engine: Deployment, platform: FakePlatform
) -> None:
    """Swarm: a `stack deploy` that failed creating a service leaves the stack's networks; the
    idle colour has no instance, yet cleanup removes them. The live colour's are never touched."""
    deploy(engine, "v1")
    platform.color(Color.GREEN).networks = ["shop-green_default"]
    platform.color(Color.BLUE).networks = ["shop-blue_default"]
    platform.steps.clear()
    removed = cleanup(engine, guard=Guard())
    assert removed == ["shop-green (network shop-green_default: left by a start that failed half-way)"]
    assert ("remove", "green") in platform.steps and ("remove", "blue") not in platform.steps
    assert platform.color(Color.GREEN).leftovers() == [] and serving(engine) == ("blue", "v1")
    assert cleanup(engine, guard=Guard()) == []


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


# -- a run killed between its switch and its record (kill -9: nothing unwinds) ----------------------


def killed_in_verify(engine: Deployment, run: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `run` (a callable) until its verification starts, then die there as kill -9 does:
    nothing unwinds."""
    mark = engine.ledger.mark

    def dies(phase: str) -> None:
        mark(phase)
        if phase == "verify":
            raise KeyboardInterrupt(phase)

    with monkeypatch.context() as patched:
        patched.setattr(engine.ledger, "mark", dies)
        patched.setattr(unwind, "fail", lambda *args: None)
        with pytest.raises(KeyboardInterrupt):
            run()  # type: ignore[operator]
    pending = engine.store.load().pending
    assert pending is not None and pending.phase == "verify"


def test_a_deploy_killed_in_its_verification_is_undone_and_run_again(
    engine: Deployment, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heir never takes the unverified colour for live: it switches back, then deploys and
    verifies the version itself (issue 20: a bake's switch-back killed before it switched)."""
    deploy(engine, "v1")
    killed_in_verify(engine, lambda: deploy(engine, "v2"), monkeypatch)
    assert engine.switch.current() is Color.GREEN
    platform.wrong.add("v2")  # its verification (or bake) rejects it
    with pytest.raises(DeployFailed, match="did not answer v2"):
        deploy(engine, "v2")
    lines = engine.progress.lines  # type: ignore[attr-defined]
    assert (
        "undoing a deploy of v2 interrupted during 'verify', before its record: traffic on green was never verified"
        in lines
    )
    assert serving(engine) == ("blue", "v1") and versions(platform) == {"blue": "v1", "green": None}
    assert engine.store.load().pending is None
    platform.wrong.clear()
    done = deploy(engine, "v2")
    assert not done.noop and serving(engine) == ("green", "v2")


def test_a_rollback_killed_in_its_verification_is_undone_and_run_again(
    engine: Deployment, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(engine, "v1")
    deploy(engine, "v2")
    killed_in_verify(engine, lambda: engine.rollback(guard=Guard(), to="v1"), monkeypatch)
    assert engine.switch.current() is Color.BLUE
    platform.steps.clear()
    back = engine.rollback(guard=Guard(), to="v1", done_if_live=True)
    assert not back.noop and serving(engine) == ("blue", "v1")
    assert ("stop", "blue") in platform.steps and ("resume", "blue") in platform.steps, "instant again"
    assert platform.color(Color.GREEN).retained()


def test_a_queued_rollback_found_live_is_done(engine: Deployment, platform: FakePlatform) -> None:
    """Its worker died after the record: the heir finds the version live (a no-op that syncs the
    record), where `watcher rollback --to` says it is live already."""
    deploy(engine, "v1")
    deploy(engine, "v2")
    engine.rollback(guard=Guard(), to="v1")
    again = engine.rollback(guard=Guard(), to="v1", done_if_live=True)
    assert again.noop and again.message == "v1 is already live on blue"
    with pytest.raises(UsageError, match="already live"):
        engine.rollback(guard=Guard(), to="v1")
