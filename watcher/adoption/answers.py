"""What the user says: which services are stateless (with their ports and paths), the app's name,
image and verify URL, from the flags or, at a terminal, from prompts offering guesses."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, replace
from typing import Any

from watcher.adoption.compose_file import (
    ComposeFile,
    caddy_service,
    compose_project,
    ports_of,
    repository,
    valid_name,
    volumes_of,
)
from watcher.adoption.detect import HealthProposal, follows, health, one_shot
from watcher.adoption.tags import TagProposal
from watcher.errors import UsageError

# Images whose containers keep state or front the others: never guessed stateless.
STATEFUL_IMAGES = {
    "postgres",
    "postgis",
    "mysql",
    "mariadb",
    "mongo",
    "redis",
    "valkey",
    "memcached",
    "rabbitmq",
    "elasticsearch",
    "opensearch",
    "minio",
    "clickhouse-server",
    "kafka",
    "zookeeper",
    "etcd",
    "consul",
    "nats",
    "caddy",
    "nginx",
    "traefik",
    "haproxy",
}


@dataclass(frozen=True)
class Stateless:
    """A service run once per colour; with a port, Caddy proxies to it."""

    name: str
    port: int | None
    path: str | None = None
    keep_prefix: bool = False  # Caddy sends the full path (`handle`), not the rest (`handle_path`)
    one_shot: str | None = None  # why it runs to completion once per deploy of a colour
    follows: str | None = None  # why its image (not the app's) follows the app's version
    health: HealthProposal | None = None  # the HTTP path watcher could judge it by
    health_given: bool = False  # the user gave it (--health): written as said, not as a proposal


@dataclass(frozen=True)
class Answers:
    app: str
    project: str
    project_source: str
    image: str
    stateless: tuple[Stateless, ...]
    verify_url: str
    verify_header: str | None
    site: str | None
    caddy_image: str = "caddy:2.11"  # the Caddy init adds when the compose file has none
    tags: TagProposal | None = None  # the tag policy read off the registry's tags
    fronted: bool = False  # the config has other apps: their Caddy fronts this one too
    per_colour: tuple[str, ...] = ()  # named volumes each colour gets its own copy of
    platform: str = "compose"  # what runs the colours: "compose" or "swarm" (--platform)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stateless]

    def of(self, name: str) -> Stateless:
        return next(s for s in self.stateless if s.name == name)

    def shared(self, compose: ComposeFile) -> list[str]:
        """The services run once in the shared project: all others a plain `up` starts."""
        return [
            name
            for name, service in compose.services.items()
            if name not in self.names and not service.get("profiles")
        ]


class Prompt:
    """Answers from the user at a terminal, or (--yes, no terminal) from the defaults: a
    question without one is an error naming the flag that answers it."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def ask(self, question: str, default: str | None, flag: str) -> str:
        if not self.interactive:
            if default is None:
                raise UsageError(f"{question}: pass {flag}")
            return default
        while True:
            answer = input(f"{question}{f' [{default}]' if default else ''}: ").strip()
            if answer or default is not None:
                return answer or default or ""

    def confirm(self, question: str, default: bool) -> bool:
        """Yes or no; anything else is asked again, never taken for either."""
        while True:
            answer = input(f"{question} [{'Y/n' if default else 'y/N'}] ").strip().lower()
            if not answer:
                return default
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            print("  please answer y or n")


def gather(compose: ComposeFile, args: argparse.Namespace, prompt: Prompt) -> Answers:
    project, source = compose_project(compose, args.project, dict(os.environ))
    stateless = _flagged(compose, args.service, args.keep_prefix) if args.service else _asked(compose, prompt)
    app = valid_name(args.app or prompt.ask("app name", project, "--app"), "app name", "--app")
    image = args.image or prompt.ask(
        "the app's image repository (without tag)", default_image(compose, stateless), "--image"
    )
    # Only a person may accept a guessed URL: a wrong one fails every deploy's verification.
    guess = _default_verify_url(compose, stateless) if prompt.interactive else None
    verify_url = args.verify_url or prompt.ask(
        "URL through Caddy that answers the deployed version", guess, "--verify-url"
    )
    stateless = _detected(compose, stateless, image, args.health)
    per_colour = _per_colour(compose, stateless, args.per_colour_volume, prompt)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", args.caddy_image):
        raise UsageError(f"--caddy-image {args.caddy_image!r}: not an image reference")
    return Answers(
        app,
        project,
        source,
        image,
        stateless,
        verify_url,
        args.verify_header,
        args.site,
        args.caddy_image,
        per_colour=per_colour,
        platform=args.platform,
    )


