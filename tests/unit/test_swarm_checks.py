"""What `docker stack deploy` would silently break (watcher/platforms/swarm_checks.py): each
finding with its exact message, on the model `docker compose config --format json` renders and on
the raw YAML of a file; clean files have none; the platform's call raises with every refusal."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from watcher.adoption.compose_file import ComposeLoader
from watcher.errors import ConfigError
from watcher.platforms.swarm_checks import Finding, check, refuse_for_swarm

EDGE = "the edge Caddy reaches the tasks on the overlay"
CLEAN = {
    "services": {
        "web": {
            "image": "ghcr.io/acme/shop:1.4.2",
            "expose": ["8080"],
            "depends_on": {"postgres": {"condition": "service_healthy", "required": True}},
            "volumes": [{"type": "volume", "source": "uploads", "target": "/srv/uploads"}],
            "deploy": {
                "replicas": 2,
                "update_config": {"order": "start-first"},
                "restart_policy": {"condition": "on-failure"},
            },
            "restart": "unless-stopped",
        },
        "worker": {"image": "ghcr.io/acme/shop:1.4.2", "restart": "always"},
        "postgres": {
            "image": "postgres:16",
            "container_name": "db",
            "ports": ["5432:5432"],
            "volumes": ["pgdata:/var/lib/postgresql/data"],
            "profiles": ["db"],
        },
    },
    "volumes": {"uploads": {"driver": "local", "driver_opts": {"type": "nfs", "o": "addr=10.0.0.2"}}},
}


def findings(spec: dict[str, Any], **kwargs: Any) -> list[Finding]:
    """The findings of one colour service `web` (beside a shared `postgres`)."""
    model = {"services": {"web": spec, "postgres": {"image": "postgres:16"}}, **kwargs.pop("top", {})}
    return check(model, ["web"], **kwargs)


def said(spec: dict[str, Any], **kwargs: Any) -> list[tuple[str, str]]:
    return [(f.severity, f.message) for f in findings(spec, **kwargs)]


IMAGE = {"image": "ghcr.io/acme/shop:1.4.2"}


# -- each finding, with its message ---------------------------------------------------------------


def test_build_without_image_is_refused() -> None:
    assert said({"build": {"context": "/srv/shop"}}) == [
        (
            "refuse",
            "web: build: Swarm ignores build, and without image it has nothing to run; push an image "
            "your CI builds and set image:",
        )
    ]


def test_build_beside_an_image_is_a_warning() -> None:
    assert said({**IMAGE, "build": "."}) == [
        (
            "warn",
            "web: build: Swarm ignores it: every node pulls ghcr.io/acme/shop:1.4.2 from its registry, "
            "never builds it; push that image (a node without it retries the task forever) or remove build:",
        )
    ]


def test_container_name_is_a_warning() -> None:
    assert said({**IMAGE, "container_name": "shop-web"}) == [
        (
            "warn",
            'web: container_name "shop-web": Swarm ignores it (a task is named <stack>_web.<slot>.<id>), '
            "so nothing reaches web by that name; remove it (the edge Caddy reaches web as "
            "tasks.<stack>_web)",
        )
    ]


def test_profiles_are_a_warning_saying_when_the_service_runs() -> None:
    assert said({**IMAGE, "profiles": ["app"]}) == [
        (
            "warn",
            'web: profiles ["app"]: Swarm has no profiles (`docker stack deploy` rejects the key): '
            "watcher writes the stack without it, and deploys the service only while one of them is "
            "active when it renders the files, as `docker compose up` would; set COMPOSE_PROFILES in "
            "the app's .env, or remove profiles from the services the colours run",
        )
    ]


def test_a_dependency_inside_the_colour_is_a_warning_naming_it() -> None:
    model = {
        "services": {
            "web": {**IMAGE, "depends_on": {"worker": {"condition": "service_healthy", "required": True}}},
            "worker": IMAGE,
        }
    }
    assert [(f.severity, f.message) for f in check(model, ["web", "worker"])] == [
        (
            "warn",
            "web: depends_on worker: Swarm drops it and starts web and worker at once; web must retry "
            "worker until it answers (a task that exits is restarted)",
        )
    ]


def test_a_dependency_on_a_shared_service_is_no_finding() -> None:
    """watcher starts the shared services before any colour, on either platform."""
    assert said({**IMAGE, "depends_on": ["postgres"]}) == []
    assert said({**IMAGE, "depends_on": {"postgres": {"condition": "service_healthy"}}}) == []


def test_waiting_for_a_one_shot_to_complete_is_refused() -> None:
    model = {
        "services": {
            "web": {**IMAGE, "depends_on": {"migrate": {"condition": "service_completed_successfully"}}},
            "migrate": {**IMAGE, "command": "migrate"},
        }
    }
    assert [(f.severity, f.message) for f in check(model, ["web", "migrate"], one_shots=["migrate"])] == [
        (
            "refuse",
            "web: depends_on migrate (condition: service_completed_successfully): Swarm drops it, so web "
            "starts without waiting for migrate to complete; run migrate before the deploy "
            "(hooks.pre_deploy) or when the app starts, and take it out of the colours",
        )
    ], "one finding for the pair: the waiter's, not a second one for the one-shot"


def test_a_one_shot_nobody_waits_for_is_refused() -> None:
    model = {"services": {"web": IMAGE, "migrate": {**IMAGE, "command": "migrate"}}}
    assert [(f.severity, f.message) for f in check(model, ["web", "migrate"], one_shots=["migrate"])] == [
        (
            "refuse",
            "migrate: one_shot: Swarm neither waits for it to complete before starting the others nor "
            "lets it stay stopped (by default it restarts a task whenever it exits); run migrate before "
            "the deploy (hooks.pre_deploy) or when the app starts, and take it out of the colours",
        )
    ]


@pytest.mark.parametrize(
    ("ports", "shown"),
    [
        ([{"mode": "ingress", "target": 8080, "published": "8080", "protocol": "tcp"}], '"8080:8080"'),
        (["8080:8080"], '"8080:8080"'),
        (["127.0.0.1:8080:8080"], '"127.0.0.1:8080:8080"'),
        ([{"mode": "ingress", "target": 8080, "protocol": "tcp"}], '"8080"'),  # Swarm picks a port
        ([8080], '"8080"'),
        ([{"target": 53, "published": 53, "protocol": "udp"}], '"53:53/udp"'),
    ],
)
def test_a_port_published_in_ingress_mode_is_refused(ports: list[Any], shown: str) -> None:
    assert said({**IMAGE, "ports": ports}) == [
        (
            "refuse",
            f"web: ports {shown}: Swarm publishes it in ingress mode, which Docker refuses with "
            f"endpoint_mode dnsrr; remove ports: ({EDGE})",
        )
    ]


def test_a_host_mode_port_is_a_warning() -> None:
    assert said({**IMAGE, "ports": [{"mode": "host", "target": 8080, "published": "8080"}]}) == [
        (
            "warn",
            'web: ports "8080:8080" (mode host): each task binds host port 8080 on its node, so the '
            "other colour's task cannot start on that node (Swarm leaves it Pending); remove ports: "
            f"({EDGE})",
        )
    ]
    assert said({**IMAGE, "ports": [{"mode": "host", "target": 8080}]}) == [], "no host port: no clash"


START_FIRST = {
    **IMAGE,
    "deploy": {
        "replicas": 2,
        "update_config": {"order": "start-first"},
        "placement": {"max_replicas_per_node": 1, "constraints": ["node.labels.web == true"]},
    },
}


def test_start_first_filling_every_node_is_refused_when_the_node_count_is_known() -> None:
    assert said(START_FIRST, nodes=2) == [
        (
            "refuse",
            'web: deploy.update_config.order "start-first": replicas 2 at max_replicas_per_node 1 fill '
            "all 2 nodes, so an update's new task stays Pending forever (moby/moby#40797); use order "
            "stop-first, or raise max_replicas_per_node",
        )
    ]
    single = {**IMAGE, "deploy": {**START_FIRST["deploy"], "replicas": 1}}
    assert "replicas 1 at max_replicas_per_node 1 fill the 1 node" in said(single, nodes=1)[0][1]


def test_start_first_with_room_for_one_more_task_is_no_finding() -> None:
    assert said(START_FIRST, nodes=3) == []
    assert said({**IMAGE, "deploy": {"update_config": {"order": "start-first"}}}, nodes=1) == []


def test_start_first_on_an_unknown_node_count_is_a_warning() -> None:
    assert said(START_FIRST) == [
        (
            "warn",
            'web: deploy.update_config.order "start-first": with max_replicas_per_node 1, an update\'s '
            "new task stays Pending forever when every node already runs 1 (moby/moby#40797); use order "
            "stop-first, or run it on at least 3 nodes",
        )
    ]


def test_a_bind_mount_without_a_placement_constraint_is_a_warning() -> None:
    assert said({**IMAGE, "volumes": [{"type": "bind", "source": "/srv/shop/data", "target": "/data"}]}) == [
        (
            "warn",
            'web: volumes "/srv/shop/data:/data": a bind mount is the directory of whichever node runs '
            "the task, and web's tasks may run on any node; add a deploy.placement.constraints entry "
            "(node.hostname == ...), or use a Swarm config or secret for a file",
        )
    ]
    assert said({**IMAGE, "volumes": ["./config/shop.ini:/etc/shop.ini:ro"]})[0][1].startswith(
        'web: volumes "./config/shop.ini:/etc/shop.ini:ro": a bind mount is'
    ), "read-only too: the file must be on every node"
    assert (
        said({**IMAGE, "volumes": ["/etc/localtime:/etc/localtime:ro", "/etc/timezone:/etc/timezone:ro"]})
        == []
    ), "every node has its own"


def test_a_local_volume_without_a_placement_constraint_is_a_warning() -> None:
    assert said({**IMAGE, "volumes": ["uploads:/srv/uploads"]}, top={"volumes": {"uploads": None}}) == [
        (
            "warn",
            'web: volumes "uploads:/srv/uploads": volume uploads uses the local driver, so each node '
            "has its own copy; add a deploy.placement.constraints entry, or use a volume driver that "
            "spans nodes",
        )
    ]


@pytest.mark.parametrize(
    ("spec", "kwargs"),
    [
        ({"deploy": {"placement": {"constraints": ["node.hostname == a"]}}}, {}),
        ({}, {"nodes": 1}),
        ({}, {"top": {"volumes": {"uploads": {"driver": "rexray/ebs"}}}}),
        ({}, {"top": {"volumes": {"uploads": {"driver_opts": {"type": "nfs4", "o": "addr=x"}}}}}),
    ],
    ids=["constrained", "one node", "another driver", "local driver over NFS"],
)
def test_node_local_data_that_cannot_move_is_no_finding(spec: dict[str, Any], kwargs: dict[str, Any]) -> None:
    volumes = {"volumes": [{"type": "volume", "source": "uploads", "target": "/u"}, "./x:/x", "/anon"]}
    kwargs = {"top": {"volumes": {"uploads": {}}}, **kwargs}
    found = said({**IMAGE, **volumes, **spec}, **kwargs)
    if kwargs.get("nodes") == 1 or "constraints" in str(spec):
        assert found == []
    else:
        assert [message for _, message in found] == [
            'web: volumes "./x:/x": a bind mount is the directory of whichever node runs the task, and '
            "web's tasks may run on any node; add a deploy.placement.constraints entry (node.hostname "
            "== ...), or use a Swarm config or secret for a file"
        ], "the volume spans nodes: only the bind mount is node-local"


@pytest.mark.parametrize("restart", ["no", False, "on-failure", "on-failure:3"])
def test_a_restart_swarm_would_not_honour_is_a_warning(restart: Any) -> None:
    shown = '"no"' if restart is False else f'"{restart}"'
    assert said({**IMAGE, "restart": restart}) == [
        (
            "warn",
            f"web: restart {shown}: Swarm ignores it and restarts a task whenever it exits, even with "
            "code 0 (deploy.restart_policy condition any); set deploy.restart_policy.condition (none, "
            "on-failure) instead",
        )
    ]


def test_a_restart_swarm_does_anyway_or_a_restart_policy_is_no_finding() -> None:
    assert said({**IMAGE, "restart": "always"}) == []
    assert said({**IMAGE, "restart": "unless-stopped"}) == []
    assert said({**IMAGE, "restart": "no", "deploy": {"restart_policy": {"condition": "none"}}}) == []


def test_network_mode_is_refused() -> None:
    assert said({**IMAGE, "network_mode": "host"}) == [
        (
            "refuse",
            "web: network_mode \"host\": Swarm ignores it and puts web's tasks on the stack's networks; "
            f"remove network_mode ({EDGE})",
        )
    ]


# -- what is not a finding ----------------------------------------------------------------------------


def test_a_clean_model_has_no_finding() -> None:
    assert check(CLEAN, ["web", "worker"]) == []
    assert check(CLEAN, ["web", "worker"], nodes=3) == []


def test_a_clean_raw_file_has_no_finding() -> None:
    text = """\
