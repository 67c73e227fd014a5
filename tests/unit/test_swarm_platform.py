"""The Swarm platform's pure parts: the stack file a colour is deployed from, the tasks read back
as instances, and the Caddyfile's upstreams of a swarm app (checked by `caddy adapt`)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness.images import caddy_binary
from tests.unit.test_many_apps import app, project, refused
from watcher.backends.swarm import SwarmService, _instance, _scaled_to_zero
from watcher.caddyfile import render
from watcher.config import load_host
from watcher.errors import ConfigError
from watcher.platforms import swarm as swarm_platform
from watcher.platforms.color import Color
from watcher.platforms.health import judge
from watcher.platforms.stack_file import EDGE, replicas, stack_file
from watcher.platforms.swarm import SwarmColor, SwarmImages

MODEL = {
    "name": "shop",
    "services": {
        "web": {
            "image": "ghcr.io/acme/shop:v2",
            "build": {"context": "."},
            "container_name": "shop",
            "depends_on": {"db": {"condition": "service_healthy", "required": True}},
            "environment": {"A": "1", "EMPTY": None},
            "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "start_interval": "1s"},
            "deploy": {"replicas": 3, "placement": {"max_replicas_per_node": 1}},
            "ports": [{"target": 8080, "published": "8080", "mode": "ingress"}],
            "pull_policy": "always",
            "restart": "always",
            "volumes": [{"type": "volume", "source": "cache", "target": "/c", "volume": {}}],
            "networks": {"default": None},
        },
        "db": {"image": "postgres:16"},
    },
    "volumes": {"cache": {"name": "shop_cache"}, "pg": {}},
    "networks": {"default": {"name": "shop_default"}},
}


def test_the_stack_file_keeps_format_3_keys_pins_the_image_and_joins_the_edge_as_the_colour_alias() -> None:
    text = stack_file(
        MODEL,
        {"web": "shop-web-green"},
        {"web": "ghcr.io/acme/shop:v2@sha256:" + "a" * 64},
        edge_network="edge",
    )
    out = json.loads(text)
    assert set(out["services"]) == {"web"}, "the shared db is not the colour's"
    web = out["services"]["web"]
    for dropped in ("build", "container_name", "depends_on", "ports", "pull_policy", "restart"):
        assert dropped not in web, dropped
    assert web["image"].endswith("@sha256:" + "a" * 64)
    assert web["deploy"] == {
        "replicas": 3,
        "placement": {"max_replicas_per_node": 1},
        "endpoint_mode": "dnsrr",
    }
    assert web["networks"] == {"default": {}, EDGE: {"aliases": ["shop-web-green"]}}
    assert web["environment"] == {"A": "1", "EMPTY": ""}
    assert web["healthcheck"] == {"test": ["CMD", "true"], "interval": "1s"}
    assert out["networks"][EDGE] == {"external": True, "name": "edge"}
    assert out["volumes"] == {"cache": {"name": "shop_cache"}}
    assert replicas(text) == {"web": 3}


SERVICE = SwarmService(
    id="s1", name="web", full_name="shop-green_web", replicas=2, image="r/shop:v2@sha256:b"
)


def task(
    state: str, slot: int, created: str, *, err: str = "", desired: str = "running", check: bool = True
) -> dict:
    spec = {"Image": "r/shop:v2@sha256:b", **({"Healthcheck": {"Test": ["CMD", "true"]}} if check else {})}
    return {
        "ServiceID": "s1",
        "Slot": slot,
        "CreatedAt": created,
        "DesiredState": desired,
        "Spec": {"ContainerSpec": spec},
        "Status": {"State": state, "Err": err, "Timestamp": "2026-12-07T10:00:00.000000000Z"},
        "NetworksAttachments": [{"Addresses": ["10.0.1.5/24"]}],
    }


def test_a_running_task_is_healthy_a_starting_one_is_not_and_a_rejected_one_ends_the_wait() -> None:
    running = _instance(SERVICE, "1", task("running", 1, "1"), 0)
    assert (running.state, running.health, running.version, running.image_id, running.addresses) == (
        "running",
        "healthy",
        "v2",
        "sha256:b",
        ("10.0.1.5",),
    )
    starting = _instance(SERVICE, "2", task("starting", 2, "1"), 0)
    assert judge([running, starting], ["web"]).state == "starting"
    rejected = _instance(SERVICE, "2", task("rejected", 2, "1", err="No such image: r/shop:v2"), 0)
    health = judge([running, rejected], ["web"])
    assert health.failed and rejected.probe == "rejected: No such image: r/shop:v2", health


def test_a_slot_whose_tasks_keep_being_replaced_is_restarting() -> None:
    before = {"shop-green_web.1": 0}
    replaced = _instance(SERVICE, "1", task("starting", 1, "3"), 2)
    assert judge([replaced], ["web"], before).state == "restarting"


def test_a_service_scaled_to_zero_is_one_retained_instance_at_its_version() -> None:
    kept = _scaled_to_zero(
        SwarmService(id="s1", name="web", full_name="shop-blue_web", replicas=0, image="r/a:v1@sha256:c")
    )
    assert (kept.state, kept.version, kept.image_id) == ("exited", "v1", "sha256:c")


def test_a_swarm_apps_caddyfile_proxies_to_its_tasks_and_caddy_reads_it(tmp_path: Path) -> None:
    body = app("shop").replace('project_dir = "shop"', 'project_dir = "shop"\nplatform = "swarm"')
    host = load_host(project(tmp_path, body, dirs=("shop",)), {})
    text = render(host, [host.app("shop")])
    assert "dynamic a tasks.shop-blue_web 8080 {" in text and "dynamic a tasks.shop-green_web 8080 {" in text
    assert "dynamic multi {" in text, "the fallback: either colour"
    assert "reverse_proxy shop-web-blue:8080" not in text
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(text)
    adapted = subprocess.run(
        [str(caddy_binary()), "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert adapted.returncode == 0, adapted.stderr
    assert '"source":"multi"' in adapted.stdout and '"name":"tasks.shop-green_web"' in adapted.stdout


def test_a_swarm_app_refuses_what_watcher_cannot_do_there(tmp_path: Path) -> None:
    swarm = 'project_dir = "shop"\nplatform = "swarm"'
    for extra, key, said in (
        ('[apps.shop.services.web.health]\npath = "/up"\n', "services.web.health", "their own healthcheck"),
        ("[apps.shop.services.migrate]\none_shot = true\n", "services.migrate.one_shot", "pre-deploy hook"),
    ):
        body = app("shop", extra=extra).replace('project_dir = "shop"', swarm)
        message = refused(project(tmp_path, body, dirs=("shop",)))
        assert key in message and said in message, message


def _colour(
    tmp_path: Path, model: dict, monkeypatch: pytest.MonkeyPatch
) -> tuple[SwarmColor, list[list[str]]]:
    """The green colour of a swarm app on a 2-node swarm faked at its edges: `model` is what
    compose renders; the `docker stack` commands run are recorded, not run."""
    body = app("shop").replace('project_dir = "shop"', 'project_dir = "shop"\nplatform = "swarm"')
    config = load_host(project(tmp_path, body, dirs=("shop",)), {}).app("shop")
    engine = SimpleNamespace(
        node_names=lambda: {"n1": "node-1", "n2": "node-2"},
        image_present=lambda ref: False,
        ensure_network=lambda name: None,
    )
    colour = SwarmColor(config, engine, SwarmImages(engine), Color.GREEN)  # type: ignore[arg-type]
    colour.model = SimpleNamespace(  # type: ignore[assignment]
        model=lambda version: model,
        images=lambda version, fresh: {"web": ("ghcr.io/acme/shop:v2", True)},
        env=lambda version: {},
    )
    ran: list[list[str]] = []
    monkeypatch.setattr(swarm_platform, "stack_command", lambda args, env, cwd: ran.append(args))
    return colour, ran


def test_a_colour_refuses_what_swarm_would_break_before_its_stack_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = {"image": "ghcr.io/acme/shop:v2", "ports": ["8080:8080"], "network_mode": "host"}
    colour, ran = _colour(tmp_path, {"services": {"web": web}}, monkeypatch)
    with pytest.raises(ConfigError) as caught:
        colour.start("v2")
    assert str(caught.value).splitlines() == [
        "app shop: its compose files cannot run on Docker Swarm as they are (nothing was deployed):",
        "  web: network_mode \"host\": Swarm ignores it and puts web's tasks on the stack's networks; "
        "remove network_mode (the edge Caddy reaches the tasks on the overlay)",
        '  web: ports "8080:8080": Swarm publishes it in ingress mode, which Docker refuses with '
        "endpoint_mode dnsrr; remove ports: (the edge Caddy reaches the tasks on the overlay)",
    ]
    assert ran == [] and not colour.stack_path.exists()


def test_a_colour_deploys_with_the_warnings_logged_and_knows_the_node_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    start_first = {"replicas": 2, "update_config": {"order": "start-first"}}
    web = {"image": "ghcr.io/acme/shop:v2", "container_name": "shop-web", "deploy": start_first}
    colour, ran = _colour(tmp_path, {"services": {"web": web}}, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="watcher.platforms.swarm"):
        colour.start("v2")
    assert [r.getMessage().split(": Swarm")[0] for r in caplog.records] == [
        'shop green: web: container_name "shop-web"'
    ]
    assert ran and ran[0][0] == "deploy" and colour.stack_path.is_file()
    filled = {**start_first, "placement": {"max_replicas_per_node": 1}}
    colour, ran = _colour(tmp_path, {"services": {"web": {**web, "deploy": filled}}}, monkeypatch)
    with pytest.raises(ConfigError, match="replicas 2 at max_replicas_per_node 1 fill all 2 nodes"):
        colour.start("v2")
    assert ran == []


def test_remove_stops_a_running_colours_tasks_before_stack_rm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker stack rm` returns while the tasks' containers still stop, their addresses still in
    `tasks.<stack>_<service>`: a running colour is scaled to 0 and its tasks waited for first, so
    the colour started again at once (a running leftover) does not have the edge dial them."""
    colour, _ = _colour(tmp_path, {"services": {"web": {"image": "x"}}}, monkeypatch)
    service = SwarmService(id="s1", name="web", full_name="shop-green_web", replicas=2, image="r/shop:v2")
    services = [service]
    calls: list[tuple] = []
    stopping = iter([2, 1, 0])

    def scale(s: SwarmService, n: int) -> None:
        calls.append(("scale", s.name, n))
        services[0] = SwarmService(
            id="s1", name="web", full_name="shop-green_web", replicas=n, image="r/shop:v2"
        )

    def rm(args: list[str], env: dict, cwd: Path) -> None:
        calls.append(("stack", *args))
        services.clear()

    engine = colour.engine
    engine.services = lambda stack: list(services)  # type: ignore[attr-defined]
    engine.scale = scale  # type: ignore[attr-defined]
    engine.live_tasks = lambda stack: calls.append(("live",)) or next(stopping)  # type: ignore[attr-defined]
    engine.networks = lambda stack: []  # type: ignore[attr-defined]
    monkeypatch.setattr(swarm_platform, "stack_command", rm)
    monkeypatch.setattr(swarm_platform.time, "sleep", lambda s: None)
    colour.remove()
    assert calls == [("scale", "web", 0), ("live",), ("live",), ("live",), ("stack", "rm", colour.name)]
    calls.clear()
    services.append(
        SwarmService(id="s1", name="web", full_name="shop-green_web", replicas=0, image="r/shop:v2")
    )
    colour.remove()  # scaled to 0 already (a retained colour): straight to `stack rm`
    assert calls == [("stack", "rm", colour.name)]
