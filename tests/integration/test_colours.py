"""The colour model on real Docker and Compose: a stack shaped like the published ones (umami,
chatwoot): web waits for a shared database (`service_healthy`, `restart: true`), for a worker
(`service_started`) on an image of its own that follows the app's version through a variable of
its own, and for a migration one-shot (`service_completed_successfully`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.harness import images
from tests.harness.stack import APP_REPO, REGISTRY, Stack

pytestmark = pytest.mark.integration

EXTRA = """
services:
  db:
    image: ${APP_IMAGE}:v1
    entrypoint: ["/bin/busybox", "sh", "-c", "exec /bin/busybox sleep 100000"]
    healthcheck: {test: ["CMD", "/bin/busybox", "true"], interval: 1s}
    volumes: [db-data:/data]
    networks: [web]
  web:
    depends_on:
      db: {condition: service_healthy, restart: true}
      worker: {condition: service_started}
      migrate: {condition: service_completed_successfully}
  worker:
    profiles: [app]
    image: ${STREAM_IMAGE}:${STREAM_VERSION:-v1}
    entrypoint: ["/bin/busybox", "sleep", "100000"]
    depends_on: [db]
    networks: [web]
  migrate:
    profiles: [app]
    image: ${APP_IMAGE}:${APP_VERSION:-unset}
    entrypoint: ["/bin/busybox", "sh", "-c", "echo migrated to $$APP_VERSION; exit ${MIGRATE_EXIT:-0}"]
    environment:
      APP_VERSION: ${APP_VERSION:-unset}
    networks: [web]
volumes:
  db-data:
