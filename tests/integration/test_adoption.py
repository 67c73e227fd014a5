"""`watcher init` end to end on the real Docker engine: a user's own compose file (web, worker,
postgres, redis, caddy; tests/fixtures/adoption/compose.yml on the offline test images) is
refused while web binds a host port, adopted once that is fixed, and then deployed twice, the
second time under load, with no failed request and the shared services' containers kept.
A published-style file with no Caddy is adopted with init's own edits alone (the Caddy it adds,
the host port moved to it, `patch -p1 < watcher-init.diff`), init asks Docker whether the
networks nobody shared creates exist, and reads a tag scheme off the real registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.leftovers import claim
from tests.harness.registry import push_images
from tests.harness.stack import APP_REPO, CADDY_IMAGE, REDIS_IMAGE, REGISTRY, Stack, free_port
from tests.harness.traffic import under_load

# Without patch(1): a skip on a developer machine, a failure under CI (scripts/install.sh installs it).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("patch") is None and os.environ.get("CI") != "true",
        reason="needs patch(1) to apply the diff init prints",
    ),
]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "adoption" / "compose.yml"
HOST_PORT = '    ports:\n      - "8080:8080"           # handy in development; Caddy proxies to web:8080\n'
USERS_CADDYFILE = ":80 {\n\treverse_proxy web:8080\n}\n"


@pytest.fixture
def adopted(app_images: dict[str, str]) -> Iterator[Stack]:
    """A copy of the user's compose file, before adoption, on the offline images ("postgres" is
    the test redis: no postgres image can be pulled here), with a unique project and port."""
    name = f"wa{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix=f"watcher-{name}-"))
    claim(root)
    stack = Stack(root, name, free_port())
    text = FIXTURE.read_text()
    for old, new in [
        ("name: shop\n", f"name: {name}\n"),
        ("ghcr.io/acme/shop:1.4.2", f"{APP_REPO}:v1"),
        ("postgres:16", REDIS_IMAGE),
        ("redis:7.4", REDIS_IMAGE),
        ("caddy:2.11", CADDY_IMAGE),
        ('"80:80"', f'"127.0.0.1:{stack.port}:80"'),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    (root / "compose.yml").write_text(text)
    (root / "Caddyfile").write_text(USERS_CADDYFILE)
    (root / "config").mkdir()
    (root / "config" / "shop.ini").write_text("[shop]\n")
    try:
        yield stack
    finally:
        stack.destroy()


def plain_compose(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` as the user types it: no -p, no profile, no watcher variables."""
    return subprocess.run(["docker", "compose", *args], cwd=stack.root, capture_output=True, text=True)


def init(stack: Stack) -> subprocess.CompletedProcess[str]:
    return stack.watcher(
        "init",
        "--service",
        "web:8080",
        "--service",
        "worker",
        "--verify-url",
        f"{stack.url}/version",
        "--yes",
    )


def test_adopt_then_deploy_twice_under_load(adopted: Stack) -> None:
    stack, root = adopted, adopted.root
    # The user's data services run today, started from their own file.
    assert plain_compose(stack, "up", "-d", "postgres", "redis").returncode == 0
    shared_before = stack.container_ids(stack.name)

    refused = init(stack)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert 'web: ports "8080:8080": a host port can be bound by one colour only' in refused.stderr
    assert not (root / "compose.blue.yml").exists() and not (root / "watcher.toml").exists()

    # The user's fix: no host port on web.
    compose = root / "compose.yml"
    compose.write_text(compose.read_text().replace(HOST_PORT, ""))
    adopting = init(stack)
    assert adopting.returncode == 0, adopting.stdout + adopting.stderr
    out = adopting.stdout
    for name in ("compose.blue.yml", "compose.green.yml", "watcher.toml", f"Caddyfile.{stack.name}"):
        assert (root / name).is_file(), name

    # Step 1: apply the printed diff. Step 2: Caddy serves the app's Caddyfile (it fronts only
    # this app), and is recreated with the run directory the diff mounts.
    assert "saved as watcher-init.diff" in out
    with (root / "watcher-init.diff").open() as diff:  # README's `patch -p1 < watcher-init.diff`
        subprocess.run(["patch", "-p1"], stdin=diff, cwd=root, check=True, capture_output=True)
    text = compose.read_text()
    compose.write_text(
        text.replace(
            "./Caddyfile:/etc/caddy/Caddyfile:ro", f"./Caddyfile.{stack.name}:/etc/caddy/Caddyfile:ro"
        )
    )
    up = plain_compose(stack, "up", "-d")
    assert up.returncode == 0, up.stderr
    running = stack.container_ids(stack.name)
    assert {n: running[n] for n in shared_before} == shared_before, (
        "postgres and redis are kept, not recreated"
    )
    assert not any("-web-" in n or "-worker-" in n for n in running), (
        "the app profile keeps web and worker out"
    )

    fast = {"HEALTH_CHECK_INTERVAL": "1s", "VERIFY_WINDOW": "2s"}
    first = stack.watcher("deploy", "v1", **fast)
    assert first.returncode == 0, first.stdout + first.stderr
    assert stack.version() == "v1"
    with under_load(
        stack, fast_rate=100, slow_rate=20
    ) as loads:  # the busybox app is the bottleneck above (issue 9)
        second = stack.watcher("deploy", "v2", **fast)
    assert second.returncode == 0, second.stdout + second.stderr
    assert loads.failed == 0, loads.describe()
    assert loads.sent > 100, loads.describe()
    assert loads.versions() == {"v1", "v2"}
    assert stack.version() == "v2"

    assert stack.containers_of("green", "worker"), "the worker runs per colour"
    assert stack.health(stack.containers_of("green", "worker")[0]) == "running"
    after = stack.container_ids(stack.name)
    assert {n: after[n] for n in shared_before} == shared_before, "deploys never recreate shared services"


