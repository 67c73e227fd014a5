"""The smoke phase on the real stack: the idle colour previewed through the same Caddy with the
deploy's secret header, before the switch. One stack for every case (each starts from what
is live and deploys the other version)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from tests.harness.stack import Stack
from tests.harness.traffic import under_load

pytestmark = pytest.mark.integration

# Run by the smoke hook while the preview is open: what Caddy answers to the right secret, and to
# no header, an empty one, a wrong one and a made-up token; then it holds the preview open while
# the test's load runs. Stdlib only, no proxy from the environment.
PROBE = r"""
import json, os, time, urllib.request

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
url = os.environ["WATCHER_PREVIEW_URL"] + "/version"
name, _, secret = os.environ["WATCHER_PREVIEW_HEADER"].partition(": ")

def ask(headers):
    with opener.open(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return [response.headers.get("X-Watcher-Color"), response.read().decode().strip()]

seen = {"start": time.monotonic()}
seen["right"] = ask({name: secret})
seen["none"] = ask({})
seen["empty"] = ask({name: ""})
seen["wrong"] = ask({name: secret[:-1] + ("A" if secret[-1] != "A" else "B")})
seen["made_up"] = ask({name: "x" * 43})
time.sleep(2)
seen["right_again"] = ask({name: secret})
preview = os.path.join(".watcher", "run", os.environ["WATCHER_APP"] + ".preview")
seen["mode"] = oct(os.stat(preview).st_mode & 0o777)
seen["env"] = {k: os.environ[k] for k in ("WATCHER_VERSION", "WATCHER_COLOR", "WATCHER_PREVIEW_URL")}
seen["secret_alone"] = os.environ["WATCHER_PREVIEW_SECRET"] == secret
seen["end"] = time.monotonic()
with open("smoke.json", "w") as out:
    json.dump(seen, out)
"""


@pytest.fixture(scope="module")
def smoke_stack(app_images: dict[str, str]) -> Iterator[Stack]:
    created = Stack.create()
    try:
        proc = created.watcher("deploy", "v1")
        assert proc.returncode == 0, proc.stderr
        yield created
    finally:
        created.destroy()


def live_and_other(stack: Stack) -> tuple[str, str, str, str]:
    """(live colour, live version, idle colour, the version to deploy)."""
    status = stack.status()
    color, version = status["live_color"], status["live_version"]
    return color, version, "green" if color == "blue" else "blue", "v2" if version == "v1" else "v1"


def assert_nothing_switched(stack: Stack, color: str, version: str, idle: str) -> None:
    assert stack.live_route() == color
    assert stack.version() == version
    status = stack.status()
    assert (status["live_color"], status["live_version"]) == (color, version)
    assert status["colors"][idle]["role"] == "absent", status["colors"][idle]
    assert status["in_sync"] and not status["warnings"], status
    assert not (stack.route_file.parent / f"{stack.name}.preview").exists(), "the preview file is gone"


def test_a_failing_smoke_check_aborts_with_nothing_switched(smoke_stack: Stack) -> None:
    color, version, idle, other = live_and_other(smoke_stack)
    smoke_stack.write_config(
        extra='\n[[smoke]]\npath = "/version"\nbody_contains = "v"\n\n[[smoke]]\npath = "/nope"\n'
    )
    proc = smoke_stack.watcher("deploy", other)
    assert proc.returncode == 1, proc.stderr
    assert "smoke check GET /version" in proc.stderr, "the checks run in order"
    assert "smoke check GET /nope: expected 200, got 404: not found" in proc.stderr, proc.stderr
    assert "smoke FAILED" in proc.stderr
    assert_nothing_switched(smoke_stack, color, version, idle)


def test_a_failing_smoke_hook_aborts_with_its_output_and_never_the_secret(smoke_stack: Stack) -> None:
    color, version, idle, other = live_and_other(smoke_stack)
    smoke_stack.write_config(
        extra='smoke = ["sh", "-c", "echo \\"sent $WATCHER_PREVIEW_HEADER\\"; '
        'echo orders page exploded >&2; exit 4"]\n'
    )
    proc = smoke_stack.watcher("deploy", other)
    assert proc.returncode == 1, proc.stderr
    assert (
        "smoke hook exited 4: sent X-Watcher-Preview: <preview secret> | orders page exploded" in proc.stderr
    ), proc.stderr
    assert_nothing_switched(smoke_stack, color, version, idle)


def test_load_never_reaches_the_previewed_colour(smoke_stack: Stack) -> None:
    """Non-retrying load through Caddy during a deploy whose smoke phase passes: every answer
    comes from the live colour until the switch, none from the previewed colour while previewed;
    only the right secret reaches it."""
    color, version, idle, other = live_and_other(smoke_stack)
    (smoke_stack.root / "smoke_probe.py").write_text(PROBE)
    smoke_stack.write_config(
        extra=f"smoke = {json.dumps([sys.executable, 'smoke_probe.py'])}\n"
        f'\n[[smoke]]\npath = "/version"\nbody_contains = "{other}"\n'
    )
    with under_load(smoke_stack) as loads:
        proc = smoke_stack.watcher("deploy", other)
        assert proc.returncode == 0, proc.stderr
    seen = json.loads((smoke_stack.root / "smoke.json").read_text())

    assert loads.sent > 0 and loads.failed == 0, loads.describe()
    assert loads.colors() == {color, idle}, loads.describe()
    first_idle = loads.first_seen(idle)
    assert first_idle is not None and first_idle > seen["end"], (
        f"a load request was answered by {idle} at {first_idle}, "
        f"while it was previewed ({seen['start']}..{seen['end']})"
    )
    assert seen["right"] == seen["right_again"] == [idle, other]
    for case in ("none", "empty", "wrong", "made_up"):
        assert seen[case] == [color, version], (case, seen[case])
    assert seen["mode"] == "0o600" and seen["secret_alone"]
    assert seen["env"] == {
        "WATCHER_VERSION": other,
        "WATCHER_COLOR": idle,
        "WATCHER_PREVIEW_URL": smoke_stack.url,
    }
    assert "smoke: " in proc.stderr and "smoke check GET /version" in proc.stderr
    assert smoke_stack.live_route() == idle and smoke_stack.version() == other
    assert not (smoke_stack.route_file.parent / f"{smoke_stack.name}.preview").exists()