services:
  web:
    image: ghcr.io/acme/shop:1.4.2
    expose: ["8080"]
    restart: unless-stopped
    depends_on: [postgres]
    deploy:
      replicas: 2
  postgres:
    image: postgres:16
    container_name: db
    profiles: [db]
    ports: ["5432:5432"]
"""
    assert check(yaml.load(text, Loader=ComposeLoader), ["web"]) == []  # noqa: S506 - a SafeLoader


def test_only_the_colour_services_are_checked() -> None:
    """The shared postgres of CLEAN has a container name, a host port, a profile and a local
    volume: none of them is the colours', nor deployed by their stacks."""
    assert check(CLEAN, ["web", "worker", "gone"]) == []


# -- the same file, rendered or raw ---------------------------------------------------------------

RAW = """\
services:
  web:
    build: .
    container_name: shop-web
    restart: "no"
    profiles: [app]
    ports: ["8080:80", "9000", {target: 81, published: 8081, mode: host}]
    volumes: ["./data:/data", "up:/up", "/anon"]
    depends_on:
      migrate: {condition: service_completed_successfully}
      cache: {condition: service_started}
    network_mode: host
    deploy:
      replicas: 1
      update_config: {order: start-first}
      placement: {max_replicas_per_node: 1}
  migrate:
    image: x:1
  cache:
    image: redis
    depends_on: [migrate]
volumes:
  up:
"""
#: RAW as `docker compose config --format json` renders it (Compose v2.40.3), the keys read here.
RENDERED = {
    "services": {
        "cache": {
            "depends_on": {"migrate": {"condition": "service_started", "required": True}},
            "image": "redis",
        },
        "migrate": {"image": "x:1"},
        "web": {
            "build": {"context": "/tmp/shapes", "dockerfile": "Dockerfile"},
            "container_name": "shop-web",
            "depends_on": {
                "cache": {"condition": "service_started", "required": True},
                "migrate": {"condition": "service_completed_successfully", "required": True},
            },
            "deploy": {
                "replicas": 1,
                "update_config": {"order": "start-first"},
                "resources": {},
                "placement": {"max_replicas_per_node": 1},
            },
            "network_mode": "host",
            "ports": [
                {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"},
                {"mode": "ingress", "target": 9000, "protocol": "tcp"},
                {"mode": "host", "target": 81, "published": "8081", "protocol": "tcp"},
            ],
            "profiles": ["app"],
            "restart": "no",
            "volumes": [
                {"type": "bind", "source": "/tmp/shapes/data", "target": "/data", "bind": {}},
                {"type": "volume", "source": "up", "target": "/up", "volume": {}},
                {"type": "volume", "target": "/anon", "volume": {}},
            ],
        },
    },
    "volumes": {"up": {"name": "shapes_up"}},
}


def test_the_rendered_model_and_the_raw_file_say_the_same() -> None:
    raw = yaml.load(RAW, Loader=ComposeLoader)  # noqa: S506 - a SafeLoader subclass
    colour = ["web", "migrate", "cache"]
    rendered = {(f.severity, f.service, f.key) for f in check(RENDERED, colour, nodes=1)}
    assert rendered == {(f.severity, f.service, f.key) for f in check(raw, colour, nodes=1)}
    assert sorted(rendered) == [
        ("refuse", "web", "build"),
        ("refuse", "web", "depends_on"),
        ("refuse", "web", "deploy.update_config.order"),
        ("refuse", "web", "network_mode"),
        ("refuse", "web", "ports"),
        ("warn", "cache", "depends_on"),
        ("warn", "web", "container_name"),
        ("warn", "web", "depends_on"),
        ("warn", "web", "ports"),
        ("warn", "web", "profiles"),
        ("warn", "web", "restart"),
    ]


# -- what the platform calls before `docker stack deploy` ------------------------------------------


def test_the_platform_gets_every_refusal_at_once_and_the_warnings_back() -> None:
    model = {
        "services": {
            "web": {**IMAGE, "ports": ["8080:8080"], "profiles": ["app"], "container_name": "w"},
            "worker": {"build": "."},
        }
    }
    with pytest.raises(ConfigError) as caught:
        refuse_for_swarm("shop", model, ["web", "worker"])
    assert str(caught.value) == (
        "app shop: its compose files cannot run on Docker Swarm as they are (nothing was deployed):\n"
        '  web: ports "8080:8080": Swarm publishes it in ingress mode, which Docker refuses with '
        f"endpoint_mode dnsrr; remove ports: ({EDGE})\n"
        "  worker: build: Swarm ignores build, and without image it has nothing to run; push an image "
        "your CI builds and set image:"
    )
    assert caught.value.exit_code == 2
    warned = refuse_for_swarm("shop", {"services": {"web": {**IMAGE, "container_name": "w"}}}, ["web"])
    assert [f.key for f in warned] == ["container_name"]
    assert refuse_for_swarm("shop", CLEAN, ["web", "worker"], nodes=3) == []
