"""What `docker stack deploy` would silently break in an app's compose files (platform = "swarm").

A colour on Swarm is a stack deployed from the app's compose files plus the colour's overlay, every
service with `endpoint_mode: dnsrr`, on an attachable overlay shared with an edge Caddy. Swarm
reads the files its own way (docker/cli `cli/compose/types/types.go`): some keys it ignores
without failing (`build`, `container_name`, `restart`, `network_mode`), one it drops
(`depends_on`), one makes it reject the whole file (`profiles`, which watcher's stack file leaves
out), and some combinations deploy and then never run (ingress ports with dnsrr, `start-first`
with every node at `max_replicas_per_node`). Each is a
`Finding`: a refusal (the colour would not run, or would run otherwise than the file says, in a way
that breaks it) or a warning (it runs, but not as a Compose user expects); each says which service
and key, what Swarm would do, and the fix.

Pure: `check` reads a compose model, either as `docker compose config --format json` renders it
(what the platform has, before each `stack deploy`) or the raw YAML of one file (what `watcher
init` has). `refuse_for_swarm` is what the platform calls before `stack deploy`; `declared_one_shot`
is the one check the config loader can make without Docker. docs/platforms.md lists them all.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from watcher.errors import ConfigError

Severity = Literal["refuse", "warn"]

#: The way in on Swarm, instead of a published port.
EDGE = "the edge Caddy reaches the tasks on the overlay"
#: `driver_opts.type` of the local driver that mounts storage every node reaches.
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb")
#: Bind mounts of what every node has of its own, the same (gitea mounts the host's time zone).
EVERY_NODES = ("/etc/localtime", "/etc/timezone")


@dataclass(frozen=True)
class Finding:
    """One thing Swarm would do with a colour service that its compose file does not say."""

    severity: Severity
    service: str
    key: str  # the compose key, e.g. `ports`, `deploy.update_config.order`
    value: str  # the key's value as shown (JSON), or what of it is meant; "" for none
    swarm: str  # what Swarm would do
    fix: str

    @property
    def refused(self) -> bool:
        return self.severity == "refuse"

    @property
    def subject(self) -> str:
        """`web: ports "8080:80"`: the service and key (and value) the finding is about."""
        return f"{self.service}: {self.key}{f' {self.value}' if self.value else ''}"

    @property
    def message(self) -> str:
        """One line: where, what Swarm does, the fix."""
        return f"{self.subject}: {self.swarm}; {self.fix}"


def check(
    model: Mapping[str, Any],
    services: Collection[str],
    *,
    nodes: int | None = None,
    one_shots: Collection[str] = (),
) -> list[Finding]:
    """Every finding for the colour `services` of `model` (a rendered or raw compose model), in
    the services' order. `nodes`: the swarm's node count when known (some findings depend on it);
    `one_shots`: the colour services declared or detected as running to completion once."""
    rendered = model.get("services") or {}
    colour = [name for name in services if isinstance(rendered.get(name), Mapping)]
    awaited = {
        dependency
        for name in colour
        for dependency, spec in depends_on(rendered[name]).items()
        if spec.get("condition") == "service_completed_successfully"
    }
    findings: list[Finding] = []
    for name in colour:
        spec = rendered[name]
        findings += _build(name, spec)
        findings += _ignored(name, spec)
        findings += _depends_on(name, spec, colour)
        findings += _ports(name, spec)
        findings += _update_order(name, spec, nodes)
        findings += _node_local(name, spec, model.get("volumes") or {}, nodes)
        if name in one_shots and name not in awaited:
            findings.append(declared_one_shot(name))
    return findings


def refusals(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.refused]


def warnings(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if not finding.refused]


def refuse_for_swarm(
    app: str,
    model: Mapping[str, Any],
    services: Collection[str],
    *,
    nodes: int | None = None,
    one_shots: Collection[str] = (),
) -> list[Finding]:
    """What the Swarm platform calls before `docker stack deploy` of a colour, with the model
    rendered for it: raises ConfigError listing every refusal at once (nothing was deployed);
    returns the warnings, for the deploy's output."""
    findings = check(model, services, nodes=nodes, one_shots=one_shots)
    refused = refusals(findings)
    if refused:
        raise ConfigError(
            f"app {app}: its compose files cannot run on Docker Swarm as they are (nothing was deployed):\n"
            + "\n".join(f"  {finding.message}" for finding in refused)
        )
    return warnings(findings)


def declared_one_shot(name: str) -> Finding:
    """A one-shot colour service (runs to completion once per deploy): Swarm has no such service."""
    return Finding(
        "refuse",
        name,
        "one_shot",
        "",
        "Swarm neither waits for it to complete before starting the others nor lets it stay "
        "stopped (by default it restarts a task whenever it exits)",
        _one_shot_fix(name),
    )


