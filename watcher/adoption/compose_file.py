"""The user's compose file as init reads it: found, parsed as Compose does (YAML 1.2 scalars),
its project name, networks and volumes, its services' ports and mounts, and which one is Caddy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from watcher.errors import UsageError
from watcher.validation import validate_name

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)


class ComposeLoader(yaml.SafeLoader):
    """Scalars as Compose (YAML 1.2) reads them: `22:22` stays a string, not YAML 1.1's base-60
    1342, and `on`/`yes` stay strings. A port read wrong is a host port missed."""


_INT, _BOOL, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
ComposeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _BOOL, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ComposeLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ComposeLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))


@dataclass(frozen=True)
class ComposeFile:
    """The user's compose file: its text (for the diff) and what it says (for the checks)."""

    path: Path
    text: str
    data: dict[str, Any]

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.data["services"]

    def networks_of(self, service: str) -> list[str]:
        """The networks a service is on (none listed: the project's `default`)."""
        networks = self.services[service].get("networks")
        return list(networks) if networks else ["default"]

    def network_name(self, network: str, project: str) -> str:
        """The Docker name of a network of the shared project: what the colours join."""
        return self._name("networks", network, project)

    def volume_name(self, volume: str, project: str) -> str:
        return self._name("volumes", volume, project)

    def _name(self, kind: str, key: str, project: str) -> str:
        declared = (self.data.get(kind) or {}).get(key) or {}
        if declared.get("name"):
            return str(declared["name"])
        external = declared.get("external")
        if isinstance(external, dict) and external.get("name"):  # the old `external: {name: X}`
            return str(external["name"])
        return key if external else f"{project}_{key}"


def compose_path(given: str | None) -> Path:
    if given:
        path = Path(given)
        if not path.is_file():
            raise UsageError(f"{given}: no such compose file")
        return path.resolve()
    for name in COMPOSE_NAMES:
        if Path(name).is_file():
            return Path(name).resolve()
    raise UsageError(
        f"no compose file here (looked for {', '.join(COMPOSE_NAMES)}): name it, "
        "e.g. `watcher init path/to/compose.yml`"
    )


def read_compose(path: Path) -> ComposeFile:
    try:
        text = path.read_text()
        data = yaml.load(text, Loader=ComposeLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict) or not services:
        raise UsageError(f"{path}: no `services:` to adopt")
    for name, service in services.items():
        if not isinstance(service, dict):
            raise UsageError(f"{path}: service {name}: expected a mapping of keys")
    return ComposeFile(path, text, data)


def compose_project(compose: ComposeFile, flag: str | None, env: dict[str, str]) -> tuple[str, str]:
    """The compose project the shared services run in today, and where that name comes from, in
    docker compose's own order: -p, COMPOSE_PROJECT_NAME (environment, then .env), top-level
    `name:`, the directory's name."""
    dotenv = _dotenv(compose.dir / ".env").get("COMPOSE_PROJECT_NAME")
    candidates = [
        (flag, "--project"),
        (env.get("COMPOSE_PROJECT_NAME"), "COMPOSE_PROJECT_NAME"),
        (dotenv, ".env's COMPOSE_PROJECT_NAME"),
        (compose.data.get("name"), "its top-level name:"),
        (_normalized(compose.dir.name), f"its directory's name ({compose.dir.name})"),
    ]
    found = next(((str(value), source) for value, source in candidates if value), None)
    if found is None:
        raise UsageError(
            f"{compose.dir}: no compose project name can be made of this directory's name: "
            "pass the one docker compose uses with --project"
        )
    name, source = found
    if "$" in name:
        raise UsageError(
            f"{compose.path.name}: the project name {name!r} ({source}) is interpolated: "
            "pass the name docker compose gives it with --project"
        )
    return valid_name(name, "project name", "--project"), source


def _dotenv(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip().removeprefix("export "): value.strip().strip("'\"") for key, value in pairs}


def _normalized(directory: str) -> str:
    """A directory name as docker compose makes a project name of it."""
    return re.sub(r"[^a-z0-9_-]", "", directory.lower()).lstrip("_-")


def valid_name(name: str, kind: str, flag: str) -> str:
    try:
        return validate_name(name, kind)
    except ValueError as exc:
        raise UsageError(f"{exc} (choose one with {flag})") from None


def repository(image: Any) -> tuple[str | None, str | None]:
    """An image reference's repository and tag; None for what interpolation decides."""
    if not isinstance(image, str) or not image:
        return None, None
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]  # a registry's port comes before; `${TAG:-1.0}` has a colon too
    repo, tag = name[: len(name) - len(last)] + last.partition(":")[0], last.partition(":")[2]
    return (None if "$" in repo else repo), (None if "$" in tag or not tag else tag)


@dataclass(frozen=True)
class Port:
    shown: str
    published: str | None  # the host port; None: only the container's
    target: str
    host_ip: str | None = None  # the host address it is bound to; None: all


@dataclass(frozen=True)
class Mount:
    shown: str
    source: str | None
    named: bool
    read_only: bool


def ports_of(service: dict[str, Any]) -> Iterator[Port]:
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = str(entry.get("published") or "") or None
            target = str(entry.get("target", ""))
            shown = f"{published}:{target}" if published else target
            yield Port(shown, published, target, entry.get("host_ip"))
            continue
        text = str(entry)
        ip, rest = text[1:].split("]:", 1) if text.startswith("[") else (None, text)  # [::1]:8080:80
        parts = rest.split("/", 1)[0].split(":")
        published = parts[-2] if len(parts) >= 2 and parts[-2] else None
        yield Port(text, published, parts[-1], f"[{ip}]" if ip else parts[0] if len(parts) == 3 else None)


def volumes_of(service: dict[str, Any]) -> Iterator[Mount]:
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            source = entry.get("source")
            named = entry.get("type", "volume") == "volume" and bool(source)
            yield Mount(
                f"{source}:{entry.get('target')}" if source else str(entry.get("target")),
                source,
                named,
                bool(entry.get("read_only")),
            )
            continue
        text = str(entry)
        parts = text.split(":")
        source = parts[0] if len(parts) > 1 else None
        named = source is not None and not source.startswith((".", "/", "~", "$"))
        yield Mount(text, source, named, len(parts) > 2 and "ro" in parts[2].split(","))


def caddy_service(compose: ComposeFile, stateless: list[str]) -> str | None:
    """The shared service that looks like Caddy, if exactly one does."""
    found = [
        name
        for name, service in compose.services.items()
        if name not in stateless
        and (repository(service.get("image"))[0] or "").rsplit("/", 1)[-1].startswith("caddy")
    ]
    return found[0] if len(found) == 1 else None