PER_COLOUR = (
    "each colour then gets its own empty copy, created with the colour and removed with it: right "
    "for scratch space or a cache, wrong for data both colours must see (uploads, settings), which "
    "belongs in a shared service or object storage"
)


def _per_colour(
    compose: ComposeFile, stateless: tuple[Stateless, ...], flags: list[str], prompt: Prompt
) -> tuple[str, ...]:
    """The named volumes each colour gets its own copy of: given with --per-colour-volume or,
    at a terminal, accepted where init would refuse a volume both colours would write."""
    writable = {
        m.source: name
        for name in (s.name for s in stateless)
        for m in volumes_of(compose.services[name])
        if m.named and m.source and not m.read_only
    }
    used = {m.source for s in stateless for m in volumes_of(compose.services[s.name]) if m.named}
    unknown = [name for name in flags if name not in used]
    if unknown:
        raise UsageError(
            f"--per-colour-volume {', '.join(unknown)}: no stateless service mounts such a named volume"
        )
    named = _user_named(compose.data.get("volumes") or {})
    fixed = [name for name in flags if name in named]
    if fixed:
        raise UsageError(
            f"--per-colour-volume {', '.join(fixed)}: declared with name: or external:, so both "
            "colours would share it; a per-colour volume is compose's own, named per colour project"
        )
    chosen = list(dict.fromkeys(flags))
    offered = [name for name in writable if name not in chosen and name not in named]
    if prompt.interactive and offered:
        print(f"A named volume a stateless service writes can be per colour: {PER_COLOUR}.")
        chosen += [
            name
            for name in offered
            if prompt.confirm(f"  {name} (written by {writable[name]}): one copy per colour?", False)
        ]
    return tuple(chosen)


def _user_named(declared: dict[str, Any]) -> set[str]:
    """The top-level volumes whose Docker name is the user's (name:, external:), not per project."""
    return {key for key, spec in declared.items() if {"name", "external"} & set(spec or {})}


def _detected(
    compose: ComposeFile, stateless: tuple[Stateless, ...], image: str, flags: list[str]
) -> tuple[Stateless, ...]:
    """The user's stateless services with what the file says of them, and the one-shot jobs
    they wait for (or that migrate the app's database), which run per colour too."""
    given = dict(_parse_health(flag, stateless) for flag in flags)
    repos = {image, default_image(compose, stateless)}
    waiters = [s.name for s in stateless]
    jobs = [
        Stateless(name, None)
        for name, service in compose.services.items()
        if name not in waiters and not service.get("profiles") and one_shot(compose, name, waiters, repos)
    ]
    main = next((s.name for s in stateless if s.port is not None and s.path is None), stateless[0].name)
    result = []
    for s in (*stateless, *jobs):
        job = one_shot(compose, s.name, waiters, repos) if s.port is None else None
        proposal = given.get(s.name) or (health(compose.services[s.name], s.port) if s.port else None)
        result.append(
            replace(
                s,
                one_shot=job,
                follows=follows(compose, s.name, main, repos),
                health=proposal,
                health_given=s.name in given,
            )
        )
    return tuple(result)


def _parse_health(flag: str, stateless: tuple[Stateless, ...]) -> tuple[str, HealthProposal]:
    """`web:/up` or `web:/up:9000` (another port than the service's)."""
    name, _, rest = flag.partition(":")
    path, _, port = rest.partition(":")
    service = next((s for s in stateless if s.name == name), None)
    if service is None or not path.startswith("/") or (port and not port.isdigit()):
        raise UsageError(f"--health {flag}: expected NAME:PATH[:PORT] of a --service, e.g. --health web:/up")
    if service.port is None and not port:
        raise UsageError(f"--health {flag}: {name} has no port: say which answers, e.g. {name}:{path}:8080")
    return name, HealthProposal(path, int(port) if port else None, "given with --health")