# -- the checks, one service at a time ----------------------------------------------------------


def _build(name: str, spec: Mapping[str, Any]) -> Iterator[Finding]:
    if not spec.get("build"):
        return
    if not spec.get("image"):
        yield Finding(
            "refuse",
            name,
            "build",
            "",
            "Swarm ignores build, and without image it has nothing to run",
            "push an image your CI builds and set image:",
        )
        return
    yield Finding(
        "warn",
        name,
        "build",
        "",
        f"Swarm ignores it: every node pulls {spec['image']} from its registry, never builds it",
        "push that image (a node without it retries the task forever) or remove build:",
    )


def _ignored(name: str, spec: Mapping[str, Any]) -> Iterator[Finding]:
    """Keys Swarm ignores or rejects, each with what it does instead."""
    if spec.get("profiles"):
        yield Finding(
            "warn",
            name,
            "profiles",
            _shown(spec["profiles"]),
            "Swarm has no profiles (`docker stack deploy` rejects the key): watcher writes the stack "
            "without it, and deploys the service only while one of them is active when it renders "
            "the files, as `docker compose up` would",
            "set COMPOSE_PROFILES in the app's .env, or remove profiles from the services the colours run",
        )
    if spec.get("network_mode"):
        yield Finding(
            "refuse",
            name,
            "network_mode",
            _shown(spec["network_mode"]),
            f"Swarm ignores it and puts {name}'s tasks on the stack's networks",
            f"remove network_mode ({EDGE})",
        )
    if spec.get("container_name"):
        yield Finding(
            "warn",
            name,
            "container_name",
            _shown(spec["container_name"]),
            f"Swarm ignores it (a task is named <stack>_{name}.<slot>.<id>), so nothing reaches "
            f"{name} by that name",
            f"remove it (the edge Caddy reaches {name} as tasks.<stack>_{name})",
        )
    restart = "no" if spec.get("restart") is False else spec.get("restart")  # YAML 1.1's `no`
    deploy = spec.get("deploy") or {}
    if str(restart).split(":")[0] in ("no", "on-failure") and not deploy.get("restart_policy"):
        yield Finding(
            "warn",
            name,
            "restart",
            _shown(restart),
            "Swarm ignores it and restarts a task whenever it exits, even with code 0 "
            "(deploy.restart_policy condition any)",
            "set deploy.restart_policy.condition (none, on-failure) instead",
        )


def _depends_on(name: str, spec: Mapping[str, Any], colour: list[str]) -> Iterator[Finding]:
    """The order inside the colour that Compose keeps and Swarm drops. A dependency on a shared
    service is not one: watcher starts the shared services before any colour on either platform,
    and the Compose platform already drops it from the colour project (colour_model.py)."""
    for dependency, condition in depends_on(spec).items():
        if dependency not in colour:
            continue
        if condition.get("condition") == "service_completed_successfully":
            yield Finding(
                "refuse",
                name,
                "depends_on",
                f"{dependency} (condition: service_completed_successfully)",
                f"Swarm drops it, so {name} starts without waiting for {dependency} to complete",
                _one_shot_fix(dependency),
            )
            continue
        yield Finding(
            "warn",
            name,
            "depends_on",
            dependency,
            f"Swarm drops it and starts {name} and {dependency} at once",
            f"{name} must retry {dependency} until it answers (a task that exits is restarted)",
        )


def _ports(name: str, spec: Mapping[str, Any]) -> Iterator[Finding]:
    for shown, mode, published in _port_entries(spec.get("ports") or []):
        if mode != "host":
            yield Finding(
                "refuse",
                name,
                "ports",
                shown,
                "Swarm publishes it in ingress mode, which Docker refuses with endpoint_mode dnsrr",
                f"remove ports: ({EDGE})",
            )
        elif published:
            yield Finding(
                "warn",
                name,
                "ports",
                f"{shown} (mode host)",
                f"each task binds host port {published} on its node, so the other colour's task "
                "cannot start on that node (Swarm leaves it Pending)",
                f"remove ports: ({EDGE})",
            )