"""
FILES = ("compose.yml", "compose.extra.yml")


@pytest.fixture
def colours(stack: Stack) -> Iterator[Stack]:
    stream = f"{REGISTRY}/watcher-test/stream-{stack.name}"  # the companion, on a repository of its own
    for version in ("v1", "v2"):
        images.push(images.tag(f"{APP_REPO}:{version}", f"{stream}:{version}"))
    (stack.root / "compose.extra.yml").write_text(EXTRA)
    with (stack.root / ".env").open("a") as env:
        env.write(f"STREAM_IMAGE={stream}\n")
    stack.write_config()
    config = stack.config.read_text().replace(
        'shared_services = ["caddy"]\n',
        'shared_services = ["caddy"]\ncompose_files = ["compose.yml", "compose.extra.yml"]\n',
    )
    config += "\n[services.worker]\nfollows_version = true\n\n[services.migrate]\n"
    stack.config.write_text(config)
    stack.write_caddyfile()
    stack.compose("up", "-d", "--wait", "db", files=FILES)  # the user's shared database
    try:
        yield stack
    finally:
        for version in ("v1", "v2"):
            docker("rmi", f"{stream}:{version}", check=False)


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def deployed(stack: Stack, version: str) -> str:
    proc = stack.watcher("deploy", version)
    assert proc.returncode == 0, f"deploy {version} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def ips(stack: Stack, color: str, service: str) -> set[str]:
    (name,) = stack.containers_of(color, service)
    return set(
        docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name).split()
    )


def resolve(stack: Stack, color: str, name: str) -> set[str]:
    """What `name` resolves to from `color`'s worker (Docker's embedded DNS)."""
    (worker,) = stack.containers_of(color, "worker")
    out = docker("exec", worker, "/bin/busybox", "nslookup", name, "127.0.0.11")
    answer = out.split("Name:", 1)[1] if "Name:" in out else ""
    return {line.split()[-1] for line in answer.splitlines() if line.strip().startswith("Address")}


def colour_volumes(stack: Stack) -> list[str]:
    return [
        v
        for v in docker("volume", "ls", "-q").split()
        if v.startswith((f"{stack.name}-blue", f"{stack.name}-green"))
    ]


def test_deploy_rollback_and_reset_with_every_depends_on_form(colours: Stack) -> None:
    stack = colours
    db = stack.container_ids(stack.name)[f"{stack.name}-db-1"]
    db_started = docker("inspect", "-f", "{{.State.StartedAt}}", db)

    out = deployed(stack, "v1")
    assert f"one-shot {stack.name}-blue-migrate-1 exited 0" in out and "migrated to v1" in out
    shown = stack.watcher("status", check=True).stdout
    assert f"{stack.name}-blue-migrate-1: exited (code 0), one-shot: done" in shown, shown
    out = deployed(stack, "v2")
    assert "migrated to v2" in out and stack.version() == "v2"
    green = stack.status()["colors"]["green"]
    assert {c["service"]: c["version"] for c in green["containers"]} == {
        "web": "v2",
        "worker": "v2",
        "migrate": "v2",
    }
    assert green["version"] == "v2" and green["health"].startswith("healthy")

    # Both colours running, as during a swap: a sibling's name resolves within the colour only.
    docker("start", *stack.containers_of("blue", "worker"), *stack.containers_of("blue", "web"))
    assert resolve(stack, "green", "web") <= ips(stack, "green", "web")
    assert resolve(stack, "blue", "web") <= ips(stack, "blue", "web")
    assert resolve(stack, "green", "web") and resolve(stack, "blue", "web")
    db_ips = set(
        docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", db).split()
    )
    assert resolve(stack, "green", "db") and resolve(stack, "green", "db") <= db_ips  # the shared one
    docker("stop", *stack.containers_of("blue", "web"), *stack.containers_of("blue", "worker"))

    migrated = docker("inspect", "-f", "{{.State.StartedAt}}", *stack.containers_of("blue", "migrate"))
    proc = stack.watcher("rollback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stack.version() == "v1"
    # The one-shot ran when blue was deployed: an instant rollback does not run v1's migration again.
    assert (
        docker("inspect", "-f", "{{.State.StartedAt}}", *stack.containers_of("blue", "migrate")) == migrated
    )
    status = stack.status()
    assert (status["live_color"], status["live_version"]) == ("blue", "v1")
    assert docker("inspect", "-f", "{{.State.StartedAt}}", db) == db_started  # never restarted
    assert colour_volumes(stack) == []

    deployed(stack, "v2")  # the retained green again, resumed
    assert stack.version() == "v2" and colour_volumes(stack) == []

    assert stack.watcher("cleanup").returncode == 0
    assert stack.watcher("reset", "--force").returncode == 0
    assert stack.containers_of("blue", "web") == stack.containers_of("green", "web") == []
    networks = docker("network", "ls", "--format", "{{.Name}}").split()
    assert not [
        n for n in networks if n.startswith((f"0-{stack.name}-", f"{stack.name}-blue", f"{stack.name}-green"))
    ]
    assert colour_volumes(stack) == [] and f"{stack.name}_db-data" in docker("volume", "ls", "-q").split()
    assert not list((stack.root / ".watcher").rglob("compose.*.watcher.yml"))
    assert json.loads(docker("inspect", "-f", "{{json .State.Running}}", db))


def test_a_failed_one_shot_fails_the_deploy_with_nothing_switched(colours: Stack) -> None:
    stack = colours
    deployed(stack, "v1")
    proc = stack.watcher("deploy", "v2", MIGRATE_EXIT="3")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"one-shot {stack.name}-green-migrate-1 exited 3" in out and "migrated to v2" in out
    assert stack.version() == "v1" and stack.live_route() == "blue"
    assert stack.containers_of("green", "web") == []


def test_per_colour_volumes_go_with_their_colour_and_the_shared_ones_stay(colours: Stack) -> None:
    """A volume the worker writes, declared per colour in compose.<colour>.yml (as `watcher init
    --per-colour-volume` writes it), beside the shared database's, mounted read-only: removing a
    colour removes its own copy, never the shared volume nor its data."""
    stack = colours
    extra = EXTRA.replace(
        "    depends_on: [db]\n",
        "    depends_on: [db]\n    volumes: [scratch:/scratch, db-data:/shared:ro]\n",
    ).replace("\nvolumes:\n  db-data:\n", "\nvolumes:\n  db-data:\n  scratch:\n")
    (stack.root / "compose.extra.yml").write_text(extra)
    for color in ("blue", "green"):
        with (stack.root / f"compose.{color}.yml").open("a") as overlay:
            overlay.write(
                f'\nvolumes:\n  scratch:\n    name: "{stack.name}-{color}_scratch"\n'
                f'  db-data:\n    name: "{stack.name}_db-data"\n    external: true\n'
            )
    db = stack.container_ids(stack.name)[f"{stack.name}-db-1"]
    docker("exec", db, "/bin/busybox", "sh", "-c", "echo kept > /data/mark")

    deployed(stack, "v1")
    (blue,) = stack.containers_of("blue", "worker")
    assert docker("exec", blue, "/bin/busybox", "cat", "/shared/mark") == "kept"
    docker("exec", blue, "/bin/busybox", "sh", "-c", "echo blue > /scratch/own")
    deployed(stack, "v2")
    (green,) = stack.containers_of("green", "worker")
    assert docker("exec", green, "/bin/busybox", "ls", "/scratch") == "", "each colour its own empty copy"
    assert sorted(colour_volumes(stack)) == [f"{stack.name}-blue_scratch", f"{stack.name}-green_scratch"]

    proc = stack.watcher("rollback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stack.watcher("cleanup").returncode == 0  # keeps green: the rollback target
    assert sorted(colour_volumes(stack)) == [f"{stack.name}-blue_scratch", f"{stack.name}-green_scratch"]
    assert stack.watcher("cleanup", "--include-rollback").returncode == 0
    assert colour_volumes(stack) == [f"{stack.name}-blue_scratch"]
    assert stack.watcher("reset", "--force").returncode == 0
    assert colour_volumes(stack) == []
    assert f"{stack.name}_db-data" in docker("volume", "ls", "-q").split()
    assert docker("exec", db, "/bin/busybox", "cat", "/data/mark") == "kept"
