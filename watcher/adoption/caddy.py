"""The Caddy service init adds when the compose file has none (published files never do): a
compose.watcher.yml overlay, in the shared project, with the app's Caddyfile and watcher's run
directory mounted, on the proxied services' networks, publishing the host port the proxied
service published before (that port moves to Caddy; the diff removes it from the service)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from watcher.adoption.answers import Answers
from watcher.adoption.compose_file import ComposeFile, Port, caddy_service, ports_of
from watcher.adoption.overlays import key_text, quoted


@dataclass(frozen=True)
class AddedCaddy:
    name: str
    image: str
    ports: tuple[str, ...]  # published:container, as compose reads them
    networks: tuple[str, ...]
    moved_from: str | None  # the service whose host ports Caddy takes over
    dropped: tuple[str, ...] = ()  # its other host ports (not the one Caddy proxies to): gone


def adds_caddy(compose: ComposeFile, answers: Answers) -> bool:
    """Whether init adds a Caddy: not when the file has its own, nor when the config has other
    apps (their Caddy fronts this one too; two would share one admin socket)."""
    return caddy_service(compose, answers.names) is None and not answers.fronted


def added_caddy(compose: ComposeFile, answers: Answers, site: str) -> AddedCaddy | None:
    """The Caddy to add; None when one is there already."""
    if not adds_caddy(compose, answers):
        return None
    main = next(s for s in answers.stateless if s.port is not None and s.path is None)
    listens = re.search(r":(\d+)$", site)
    inside = listens.group(1) if listens else "80"
    released = moved_ports(compose, answers)
    moved = [p for p in released if p.target == str(main.port)]
    ports = tuple(f"{f'{p.host_ip}:' if p.host_ip else ''}{p.published}:{inside}" for p in moved) or (
        f"80:{inside}",
    )
    dropped = tuple(p.shown for p in released if p not in moved)
    name = "caddy" if "caddy" not in compose.services else "watcher-caddy"
    networks = tuple(
        dict.fromkeys(n for s in answers.stateless if s.port for n in compose.networks_of(s.name))
    )
    return AddedCaddy(name, answers.caddy_image, ports, networks, main.name if released else None, dropped)


def moved_ports(compose: ComposeFile, answers: Answers) -> list[Port]:
    """The host ports of the proxied service, which it gives up when init adds Caddy: Caddy
    publishes those on the port it proxies to; the others (a second listener, e.g. its own
    HTTPS) are dropped, since Caddy fronts the app. An existing Caddy publishes its own, and
    then every host port of a stateless service is refused."""
    if not adds_caddy(compose, answers):
        return []
    main = next((s for s in answers.stateless if s.port is not None and s.path is None), None)
    if main is None:
        return []
    return [p for p in ports_of(compose.services[main.name]) if p.published]


def caddy_overlay(caddy: AddedCaddy, app: str, caddyfile: str, run_dir: str, mount: str) -> str:
    """compose.watcher.yml: the Caddy service, in the shared project."""
    moved = f"   # moved from {caddy.moved_from}" if caddy.moved_from else ""
    lines = [
        f"# Caddy in front of {app}'s colours (written by `watcher init`: the compose file had no Caddy).",
        "# It runs in the shared project; watcher starts it with the shared services if it is missing.",
        "services:",
        f"  {key_text(caddy.name)}:",
        f"    image: {quoted(caddy.image)}",
        "    restart: unless-stopped",
        "    ports:",
        *(f"      - {quoted(port)}{moved}" for port in caddy.ports),
        "    volumes:",
        f"      - {quoted(f'{caddyfile}:/etc/caddy/Caddyfile:ro')}   # written by `watcher init`",
        f"      - {quoted(f'{run_dir}:{mount}')}   # watcher's route files and Caddy's admin socket",
        f"    networks: [{', '.join(key_text(n) for n in caddy.networks)}]   # where the colours' aliases are",
    ]
    return "\n".join(lines) + "\n"