def _update_order(name: str, spec: Mapping[str, Any], nodes: int | None) -> Iterator[Finding]:
    """`start-first` needs room for one more task: with `max_replicas_per_node` on every node
    taken, the new task stays Pending forever (moby/moby#40797)."""
    deploy = spec.get("deploy") or {}
    order = (deploy.get("update_config") or {}).get("order")
    most = _number((deploy.get("placement") or {}).get("max_replicas_per_node"))
    if order != "start-first" or not most or deploy.get("mode", "replicated") != "replicated":
        return
    replicas = _number(deploy.get("replicas"), default=1)
    if nodes is None:
        yield Finding(
            "warn",
            name,
            "deploy.update_config.order",
            '"start-first"',
            f"with max_replicas_per_node {most}, an update's new task stays Pending forever when "
            f"every node already runs {most} (moby/moby#40797)",
            f"use order stop-first, or run it on at least {replicas // most + 1} nodes",
        )
    elif replicas >= most * nodes:
        yield Finding(
            "refuse",
            name,
            "deploy.update_config.order",
            '"start-first"',
            f"replicas {replicas} at max_replicas_per_node {most} fill {_nodes(nodes)}, so an "
            "update's new task stays Pending forever (moby/moby#40797)",
            "use order stop-first, or raise max_replicas_per_node",
        )


def _node_local(
    name: str, spec: Mapping[str, Any], declared: Mapping[str, Any], nodes: int | None
) -> Iterator[Finding]:
    """Data that lives on one node while the service's tasks may run on any (none on one node)."""
    deploy = spec.get("deploy") or {}
    if nodes == 1 or (deploy.get("placement") or {}).get("constraints"):
        return
    for shown, kind, source in _mounts(spec.get("volumes") or []):
        if kind == "bind" and source not in EVERY_NODES:
            yield Finding(
                "warn",
                name,
                "volumes",
                shown,
                f"a bind mount is the directory of whichever node runs the task, and {name}'s "
                "tasks may run on any node",
                "add a deploy.placement.constraints entry (node.hostname == ...), or use a Swarm "
                "config or secret for a file",
            )
        elif kind == "volume" and source and _local(declared.get(source)):
            yield Finding(
                "warn",
                name,
                "volumes",
                shown,
                f"volume {source} uses the local driver, so each node has its own copy",
                "add a deploy.placement.constraints entry, or use a volume driver that spans nodes",
            )


def _one_shot_fix(name: str) -> str:
    return f"run {name} before the deploy (hooks.pre_deploy) or when the app starts, and take it out of the colours"


# -- reading a service's keys, rendered or raw --------------------------------------------------


def depends_on(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`depends_on` in its long form: rendered (a mapping) or raw (a list, or a mapping)."""
    value = spec.get("depends_on") or {}
    if isinstance(value, Mapping):
        return {str(k): dict(v) if isinstance(v, Mapping) else {} for k, v in value.items()}
    return {str(dependency): {} for dependency in value}


def _port_entries(ports: list[Any]) -> Iterator[tuple[str, str, str | None]]:
    """(shown, mode, published) of each entry: rendered or long form, or the short one (always
    ingress: it has no way to say host)."""
    for entry in ports:
        if isinstance(entry, Mapping):
            published = str(entry.get("published") or "") or None
            target = str(entry.get("target", ""))
            protocol = entry.get("protocol") or "tcp"
            text = f"{published}:{target}" if published else target
            if entry.get("host_ip"):
                text = f"{entry['host_ip']}:{text}"
            text += "" if protocol == "tcp" else f"/{protocol}"
            yield _shown(text), str(entry.get("mode") or "ingress"), published
            continue
        text = str(entry)
        parts = text.split("/", 1)[0].rsplit(":", 2)
        yield _shown(text), "ingress", (parts[-2] or None) if len(parts) >= 2 else None


def _mounts(volumes: list[Any]) -> Iterator[tuple[str, str, str | None]]:
    """(shown, type, source) of each mount: rendered or long form, or `source:target[:mode]`."""
    for entry in volumes:
        if isinstance(entry, Mapping):
            source = entry.get("source")
            shown = f"{source}:{entry.get('target')}" if source else str(entry.get("target"))
            yield _shown(shown), str(entry.get("type") or "volume"), source
            continue
        text = str(entry)
        parts = text.split(":")
        source = parts[0] if len(parts) > 1 else None
        if source is None:
            yield _shown(text), "volume", None  # anonymous: the task's own
        elif source.startswith((".", "/", "~", "$")):
            yield _shown(text), "bind", source
        else:
            yield _shown(text), "volume", source


def _local(declared: Any) -> bool:
    """A top-level volume whose data stays on one node: the local driver (the default; an external
    volume's driver is not in the file, and is taken for local) unless it mounts a network file system."""
    declared = declared if isinstance(declared, Mapping) else {}
    if (declared.get("driver") or "local") != "local":
        return False
    kind = str((declared.get("driver_opts") or {}).get("type") or "")
    return kind not in NETWORK_FILESYSTEMS


def _number(value: Any, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _nodes(count: int) -> str:
    return "the 1 node" if count == 1 else f"all {count} nodes"


def _shown(value: Any) -> str:
    return json.dumps(value)