def _flagged(compose: ComposeFile, flags: list[str], keep: list[str]) -> tuple[Stateless, ...]:
    chosen = tuple(_parse_service(flag) for flag in flags)
    names = [s.name for s in chosen]
    pathless = [name for name in keep if not any(s.name == name and s.path for s in chosen)]
    if pathless:
        raise UsageError(
            f"--keep-prefix {', '.join(pathless)}: only a --service NAME:PORT:PATH has a prefix to keep"
        )
    chosen = tuple(replace(s, keep_prefix=s.name in keep) for s in chosen)
    unknown = [name for name in names if name not in compose.services]
    if unknown:
        raise UsageError(
            f"--service {', '.join(unknown)}: no such service in {compose.path.name} "
            f"(its services: {', '.join(compose.services)})"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"--service {', '.join(twice)}: given twice")
    return chosen


def _parse_service(flag: str) -> Stateless:
    """`web`, `web:8080` or `api:9000:/api`."""
    name, _, rest = flag.partition(":")
    port_text, _, path = rest.partition(":")
    name = valid_name(name, "service name", "--service NAME[:PORT[:PATH]]")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise UsageError(f"--service {flag}: {port_text!r} is not a port number (1-65535)")
    if path and not path.startswith("/"):
        raise UsageError(
            f"--service {flag}: the path prefix must start with '/', e.g. {name}:{port_text}:/{path}"
        )
    return Stateless(name, int(port_text) if port_text else None, path or None)


def _asked(compose: ComposeFile, prompt: Prompt) -> tuple[Stateless, ...]:
    if not prompt.interactive:
        raise UsageError(
            f"which services of {compose.path.name} are stateless? pass --service NAME:PORT for "
            "each one Caddy proxies to and --service NAME for a worker (its services: "
            f"{', '.join(compose.services)})"
        )
    print(
        f"{compose.path.name}: stateless services run once per colour; the others (databases, caches, "
        "Caddy) run once, shared."
    )
    names = [
        name
        for name, service in compose.services.items()
        if prompt.confirm(
            f"  {name} ({service.get('image') or 'build only'}): stateless?", not _looks_stateful(service)
        )
    ]
    chosen: list[Stateless] = []
    for name in names:
        guess = _guess_port(compose.services[name])
        port = prompt.ask(
            f"  port Caddy proxies to on {name} (blank: none, a worker)",
            str(guess) if guess else "",
            "--service",
        )
        path = (
            prompt.ask(f"  path prefix {name} answers (e.g. /api)", None, "--service")
            if port and any(s.port for s in chosen)
            else ""
        )
        service = _parse_service(":".join(part for part in (name, port, path) if part))
        if service.path:
            keep = prompt.confirm(f"  does {name} route on the full path ({service.path}/...)?", False)
            service = replace(service, keep_prefix=keep)
        chosen.append(service)
    if not chosen:
        raise UsageError("no stateless service chosen: watcher deploys what runs per colour")
    return tuple(chosen)


def _looks_stateful(service: dict[str, Any]) -> bool:
    repo, _ = repository(service.get("image"))
    base = (repo or "").rsplit("/", 1)[-1]
    return base in STATEFUL_IMAGES or any(v.named and not v.read_only for v in volumes_of(service))


def _guess_port(service: dict[str, Any]) -> int | None:
    """The port a service listens on, from `expose:` or the container side of `ports:`."""
    for entry in [*(service.get("expose") or []), *(p.target for p in ports_of(service))]:
        text = str(entry).split("/", 1)[0]
        if text.isdigit():
            return int(text)
    return None


def default_image(compose: ComposeFile, stateless: tuple[Stateless, ...]) -> str | None:
    main = next((s for s in stateless if s.port is not None), stateless[0])
    return compose.repository_of(main.name)


def _default_verify_url(compose: ComposeFile, stateless: tuple[Stateless, ...]) -> str:
    caddy = caddy_service(compose, [s.name for s in stateless])
    published = (
        next((p.published for p in ports_of(compose.services[caddy]) if p.target == "80"), None)
        if caddy
        else None
    )
    return f"http://127.0.0.1{f':{published}' if published and published != '80' else ''}/version"
