"""What cannot be coloured safely: whatever one colour would hold alone and clash with the other's
copy, or a shared service waiting on a per-colour one; every reason at once."""

from __future__ import annotations

import json
from typing import Any

from watcher.adoption.answers import Answers
from watcher.adoption.caddy import released_ports
from watcher.adoption.compose_file import ComposeFile, Port, ports_of, volumes_of
from watcher.adoption.proposal import PROFILE
from watcher.adoption.swarm import swarm_findings
from watcher.errors import UsageError
from watcher.validation import validate_name


def refuse_unsafe(compose: ComposeFile, answers: Answers) -> None:
    """Every reason the file cannot be coloured as it is, at once (exit 2): a user fixes them
    in one pass rather than one per run."""
    released = released_ports(compose, answers)
    problems = [
        problem
        for s in answers.stateless
        for problem in _stateless_problems(
            s.name, compose.services[s.name], released.get(s.name, []), answers.per_colour
        )
    ]
    problems += _shared_problems(compose, answers)
    proxied = [s for s in answers.stateless if s.port is not None]
    if not proxied:
        problems.append(
            "no stateless service has a port: give the one Caddy proxies to, e.g. --service web:8080"
        )
    elif len([s for s in proxied if s.path is None]) != 1:
        problems.append(
            f"{', '.join(s.name for s in proxied)} have ports: Caddy needs to know which answers what: "
            f"give all but one a path prefix, e.g. --service {proxied[-1].name}:{proxied[-1].port}:/api"
        )
    for name in answers.shared(compose):
        try:
            validate_name(name, "service name")
        except ValueError as exc:
            problems.append(f"{name}: {exc}: watcher names shared services in its config")
    # Swarm's own (--platform swarm), but for a key init's checks above already refuse.
    problems += [
        finding.message
        for finding in swarm_findings(compose, answers)
        if finding.refused and not any(problem.startswith(finding.subject) for problem in problems)
    ]
    if problems:
        on = " on Docker Swarm" if answers.platform == "swarm" else ""
        raise UsageError(
            f"{compose.path.name} cannot be coloured safely{on} as it is:\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )


def _stateless_problems(
    name: str, service: dict[str, Any], released: list[Port], per_colour: tuple[str, ...]
) -> list[str]:
    problems = []
    for port in ports_of(service):
        if port.published and port not in released:
            problems.append(
                f"{name}: ports {json.dumps(port.shown)}: a host port can be bound by one colour only, "
                f"and Caddy does not proxy to {name}; remove it, or give {name} a port and path "
                "(--service NAME:PORT:PATH) for Caddy to route to it"
            )
    if service.get("network_mode"):
        problems.append(
            f"{name}: network_mode {json.dumps(service['network_mode'])}: each colour needs its own "
            "network alias for Caddy; remove network_mode"
        )
    for mount in volumes_of(service):
        if mount.named and not mount.read_only and mount.source not in per_colour:
            problems.append(
                f"{name}: volumes {json.dumps(mount.shown)}: named volume {mount.source} is mounted "
                "read-write: two colours would write it at once; mount it read-only (:ro), move "
                f"the writes to a shared service, or, for scratch space or a cache, give each colour "
                f"its own empty copy with --per-colour-volume {mount.source}"
            )
    if not service.get("image"):
        problems.append(
            f"{name}: build without image: watcher deploys registry images: give {name} the image "
            "your CI pushes"
            if service.get("build")
            else f"{name}: no image"
        )
    return problems


def _shared_problems(compose: ComposeFile, answers: Answers) -> list[str]:
    """A shared service waiting on a per-colour one: with the `app` profile, a plain
    `docker compose up` of it would fail, and which colour would it wait for?"""
    problems = []
    for name in answers.shared(compose):
        depends = compose.services[name].get("depends_on") or []
        for target in [d for d in depends if d in answers.names]:
            problems.append(
                f"{name}: depends_on {target}: {target} runs per colour now (profile {PROFILE}), "
                f"so {name} cannot wait for it; remove it (Caddy reaches the colours by alias)"
            )
    return problems