# A published compose file's shape (umami's, on the offline images): the app publishes its port,
# waits for its database, which keeps a named volume; no Caddy; a network only the app joins.
PUBLISHED = """\
name: {name}
services:
  app:
    image: {repo}:v1
    ports:
      - "127.0.0.1:{port}:8080"
    depends_on: [db]
    networks: [default, metrics]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
      interval: 2s
      retries: 3
  db:
    image: {redis}
    volumes:
      - db-data:/data
networks:
  metrics:
volumes:
  db-data:
"""


@pytest.fixture
def published(app_images: dict[str, str]) -> Iterator[Stack]:
    name = f"wa{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix=f"watcher-{name}-"))
    claim(root)
    stack = Stack(root, name, free_port())
    (root / "compose.yml").write_text(
        PUBLISHED.format(name=name, repo=APP_REPO, port=stack.port, redis=REDIS_IMAGE)
    )
    try:
        yield stack
    finally:
        stack.destroy()
        subprocess.run(["docker", "network", "rm", f"{name}_metrics"], capture_output=True)


def test_a_file_without_caddy_is_adopted_with_inits_edits_alone(published: Stack) -> None:
    stack, root = published, published.root
    # As the user runs it today: `docker compose up`, the app on its own host port.
    assert plain_compose(stack, "up", "-d").returncode == 0
    shared_before = stack.container_ids(stack.name)
    adopting = stack.watcher(
        "init", "--service", "app:8080", "--caddy-image", CADDY_IMAGE,
        "--verify-url", f"{stack.url}/version", "--yes",
    )  # fmt: skip
    assert adopting.returncode == 0, adopting.stdout + adopting.stderr
    out = adopting.stdout
    assert "wrote compose.watcher.yml (the Caddy service your compose file lacks)" in out
    # The network the user's own `up` created: Docker is asked, and no `external: true` is advised.
    assert f"but {stack.name}_metrics exists (your own `docker compose up` made it)" in out
    assert "external: true" not in out.split("Steps left:")[1]

    # The steps, as printed: patch, remove the uncoloured app, deploy.
    with (root / "watcher-init.diff").open() as diff:
        subprocess.run(["patch", "-p1"], stdin=diff, cwd=root, check=True, capture_output=True)
    removed = plain_compose(stack, "-p", stack.name, "--profile", "app", "rm", "--stop", "--force", "app")
    assert removed.returncode == 0, removed.stderr
    fast = {"HEALTH_CHECK_INTERVAL": "1s", "VERIFY_WINDOW": "2s"}
    first = stack.watcher("deploy", "v1", **fast)
    assert first.returncode == 0, first.stdout + first.stderr
    assert stack.version() == "v1", "Caddy answers on the port the app published"
    with under_load(stack, fast_rate=100, slow_rate=20) as loads:
        second = stack.watcher("deploy", "v2", **fast)
    assert second.returncode == 0, second.stdout + second.stderr
    assert loads.failed == 0 and loads.sent > 100, loads.describe()
    assert stack.version() == "v2"
    after = stack.container_ids(stack.name)
    assert {n: after[n] for n in shared_before if "-db-" in n} == {
        n: i for n, i in shared_before.items() if "-db-" in n
    }, "the database is kept, not recreated"
    assert any("-caddy-" in n for n in after), "Caddy runs in the shared project"


def test_a_tag_scheme_that_is_not_semver_is_read_off_the_registry(published: Stack) -> None:
    stack, root = published, published.root
    repo = f"watcher-test/init-tags-{uuid.uuid4().hex[:8]}"
    tags = ["postgresql-v2.9.0", "postgresql-v2.13.0", "mysql-v2.14.0", "postgresql-v2.10.1", "latest"]
    push_images(f"http://{REGISTRY}", repo, tags)
    compose = root / "compose.yml"
    compose.write_text(compose.read_text().replace(f"{APP_REPO}:v1", f"{REGISTRY}/{repo}:postgresql-v2.9.0"))
    adopting = stack.watcher(
        "init", "--service", "app:8080", "--verify-url", f"{stack.url}/version", "--yes"
    )  # fmt: skip
    assert adopting.returncode == 0, adopting.stdout + adopting.stderr
    assert "regex policy 'postgresql-v(?P<order>\\d+\\.\\d+\\.\\d+)'" in adopting.stdout
    assert "picks postgresql-v2.13.0" in adopting.stdout
    checked = stack.watcher("check-tags", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert '"candidate": "postgresql-v2.13.0"' in checked.stdout

    # A registry that does not answer: said, and no policy proposed.
    silent = f"127.0.0.1:{free_port()}/{repo}"
    compose.write_text(compose.read_text().replace(f"{REGISTRY}/{repo}", silent))
    (root / "watcher.toml").unlink()  # a rewrite would keep the policy written above
    again = stack.watcher(
        "init", "--service", "app:8080", "--verify-url", f"{stack.url}/version", "--yes", "--force"
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"could not list the tags of {silent}" in again.stdout
    assert "[apps." + stack.name + ".policy]" not in (root / "watcher.toml").read_text()
