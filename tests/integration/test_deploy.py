"""End-to-end deploys on the real Docker engine, real Compose, real Caddy and a real registry,
driven through the `watcher` CLI with a strict, non-retrying keep-alive client on Caddy.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.harness.stack import Stack
from tests.harness.traffic import read_until, under_load

pytestmark = pytest.mark.integration


def deployed(stack: Stack, version: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = stack.watcher("deploy", version, **env)
    assert proc.returncode == 0, f"deploy {version} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_deploy_v1_then_v2_under_load_fails_no_request(stack: Stack) -> None:
    deployed(stack, "v1")
    assert stack.version() == "v1"
    caddy_before = stack.container_ids(stack.name)
    blue_before = stack.container_ids(f"{stack.name}-blue")

    with under_load(stack) as loads:
        deployed(stack, "v2")
    assert loads.failed == 0, loads.describe()
    assert loads.sent > 500
    assert loads.versions() == {"v1", "v2"}
    assert loads.results[0].last_versions[-5:] == ["v2"] * 5
    assert stack.version() == "v2"

    status = stack.status()
    assert (status["live_color"], status["live_version"]) == ("green", "v2")
    assert (status["previous_color"], status["previous_version"]) == ("blue", "v1")
    assert status["in_sync"] and not status["warnings"]
    assert [c["state"] for c in status["colors"]["blue"]["containers"]] == ["exited"]
    assert (stack.root / ".deployment-color").read_text().strip() == "green"
    # Shared services are never recreated; the retained colour keeps its containers.
    assert stack.container_ids(stack.name) == caddy_before
    assert stack.container_ids(f"{stack.name}-blue") == blue_before


def test_deploying_the_live_version_again_is_a_no_op(stack: Stack) -> None:
    deployed(stack, "v1")
    proc = deployed(stack, "v1")
    assert "already live" in proc.stdout
    assert stack.status()["colors"]["green"]["role"] == "absent"


def test_abrupt_app_still_loses_no_request(stack: Stack) -> None:
    """An app that dies at once on SIGTERM: only draining before the stop protects requests."""
    deployed(stack, "abrupt1")
    with under_load(stack) as loads:
        deployed(stack, "abrupt2")
        deployed(stack, "abrupt1")
    assert loads.failed == 0, loads.describe()
    assert stack.version() == "abrupt1"


def test_rollback_instant_then_full(stack: Stack) -> None:
    deployed(stack, "v1")
    v1_digest = stack.status()["live_digest"]
    deployed(stack, "v2")
    blue = stack.container_ids(f"{stack.name}-blue")

    with under_load(stack) as loads:
        proc = stack.watcher("rollback")
    assert proc.returncode == 0, proc.stderr
    assert "reusing retained blue containers of v1" in proc.stderr
    assert loads.failed == 0, loads.describe()
    assert stack.version() == "v1"
    assert stack.container_ids(f"{stack.name}-blue") == blue, "instant: the retained containers serve again"
    status = stack.status()
    assert (status["live_version"], status["previous_version"]) == ("v1", "v2")
    assert v1_digest and status["live_digest"] == v1_digest, (
        "the reused image keeps the digest it was pulled at"
    )

    # Without a retained colour, rollback is a full deploy of the previous version.
    clean = stack.watcher("cleanup", "--include-rollback")
    assert clean.returncode == 0 and f"{stack.name}-green" in clean.stdout
    with under_load(stack) as loads:
        proc = stack.watcher("rollback")
    assert proc.returncode == 0, proc.stderr
    assert loads.failed == 0, loads.describe()
    assert stack.version() == "v2"

    proc = stack.watcher("rollback", "--to", "v1")
    assert proc.returncode == 0 and stack.version() == "v1"
    proc = stack.watcher("rollback", "--to", "v1")
    assert proc.returncode == 2 and "already live" in proc.stderr


def test_rollback_with_nothing_to_go_back_to(stack: Stack) -> None:
    deployed(stack, "v1")
    proc = stack.watcher("rollback")
    assert proc.returncode == 2 and "nothing to roll back to" in proc.stderr


def test_cleanup_keeps_live_and_rollback_target_and_reset_removes_all(stack: Stack) -> None:
    deployed(stack, "v1")
    deployed(stack, "v2")
    proc = stack.watcher("cleanup")
    assert proc.returncode == 0
    assert "keeping blue (v1)" in proc.stderr
    status = stack.status()
    assert status["colors"]["blue"]["role"] == "rollback target"
    assert status["colors"]["green"]["role"] == "live"

    proc = stack.watcher("reset")
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert stack.version() == "v2", "an unconfirmed reset changes nothing"

    caddy = stack.container_ids(stack.name)
    proc = stack.watcher("reset", "--force")
    assert proc.returncode == 0, proc.stderr
    status = stack.status()
    assert status["live_color"] is None
    assert all(info["role"] == "absent" for info in status["colors"].values())
    assert not stack.state_file.exists()
    assert stack.container_ids(stack.name) == caddy, "shared services survive a reset"
    deployed(stack, "v1")
    assert stack.version() == "v1"


def test_pre_deploy_hook_runs_with_the_version_and_its_failure_aborts(stack: Stack) -> None:
    stack.write_config(pre_deploy=["sh", "-c", 'echo "$APP_VERSION $WATCHER_COLOR" > hook.out'])
    deployed(stack, "v1")
    assert (stack.root / "hook.out").read_text().split() == ["v1", "blue"]

    stack.write_config(pre_deploy=["sh", "-c", "echo migration exploded >&2; exit 3"])
    proc = stack.watcher("deploy", "v2")
    assert proc.returncode == 1
    assert "pre-deploy hook exited 3: migration exploded" in proc.stderr
    status = stack.status()
    assert status["live_version"] == "v1" and status["colors"]["green"]["role"] == "absent"


def test_bad_input_gives_a_clear_error_and_changes_nothing(stack: Stack) -> None:
    deployed(stack, "v1")
    before = stack.status()

    proc = stack.watcher("deploy", "v404")
    assert proc.returncode == 1
    assert "v404 does not exist in the registry" in proc.stderr

    proc = stack.watcher("deploy", "1.0;rm")
    assert proc.returncode == 2 and "invalid tag '1.0;rm'" in proc.stderr

    proc = stack.watcher("deploy", "v2", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert proc.returncode == 1 and "cannot reach the Docker engine" in proc.stderr

    proc = stack.watcher("deploy", "v2", WATCHER_CONFIG=str(stack.root / "missing.toml"))
    assert proc.returncode == 2 and "no configuration file" in proc.stderr

    after = stack.status()
    assert (after["live_color"], after["live_version"], after["colors"]["green"]["role"]) == (
        before["live_color"],
        before["live_version"],
        "absent",
    )
    assert stack.version() == "v1"


@pytest.mark.serial  # the lock is held for the 4 s slow boot only: beside other tests the CLI can take longer
def test_deploy_is_refused_while_another_holds_the_lock(stack: Stack) -> None:
    deployed(stack, "v1")
    proc = stack.spawn("deploy", "slowok")
    read_until(proc, "health: every")
    other = stack.watcher("deploy", "v2")
    assert other.returncode == 3 and "holds the deploy lock" in other.stderr
    assert "deploy slowok" in other.stderr
    status = stack.status()
    assert status["lock"] and status["lock"]["purpose"] == "deploy slowok"
    waited = stack.watcher("cleanup", "--wait-lock", "120")
    assert waited.returncode == 0, waited.stderr
    proc.wait(timeout=120)
    assert proc.returncode == 0


def test_a_state_recorded_on_another_docker_engine_is_refused(stack: Stack) -> None:
    """One Docker host per app: a watcher talking to another engine than the one the state was
    recorded on refuses, and changes nothing."""
    deployed(stack, "v1")
    state_file = stack.state_file
    state = json.loads(state_file.read_text())
    assert state["engine"], "the engine ID is recorded"
    state["engine"] = "ANOTHER:ENGINE"
    state_file.write_text(json.dumps(state))
    proc = stack.watcher("deploy", "v2")
    assert proc.returncode == 1 and "recorded on Docker engine ANOTHER:ENGINE" in proc.stderr, proc.stderr
    assert stack.version() == "v1" and stack.status()["colors"]["green"]["role"] == "absent"


@pytest.mark.parametrize(
    ("image_line", "wanted"),
    [
        (
            "image: 127.0.0.1:5000/someone-else/app:${APP_VERSION:-unset}",
            "service web: its image resolves to 127.0.0.1:5000/someone-else/app:v1, not the app's",
        ),
        (
            "image: 127.0.0.1:5000/watcher-test/app:v1",
            "no service of compose.yml takes its image tag from ${APP_VERSION}",
        ),
    ],
)
def test_a_compose_file_on_another_image_is_refused(stack: Stack, image_line: str, wanted: str) -> None:
    """compose.yml must run `app.image:<version>`: a hard-coded repository would deploy (and
    verify) something else than the config names."""
    compose = stack.root / "compose.yml"
    text = compose.read_text()
    compose.write_text(
        text.replace("image: ${APP_IMAGE:-127.0.0.1:5000/watcher/demo-app}:${APP_VERSION:-unset}", image_line)
    )
    proc = stack.watcher("deploy", "v1")
    assert proc.returncode == 1 and wanted in proc.stderr, proc.stderr
    assert stack.containers_of("blue") == [] and stack.containers_of("green") == []


def test_a_deploy_with_caddy_down_says_so_and_changes_nothing(stack: Stack) -> None:
    """Caddy stopped before a deploy: the route check says Caddy does not answer (not that the
    Caddyfile lacks the colour header), and nothing moves; with Caddy back the deploy goes."""
    deployed(stack, "v1")
    assert stack.compose("stop", "-t", "1", "caddy").returncode == 0
    refused = stack.watcher("deploy", "v2")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "does not answer" in refused.stderr and "is Caddy running?" in refused.stderr, refused.stderr
    assert "X-Watcher-Color header" not in refused.stderr, refused.stderr
    assert (stack.root / ".deployment-color").read_text().strip() == "blue"
    assert stack.status()["colors"]["green"]["role"] == "absent"
    assert stack.compose("start", "caddy").returncode == 0
    deployed(stack, "v2")
    assert stack.version() == "v2"
