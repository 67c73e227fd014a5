"""`watcher init`: adopt an existing Compose project for blue-green deploys.

Given the user's own compose file and which of its services are stateless (run once per colour)
with their ports, init writes the two colour overlays, the app's `[apps.<name>]` config section
and its Caddy snippet, then prints what is left: the edits to the compose file as a unified diff
(init never edits the user's file) and the few commands after it.

It refuses, with the reason, a compose file it cannot colour safely: whatever one colour would
hold alone (a container name, a host port, a named volume it writes) would clash with the other
colour's copy. It never overwrites a file without --force, never replaces or duplicates an app
already in the config, and --dry-run writes nothing. The shared services keep their compose
project (the file's own), so the postgres and redis that run today are kept, not recreated.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from watcher.errors import ConfigError, UsageError, WatcherError
from watcher.validation import validate_name, validate_tag

COLORS = ("blue", "green")
PROFILE = "app"
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml",
                  "docker-compose.override.yml")
# Images whose containers keep state or front the others: never guessed stateless.
STATEFUL_IMAGES = {"postgres", "postgis", "mysql", "mariadb", "mongo", "redis", "valkey", "memcached",
                   "rabbitmq", "elasticsearch", "opensearch", "minio", "clickhouse-server", "kafka",
                   "zookeeper", "etcd", "consul", "nats", "caddy", "nginx", "traefik", "haproxy"}

HELP = """\
Adopt an existing compose project: say which services are stateless (run once per colour) and
the port Caddy proxies to; init writes compose.blue.yml, compose.green.yml, the app's section of
the watcher config and its Caddy snippet, and prints the edits your compose file needs (a diff;
init never edits it) and the steps left. Nothing is overwritten without --force.

example:
  watcher init compose.yml --service web:8080 --service worker \\
      --verify-url http://127.0.0.1/version --yes
"""


def add_parser(sub: Any) -> None:
    init = sub.add_parser("init", help="adopt an existing compose project: write the colour overlays and config",
                          description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("compose_file", nargs="?", metavar="COMPOSE_FILE",
                      help=f"the compose file to adopt (default: the first of {', '.join(COMPOSE_NAMES)} here)")
    init.add_argument("--service", action="append", default=[], metavar="NAME[:PORT[:PATH]]",
                      help="a stateless service, run once per colour; PORT: Caddy proxies to it; PATH: the "
                           "prefix it answers when several have a port (repeat: --service web:8080 "
                           "--service worker)")
    init.add_argument("--app", metavar="NAME", help="the app's name in watcher (default: the compose project's)")
    init.add_argument("--project", metavar="NAME",
                      help="the compose project the shared services run in (default: COMPOSE_PROJECT_NAME, "
                           "the file's top-level name:, or its directory's name, as docker compose does)")
    init.add_argument("--image", metavar="REPO",
                      help="the app's image repository, without tag (default: the proxied service's image)")
    init.add_argument("--verify-url", metavar="URL",
                      help="URL through Caddy that answers the deployed version, e.g. http://127.0.0.1/version")
    init.add_argument("--verify-header", metavar="NAME", help="read the version from this response header")
    init.add_argument("--site", metavar="ADDRESS", help="the app's Caddy site address (default: [caddy] site, :80)")
    # The same dest as the global --config (which init reads as the file to write, not to load);
    # SUPPRESS keeps `watcher -c FILE init` working.
    init.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="PATH",
                      help="the watcher config to write, or to append the app to with --force (default: "
                           "watcher.toml beside the compose file; $WATCHER_CONFIG is not used)")
    init.add_argument("--caddyfile", metavar="PATH",
                      help="where to write the app's Caddyfile (default: Caddyfile.<app> beside the compose file)")
    init.add_argument("-y", "--yes", action="store_true", help="ask nothing: take the flags, else the defaults")
    init.add_argument("--force", action="store_true",
                      help="replace existing overlays and Caddyfile; append the app to an existing config")
    init.add_argument("--dry-run", action="store_true", help="print everything, write nothing")


def run_init(args: argparse.Namespace) -> int:
    """Read, ask, refuse what cannot be coloured, then write (or, --dry-run, stage) and report."""
    compose = read_compose(_compose_path(args.compose_file))
    prompt = Prompt(interactive=not args.yes and sys.stdin.isatty())
    answers = gather(compose, args, prompt)
    refuse_unsafe(compose, answers)
    plan = Plan.make(compose, answers, config_path=_config_path(compose, args.config),
                     caddyfile=Path(args.caddyfile) if args.caddyfile else None)
    plan.refuse_existing(force=args.force)
    if args.dry_run:
        snippet, host = plan.preview()
    else:
        snippet, host = plan.write()
    print(report(plan, host, snippet, dry_run=args.dry_run))
    return 0


# -- the compose file ----------------------------------------------------------------------------

class _ComposeLoader(yaml.SafeLoader):
    """Scalars as Compose (YAML 1.2) reads them: `22:22` stays a string, not YAML 1.1's base-60
    1342, and `on`/`yes` stay strings. A port read wrong is a host port missed."""


_INT, _BOOL, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_ComposeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _BOOL, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_ComposeLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_ComposeLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))


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
        if isinstance(external, dict) and external.get("name"):   # the old `external: {name: X}`
            return str(external["name"])
        return key if external else f"{project}_{key}"


def _compose_path(given: str | None) -> Path:
    if given:
        path = Path(given)
        if not path.is_file():
            raise UsageError(f"{given}: no such compose file")
        return path.resolve()
    for name in COMPOSE_NAMES:
        if Path(name).is_file():
            return Path(name).resolve()
    raise UsageError(f"no compose file here (looked for {', '.join(COMPOSE_NAMES)}): name it, "
                     "e.g. `watcher init path/to/compose.yml`")


def read_compose(path: Path) -> ComposeFile:
    try:
        text = path.read_text()
        data = yaml.load(text, Loader=_ComposeLoader)  # noqa: S506 - a SafeLoader subclass
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
    candidates = [(flag, "--project"), (env.get("COMPOSE_PROJECT_NAME"), "COMPOSE_PROJECT_NAME"),
                  (dotenv, ".env's COMPOSE_PROJECT_NAME"), (compose.data.get("name"), "its top-level name:"),
                  (_normalized(compose.dir.name), f"its directory's name ({compose.dir.name})")]
    found = next(((str(value), source) for value, source in candidates if value), None)
    if found is None:
        raise UsageError(f"{compose.dir}: no compose project name can be made of this directory's name: "
                         "pass the one docker compose uses with --project")
    name, source = found
    if "$" in name:
        raise UsageError(f"{compose.path.name}: the project name {name!r} ({source}) is interpolated: "
                         "pass the name docker compose gives it with --project")
    return _valid(name, "project name", "--project"), source


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


def _valid(name: str, kind: str, flag: str) -> str:
    try:
        return validate_name(name, kind)
    except ValueError as exc:
        raise UsageError(f"{exc} (choose one with {flag})") from None


def _repository(image: Any) -> tuple[str | None, str | None]:
    """An image reference's repository and tag; None for what interpolation decides."""
    if not isinstance(image, str) or not image:
        return None, None
    name = image.split("@", 1)[0]
    repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    return (None if "$" in repo else repo), (None if "$" in tag or not tag else tag)


# -- what the user says ------------------------------------------------------------------------

@dataclass(frozen=True)
class Stateless:
    """A service run once per colour; with a port, Caddy proxies to it."""

    name: str
    port: int | None
    path: str | None = None


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

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stateless]

    def shared(self, compose: ComposeFile) -> list[str]:
        """The services run once in the shared project: all others a plain `up` starts."""
        return [name for name, service in compose.services.items()
                if name not in self.names and not service.get("profiles")]


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
        answer = input(f"{question} [{'Y/n' if default else 'y/N'}] ").strip().lower()
        return default if not answer else answer in ("y", "yes")


def gather(compose: ComposeFile, args: argparse.Namespace, prompt: Prompt) -> Answers:
    project, source = compose_project(compose, args.project, dict(os.environ))
    stateless = _flagged(compose, args.service) if args.service else _asked(compose, prompt)
    app = _valid(args.app or prompt.ask("app name", project, "--app"), "app name", "--app")
    image = args.image or prompt.ask("the app's image repository (without tag)", _default_image(compose, stateless),
                                     "--image")
    # Only a person may accept a guessed URL: a wrong one fails every deploy's verification.
    guess = _default_verify_url(compose, stateless) if prompt.interactive else None
    verify_url = args.verify_url or prompt.ask("URL through Caddy that answers the deployed version", guess,
                                               "--verify-url")
    return Answers(app, project, source, image, stateless, verify_url, args.verify_header, args.site)


def _flagged(compose: ComposeFile, flags: list[str]) -> tuple[Stateless, ...]:
    chosen = tuple(_parse_service(flag) for flag in flags)
    names = [s.name for s in chosen]
    unknown = [name for name in names if name not in compose.services]
    if unknown:
        raise UsageError(f"--service {', '.join(unknown)}: no such service in {compose.path.name} "
                         f"(its services: {', '.join(compose.services)})")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"--service {', '.join(twice)}: given twice")
    return chosen


def _parse_service(flag: str) -> Stateless:
    """`web`, `web:8080` or `api:9000:/api`."""
    name, _, rest = flag.partition(":")
    port_text, _, path = rest.partition(":")
    name = _valid(name, "service name", "--service NAME[:PORT[:PATH]]")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise UsageError(f"--service {flag}: {port_text!r} is not a port number (1-65535)")
    if path and not path.startswith("/"):
        raise UsageError(f"--service {flag}: the path prefix must start with '/', e.g. {name}:{port_text}:/{path}")
    return Stateless(name, int(port_text) if port_text else None, path or None)


def _asked(compose: ComposeFile, prompt: Prompt) -> tuple[Stateless, ...]:
    if not prompt.interactive:
        raise UsageError(f"which services of {compose.path.name} are stateless? pass --service NAME:PORT for "
                         "each one Caddy proxies to and --service NAME for a worker (its services: "
                         f"{', '.join(compose.services)})")
    print(f"{compose.path.name}: stateless services run once per colour; the others (databases, caches, "
          "Caddy) run once, shared.")
    names = [name for name, service in compose.services.items()
             if prompt.confirm(f"  {name} ({service.get('image') or 'build only'}): stateless?",
                               not _looks_stateful(service))]
    chosen: list[Stateless] = []
    for name in names:
        guess = _guess_port(compose.services[name])
        port = prompt.ask(f"  port Caddy proxies to on {name} (blank: none, a worker)",
                          str(guess) if guess else "", "--service")
        path = prompt.ask(f"  path prefix {name} answers (e.g. /api)", None, "--service") \
            if port and any(s.port for s in chosen) else ""
        chosen.append(_parse_service(":".join(part for part in (name, port, path) if part)))
    if not chosen:
        raise UsageError("no stateless service chosen: watcher deploys what runs per colour")
    return tuple(chosen)


def _looks_stateful(service: dict[str, Any]) -> bool:
    repo, _ = _repository(service.get("image"))
    base = (repo or "").rsplit("/", 1)[-1]
    return base in STATEFUL_IMAGES or any(v.named and not v.read_only for v in _volumes(service))


def _guess_port(service: dict[str, Any]) -> int | None:
    """The port a service listens on, from `expose:` or the container side of `ports:`."""
    for entry in [*(service.get("expose") or []), *(p.target for p in _ports(service))]:
        text = str(entry).split("/", 1)[0]
        if text.isdigit():
            return int(text)
    return None


def _default_image(compose: ComposeFile, stateless: tuple[Stateless, ...]) -> str | None:
    main = next((s for s in stateless if s.port is not None), stateless[0])
    return _repository(compose.services[main.name].get("image"))[0]


def _default_verify_url(compose: ComposeFile, stateless: tuple[Stateless, ...]) -> str:
    caddy = _caddy_service(compose, [s.name for s in stateless])
    published = next((p.published for p in _ports(compose.services[caddy]) if p.target == "80"), None) \
        if caddy else None
    return f"http://127.0.0.1{f':{published}' if published and published != '80' else ''}/version"


# -- what cannot be coloured ---------------------------------------------------------------------

@dataclass(frozen=True)
class Port:
    shown: str
    published: str | None       # the host port; None: only the container's
    target: str


@dataclass(frozen=True)
class Mount:
    shown: str
    source: str | None
    named: bool
    read_only: bool


def _ports(service: dict[str, Any]) -> Iterator[Port]:
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = str(entry.get("published") or "") or None
            target = str(entry.get("target", ""))
            yield Port(f"{published}:{target}" if published else target, published, target)
            continue
        text = str(entry)
        rest = text.split("]:", 1)[1] if text.startswith("[") else text   # [::1]:8080:80
        parts = rest.split("/", 1)[0].split(":")
        published = parts[-2] if len(parts) >= 2 and parts[-2] else None
        yield Port(text, published, parts[-1])


def _volumes(service: dict[str, Any]) -> Iterator[Mount]:
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            source = entry.get("source")
            named = entry.get("type", "volume") == "volume" and bool(source)
            yield Mount(f"{source}:{entry.get('target')}" if source else str(entry.get("target")), source, named,
                        bool(entry.get("read_only")))
            continue
        text = str(entry)
        parts = text.split(":")
        source = parts[0] if len(parts) > 1 else None
        named = source is not None and not source.startswith((".", "/", "~", "$"))
        yield Mount(text, source, named, len(parts) > 2 and "ro" in parts[2].split(","))


def refuse_unsafe(compose: ComposeFile, answers: Answers) -> None:
    """Every reason the file cannot be coloured as it is, at once (exit 2): a user fixes them
    in one pass rather than one per run."""
    problems = [problem for s in answers.stateless for problem in _stateless_problems(s.name, compose.services[s.name])]
    problems += _shared_problems(compose, answers)
    proxied = [s for s in answers.stateless if s.port is not None]
    if not proxied:
        problems.append("no stateless service has a port: give the one Caddy proxies to, e.g. --service web:8080")
    elif len([s for s in proxied if s.path is None]) != 1:
        problems.append(f"{', '.join(s.name for s in proxied)} have ports: Caddy needs to know which answers what: "
                        f"give all but one a path prefix, e.g. --service {proxied[-1].name}:{proxied[-1].port}:/api")
    for name in answers.shared(compose):
        try:
            validate_name(name, "service name")
        except ValueError as exc:
            problems.append(f"{name}: {exc}: watcher names shared services in its config")
    if problems:
        raise UsageError(f"{compose.path.name} cannot be coloured safely as it is:\n" +
                         "\n".join(f"  {problem}" for problem in problems))


def _stateless_problems(name: str, service: dict[str, Any]) -> list[str]:
    problems = []
    if service.get("container_name"):
        problems.append(f"{name}: container_name {json.dumps(service['container_name'])}: a container name exists "
                        "once, but each colour runs its own copy; remove it (Caddy reaches the colours by alias)")
    for port in _ports(service):
        if port.published:
            problems.append(f"{name}: ports {json.dumps(port.shown)}: a host port can be bound by one colour only; "
                            "remove it: Caddy reaches the colours over the network (publish ports on Caddy)")
    if service.get("network_mode"):
        problems.append(f"{name}: network_mode {json.dumps(service['network_mode'])}: each colour needs its own "
                        "network alias for Caddy; remove network_mode")
    for mount in _volumes(service):
        if mount.named and not mount.read_only:
            problems.append(f"{name}: volumes {json.dumps(mount.shown)}: named volume {mount.source} is mounted "
                            "read-write: two colours would write it at once; mount it read-only (:ro) or move "
                            "the writes to a shared service")
    if not service.get("image"):
        problems.append(f"{name}: build without image: watcher deploys registry images: give {name} the image "
                        "your CI pushes" if service.get("build") else f"{name}: no image")
    return problems


def _shared_problems(compose: ComposeFile, answers: Answers) -> list[str]:
    """A shared service waiting on a per-colour one: with the `app` profile, a plain
    `docker compose up` of it would fail, and which colour would it wait for?"""
    problems = []
    for name in answers.shared(compose):
        depends = compose.services[name].get("depends_on") or []
        for target in [d for d in depends if d in answers.names]:
            problems.append(f"{name}: depends_on {target}: {target} runs per colour now (profile {PROFILE}), "
                            f"so {name} cannot wait for it; remove it (Caddy reaches the colours by alias)")
    return problems


def _caddy_service(compose: ComposeFile, stateless: list[str]) -> str | None:
    """The shared service that looks like Caddy, if exactly one does."""
    found = [name for name, service in compose.services.items() if name not in stateless
             and (_repository(service.get("image"))[0] or "").rsplit("/", 1)[-1].startswith("caddy")]
    return found[0] if len(found) == 1 else None


# -- the files -----------------------------------------------------------------------------------

def _q(value: str) -> str:
    """A double-quoted string, valid both in YAML and in TOML."""
    return json.dumps(value)


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_.-]+", name) else _q(name)


def overlay(compose: ComposeFile, answers: Answers, color: str) -> str:
    """compose.<colour>.yml: per stateless service, the colour's label and its network alias on
    each of its networks, which are the shared project's (external: a colour only joins them)."""
    names = answers.names
    lines = [f"# The {color} colour of {answers.app}'s stateless services (written by `watcher init`). watcher runs",
             f"#   docker compose -p {answers.project}-{color} -f {compose.path.name} -f compose.{color}.yml "
             f"--profile '*' up -d {' '.join(names)}",
             "# with WATCHER_APP, APP_IMAGE, APP_VERSION and WATCHER_COLOR set. Caddy reaches this colour by",
             f"# the network alias {answers.app}-<service>-{color}.", "services:"]
    networks: dict[str, None] = {}
    volumes: dict[str, None] = {}
    for name in names:
        lines += [f"  {_key(name)}:", "    labels:", f"      watcher.color: {color}", "    networks:"]
        for network in compose.networks_of(name):
            networks[network] = None
            lines += [f"      {_key(network)}:", f"        aliases: [{_q(f'{answers.app}-{name}-{color}')}]"]
        volumes.update((m.source, None) for m in _volumes(compose.services[name]) if m.named and m.source)
    lines += ["", "networks:"]
    for index, network in enumerate(networks):
        if index == 0:
            lines.append(f"  # The shared project {answers.project}'s: a colour project only joins them.")
        lines += [f"  {_key(network)}:", f"    name: {_q(compose.network_name(network, answers.project))}",
                  "    external: true"]
    if volumes:
        lines += ["", "volumes:", f"  # The shared project {answers.project}'s, read-only here: one copy for "
                                  "both colours."]
        for volume in volumes:
            lines += [f"  {_key(volume)}:", f"    name: {_q(compose.volume_name(volume, answers.project))}",
                      "    external: true"]
    return "\n".join(lines) + "\n"


def app_section(compose: ComposeFile, answers: Answers, project_dir: str) -> str:
    """The app's `[apps.<name>]` tables, each key commented for the user who reads them next."""
    app = answers.app
    shared = answers.shared(compose)
    lines = [f"# {app}: adopted from {compose.path.name} by `watcher init`.", f"[apps.{app}]",
             f"image = {_q(answers.image)}   # the repository; each deploy's version is its tag",
             f"project = {_q(answers.project)}   # the compose project the shared services already run in",
             f"project_dir = {_q(project_dir)}",
             f"compose_files = [{_q(compose.path.name)}]   # compose.<colour>.yml is added per colour",
             f"shared_services = [{', '.join(_q(s) for s in shared)}]   # started if missing, never recreated"]
    if answers.site:
        lines += ["", f"[apps.{app}.caddy]", f"site = {_q(answers.site)}"]
    for service in answers.stateless:
        lines += ["", f"[apps.{app}.services.{service.name}]"]
        if service.port is None:
            lines[-1] += "   # per colour, not proxied"
            continue
        lines[-1] += f"   # Caddy dials {app}-{service.name}-<colour>:{service.port}"
        lines.append(f"port = {service.port}")
        if service.path:
            lines.append(f"path = {_q(service.path)}")
    lines += ["", f"[apps.{app}.verify]",
              f"url = {_q(answers.verify_url)}   # through Caddy: must answer the version deployed"]
    if answers.verify_header:
        lines.append(f"header = {_q(answers.verify_header)}")
    return "\n".join(lines) + "\n"


NEW_CONFIG = """\
# watcher configuration, written by `watcher init`. Every key is described in watcher's README
# ("Configuration"); durations accept 300, 300s, 5m, 250ms.

[caddy]
run_dir = ".watcher/run"   # mounted into Caddy at /run/watcher: the route files and its admin socket

"""


@dataclass(frozen=True)
class Plan:
    """Everything init writes, decided before anything is."""

    compose: ComposeFile
    answers: Answers
    config_path: Path
    config_before: str | None
    caddyfile: Path

    @classmethod
    def make(cls, compose: ComposeFile, answers: Answers, *, config_path: Path, caddyfile: Path | None) -> "Plan":
        try:
            before = config_path.read_text() if config_path.is_file() else None
        except OSError as exc:
            raise UsageError(f"{config_path}: cannot read: {exc.strerror}") from None
        return cls(compose, answers, config_path, before,
                   (caddyfile or compose.dir / f"Caddyfile.{answers.app}").resolve())

    @property
    def app_count(self) -> int:
        """How many apps the config will have: with several, every command needs --app."""
        apps = tomllib.loads(self.config_before).get("apps") if self.config_before else None
        return len(apps or {}) + 1

    @property
    def overlays(self) -> dict[Path, str]:
        return {self.compose.dir / f"compose.{color}.yml": overlay(self.compose, self.answers, color)
                for color in COLORS}

    def section(self, project_dir: str | None = None) -> str:
        relative = os.path.relpath(self.compose.dir, self.config_path.parent)
        return app_section(self.compose, self.answers, relative if project_dir is None else project_dir)

    def config_text(self) -> str:
        """The whole config file after init: the old one with the app appended, or a new one."""
        if self.config_before is None:
            return NEW_CONFIG + self.section()
        return self.config_before.rstrip("\n") + "\n\n" + self.section()

    def refuse_existing(self, *, force: bool) -> None:
        """Nothing is overwritten without --force; an app's section is never replaced or doubled."""
        problems = [f"{_shown(path)} exists: init never overwrites a file; pass --force to replace it"
                    for path in [*self.overlays, self.caddyfile] if path.exists() and not force]
        problems += self._config_problems(force)
        if problems:
            raise UsageError("nothing written:\n" + "\n".join(f"  {problem}" for problem in problems))

    def _config_problems(self, force: bool) -> list[str]:
        if self.config_before is None:
            return []
        where = _shown(self.config_path)
        try:
            raw = tomllib.loads(self.config_before)
        except tomllib.TOMLDecodeError as exc:
            return [f"{where} is not valid TOML ({exc}): fix it first"]
        if "app" in raw:
            return [f"{where} uses the single-app [app] layout: move it to [apps.<name>] tables first, or write "
                    f"{self.answers.app}'s config elsewhere with --config"]
        if self.answers.app in (raw.get("apps") or {}):
            return [f"{where} already has [apps.{self.answers.app}]: init never replaces or duplicates an app's "
                    "section; remove it first, or adopt under another name with --app"]
        clashes = self._clashes(raw)
        if not force:
            clashes.append(f"{where} exists: pass --force to append [apps.{self.answers.app}] to it (the rest "
                           "stays as is)")
        return clashes

    def _clashes(self, raw: dict[str, Any]) -> list[str]:
        """What the app would share with one already configured: the config would not load
        (two apps never share a compose project, nor a Caddy route), so say it now, dry run or not."""
        answers, where = self.answers, _shown(self.config_path)
        ours = {answers.project, *(f"{answers.project}-{color}" for color in COLORS)}
        site = answers.site or (raw.get("caddy") or {}).get("site", ":80")
        problems = []
        for name, app in (raw.get("apps") or {}).items():
            project = app.get("project", name)
            if ours & {project, *(f"{project}-{color}" for color in COLORS)}:
                problems.append(f"{where}: app {name} runs in compose project {project}: two apps never share one")
            caddy = app.get("caddy") or {}
            if caddy.get("path") is None and caddy.get("site", (raw.get("caddy") or {}).get("site", ":80")) == site:
                problems.append(f"{where}: app {name} already answers at {site}: give {answers.app} its own "
                                "site with --site")
        return problems

    # -- writing, or not ---------------------------------------------------------------------------

    def write(self) -> tuple[str, Any]:
        """Write the overlays and the config, load it as watcher will, write the Caddyfile; a
        config that does not load is undone (the files are restored) before the error is raised."""
        written: list[tuple[Path, str | None]] = []

        def put(path: Path, text: str) -> None:
            written.append((path, path.read_text() if path.exists() else None))
            _write(path, text)

        try:
            for path, text in {**self.overlays, self.config_path: self.config_text()}.items():
                put(path, text)
            host = _load(self.config_path)
            snippet = self.snippet(host)
            put(self.caddyfile, snippet)
        except BaseException:
            for path, previous in reversed(written):
                _restore(path, previous)
            raise
        return snippet, host

    def preview(self) -> tuple[str, Any]:
        """What `write` would make of the files, staged in a temporary directory: the compose
        file, the overlays, and a config of this app alone with the host's Caddy settings."""
        with tempfile.TemporaryDirectory(prefix="watcher-init-") as tmp:
            root = Path(tmp)
            _write(root / self.compose.path.name, self.compose.text)
            for path, text in self.overlays.items():
                _write(root / path.name, text)
            staged = root / self.config_path.name
            _write(staged, self._staged_caddy() + self.section("."))
            host = _load(staged)
            return self.snippet(host).replace(str(staged), str(self.config_path)), host

    def _staged_caddy(self) -> str:
        """The `[caddy]` table the real config will have, its paths made absolute."""
        caddy = dict(tomllib.loads(self.config_before).get("caddy") or {}) if self.config_before else {}
        base = self.config_path.parent
        caddy["run_dir"] = str(base / caddy.get("run_dir", ".watcher/run"))
        admin = caddy.get("admin")
        if isinstance(admin, str) and admin.startswith("unix://"):
            caddy["admin"] = "unix://" + str(base / admin.removeprefix("unix://"))
        return "[caddy]\n" + "".join(f"{key} = {_q(str(value))}\n" for key, value in caddy.items()) + "\n"

    def snippet(self, host: Any) -> str:
        from watcher.caddyfile import render

        return render(host, [host.app(self.answers.app)])


def _load(path: Path) -> Any:
    """The config as watcher will read it (no environment overrides): what init wrote must load."""
    from watcher.config import load_host

    try:
        return load_host(path, {})
    except ConfigError as exc:
        raise ConfigError(f"nothing written: the config init made does not load: {exc}") from None


def _config_path(compose: ComposeFile, given: str | None) -> Path:
    return Path(given).resolve() if given else compose.dir / "watcher.toml"


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a crash never leaves half a config."""
    temporary = path.with_name(f".{path.name}.watcher-init")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise WatcherError(f"cannot write {path}: {exc.strerror}") from None


def _restore(path: Path, previous: str | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _write(path, previous)


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to here when under here."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- the compose file's edits, as a diff -----------------------------------------------------------

@dataclass(frozen=True)
class _Key:
    line: int       # the key's line
    end: int        # after its block's last line with content
    indent: int


def _keys(lines: list[str], start: int, end: int) -> dict[str, _Key]:
    """The keys of the block mapping in lines[start:end] (its first content line sets the
    indent); comments and blank lines belong to no key."""
    keys: dict[str, _Key] = {}
    indent: int | None = None
    current: str | None = None
    for index in range(start, end):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            continue
        here = len(lines[index]) - len(lines[index].lstrip(" "))
        indent = here if indent is None else indent
        match = re.match(r"""(["']?)([^"'\s:#]+)\1\s*:(\s|$)""", stripped)
        if here < indent:
            break
        if here == indent and match:
            current = match.group(2)
            keys[current] = _Key(index, index + 1, here)
        elif current is not None:
            keys[current] = _Key(keys[current].line, index + 1, indent)
    return keys


class _Edits:
    """Line edits of the user's compose file (comments and layout kept), applied bottom up so
    the line numbers found hold."""

    def __init__(self, text: str) -> None:
        self.lines = _ended(text).splitlines(keepends=True)
        self.changes: list[tuple[int, int, list[str]]] = []   # lines[start:end] = new

    def service(self, name: str) -> dict[str, _Key] | None:
        """The keys of one service's block; None when it has no block layout (flow style, an alias)."""
        services = _keys(self.lines, 0, len(self.lines)).get("services")
        found = _keys(self.lines, services.line + 1, services.end).get(name) if services else None
        return (_keys(self.lines, found.line + 1, found.end) or None) if found else None

    def put(self, keys: dict[str, _Key], key: str, value: str, comment: str = "") -> None:
        """Set `key: value` in a service: in place of its lines, or as the service's first key."""
        indent = next(iter(keys.values())).indent
        line = " " * indent + f"{key}: {value}" + (f"   # {comment}" if comment else "") + "\n"
        if key in keys:
            self.changes.append((keys[key].line, keys[key].end, [line]))
        else:
            first = min(k.line for k in keys.values())
            self.changes.append((first, first, [line]))

    def insert(self, at: int, lines: list[str]) -> None:
        self.changes.append((at, at, [line + "\n" for line in lines]))

    def text(self) -> str:
        lines = list(self.lines)
        for start, end, new in sorted(self.changes, key=lambda change: change[0], reverse=True):
            lines[start:end] = new
        return "".join(lines)


def _ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def proposed(compose: ComposeFile, answers: Answers, run_dir: Path, mount: str) -> str | None:
    """The compose file with init's edits: the app's image under watcher's variables and the
    `app` profile on the stateless services, the run directory mounted into Caddy. None: the
    file's layout is beyond these line edits, and the steps say them in words instead."""
    edits = _Edits(compose.text)
    for name in answers.names:
        keys = edits.service(name)
        if keys is None:
            return None
        image = _image_for(compose, answers, name)
        if image != compose.services[name].get("image"):
            edits.put(keys, "image", image)
        profiles = list(compose.services[name].get("profiles") or [])
        if PROFILE not in profiles:
            edits.put(keys, "profiles", f"[{', '.join([PROFILE, *profiles])}]",
                      "run per colour by watcher; a plain `docker compose up` skips it")
    caddy = _caddy_service(compose, answers.names)
    if caddy and not _mounts(compose, caddy, mount):
        if not _mount_run_dir(edits, caddy, f"{_bind_source(run_dir, compose.dir)}:{mount}"):
            return None
    text = edits.text()
    return text if _edited_right(text, compose, answers, caddy) else None


def _image_for(compose: ComposeFile, answers: Answers, name: str) -> str:
    """The app's image under watcher's variables (the defaults keep a plain `docker compose`
    quiet and never run a version nobody chose); a sidecar on another image keeps its own."""
    current = compose.services[name].get("image")
    if _is_sidecar(compose, answers, name):
        return str(current)
    return f"${{APP_IMAGE:-{answers.image}}}:${{APP_VERSION:-unset}}"


def _is_sidecar(compose: ComposeFile, answers: Answers, name: str) -> bool:
    repo, _ = _repository(compose.services[name].get("image"))
    return repo is not None and repo not in _app_repos(compose, answers)


def _app_repos(compose: ComposeFile, answers: Answers) -> set[str | None]:
    """The app's image, as configured and as the compose file names it today."""
    return {answers.image, _default_image(compose, answers.stateless)}


def _mounts(compose: ComposeFile, service: str, target: str) -> bool:
    return any(m.shown.split(":")[1:2] == [target] for m in _volumes(compose.services[service]))


def _mount_run_dir(edits: _Edits, caddy: str, volume: str) -> bool:
    keys = edits.service(caddy)
    if keys is None:
        return False
    entry = f"- {_q(volume)}   # watcher's route files and Caddy's admin socket"
    if "volumes" not in keys:
        indent = next(iter(keys.values())).indent
        edits.insert(max(key.end for key in keys.values()), [" " * indent + "volumes:", " " * (indent + 2) + entry])
        return True
    key = keys["volumes"]
    items = [line for line in edits.lines[key.line + 1:key.end] if line.strip().startswith("- ")]
    if not items:
        return False    # a flow list, `volumes: [a, b]`
    edits.insert(key.end, [" " * (len(items[-1]) - len(items[-1].lstrip(" "))) + entry])
    return True


def _bind_source(path: Path, base: Path) -> str:
    """A bind mount's source as compose reads it: `./x` under the project directory, else absolute."""
    return f"./{path.relative_to(base)}" if path.is_relative_to(base) else str(path)


def _edited_right(text: str, compose: ComposeFile, answers: Answers, caddy: str | None) -> bool:
    """The edited file parses and differs from the original exactly as meant: a line edit of
    YAML is checked, never trusted."""
    try:
        after = yaml.load(text, Loader=_ComposeLoader)  # noqa: S506 - a SafeLoader subclass
        services = after["services"]
    except (yaml.YAMLError, KeyError, TypeError):
        return False
    expected = {name: dict(service) for name, service in compose.services.items()}
    for name in answers.names:
        expected[name]["image"] = _image_for(compose, answers, name)
        profiles = list(expected[name].get("profiles") or [])
        expected[name]["profiles"] = profiles if PROFILE in profiles else [PROFILE, *profiles]
    if caddy is not None and isinstance(services.get(caddy), dict):
        expected[caddy]["volumes"] = services[caddy].get("volumes")
    others = {k: v for k, v in after.items() if k != "services"}
    return services == expected and others == {k: v for k, v in compose.data.items() if k != "services"}


def diff(compose: ComposeFile, text: str) -> str:
    name = compose.path.name
    return "".join(difflib.unified_diff(_ended(compose.text).splitlines(keepends=True),
                                        text.splitlines(keepends=True), f"a/{name}", f"b/{name}"))


# -- what is printed -----------------------------------------------------------------------------

def report(plan: Plan, host: Any, snippet: str, *, dry_run: bool) -> str:
    compose = plan.compose
    out = [_summary(compose, plan.answers), ""]
    out += _files(plan, snippet, dry_run=dry_run)
    edited = proposed(compose, plan.answers, host.caddy_run_dir, host.caddy_mount)
    changes = diff(compose, edited) if edited is not None else None
    if changes:
        out += [f"Proposed changes to {_shown(compose.path)} (init never edits it: read them, then apply them):",
                changes.rstrip("\n"), ""]
    elif changes == "":
        out += [f"{_shown(compose.path)} needs no changes.", ""]
    out.append("Steps left:")
    out += [f"  {number}. {step}" for number, step in enumerate(_steps(plan, host, changes), start=1)]
    return "\n".join(out)


def _summary(compose: ComposeFile, answers: Answers) -> str:
    stateless = ", ".join(f"{s.name} (port {s.port}{f', path {s.path}' if s.path else ''})" if s.port
                          else f"{s.name} (no port)" for s in answers.stateless)
    lines = [f"Adopting {_shown(compose.path)}: app {answers.app}, image {answers.image}",
             f"  compose project {answers.project} (from {answers.project_source}): its shared services keep "
             "running as they are",
             f"  per colour (projects {answers.project}-blue and -green): {stateless}",
             f"  shared, run once: {', '.join(answers.shared(compose)) or 'none'}"]
    sidecars = [name for name in answers.names if _is_sidecar(compose, answers, name)]
    if sidecars:
        lines.append(f"  on their own image (started per colour as they are, not versioned): {', '.join(sidecars)}")
    overrides = [name for name in OVERRIDE_NAMES if (compose.dir / name).is_file()]
    if overrides:
        lines.append(f"  warning: a plain `docker compose` reads {overrides[0]}, watcher does not: add it to "
                     f"compose_files in [apps.{answers.app}] if the colours need it")
    return "\n".join(lines)


def _files(plan: Plan, snippet: str, *, dry_run: bool) -> list[str]:
    config = f"[apps.{plan.answers.app}] appended" if plan.config_before is not None else "new"
    files = [*((path, text, "colour overlay") for path, text in plan.overlays.items()),
             (plan.config_path, plan.section(), f"watcher config, {config}"),
             (plan.caddyfile, snippet, "the app's Caddyfile")]
    if not dry_run:
        return [*(f"wrote {_shown(path)} ({what})" for path, _, what in files), ""]
    out = ["Dry run: nothing written. init would write:", ""]
    for path, text, what in files:
        out += [f"==> {_shown(path)} ({what})", text.rstrip("\n"), ""]
    return out


def _steps(plan: Plan, host: Any, changes: str | None) -> list[str]:
    compose, answers = plan.compose, plan.answers
    here = compose.dir
    steps = []
    if changes is None:
        steps.append(_edits_in_words(compose, answers, host))
    elif changes:
        steps.append(f"Apply the diff above: save it as watcher-init.diff and run `patch -p1 < watcher-init.diff` "
                     f"in {here}.")
    steps.append(_caddy_step(plan, host))
    steps += _creation_steps(compose, answers)
    app = f" --app {answers.app}" if plan.app_count > 1 else ""
    version = _first_version(compose, answers)
    steps.append(f"First deploy: `watcher --config {_shown(plan.config_path)} deploy{app} {version}`: it pulls "
                 f"{answers.image}:{version}, starts it as the blue colour beside the shared services, and "
                 "switches Caddy to it once healthy.")
    names = " ".join(answers.names)
    steps.append(f"Then remove the uncoloured {', '.join(answers.names)} that a plain `docker compose up` started: "
                 f"`docker compose -p {answers.project} --profile {PROFILE} rm --stop --force {names}` in {here}.")
    return steps


def _edits_in_words(compose: ComposeFile, answers: Answers, host: Any) -> str:
    edits = [f"{name}: image {_image_for(compose, answers, name)} and profile {PROFILE}" for name in answers.names]
    return (f"Edit {compose.path.name} by hand (its layout is beyond init's line edits): " + "; ".join(edits) +
            f"; mount {host.caddy_run_dir} into Caddy at {host.caddy_mount}.")


def _caddy_step(plan: Plan, host: Any) -> str:
    compose, answers = plan.compose, plan.answers
    proxied = {network for s in answers.stateless if s.port for network in compose.networks_of(s.name)}
    networks = " or ".join(sorted(compose.network_name(network, answers.project) for network in proxied))
    serve = (f"serve {_shown(plan.caddyfile)}: merge its site block and its global `admin` option (watcher reads "
             f"in-flight counts there) into your Caddyfile, or make it the Caddyfile if Caddy fronts only "
             f"{answers.app}")
    caddy = _caddy_service(compose, answers.names)
    if caddy is None:
        return (f"Caddy: join it to network {networks} (where the colours' aliases live), mount "
                f"{host.caddy_run_dir} at {host.caddy_mount}, and {serve}; then restart it.")
    join = "" if proxied & set(compose.networks_of(caddy)) else f", join it to network {networks}"
    return (f"Caddy (service {caddy}): the diff mounts {_bind_source(host.caddy_run_dir, compose.dir)} at "
            f"{host.caddy_mount}{join}; {serve}; then recreate it: `docker compose up -d {caddy}` (until the "
            f"first deploy it has no colour of {answers.app} to send requests to).")


def _creation_steps(compose: ComposeFile, answers: Answers) -> list[str]:
    """The networks and volumes the colours join that no shared service creates."""
    shared = answers.shared(compose)
    used = [("network", key, [s for s in shared if key in compose.networks_of(s)], compose.network_name(
        key, answers.project)) for key in dict.fromkeys(n for name in answers.names for n in compose.networks_of(name))]
    used += [("volume", key, [s for s in shared if key in (m.source for m in _volumes(compose.services[s]))],
              compose.volume_name(key, answers.project))
             for key in dict.fromkeys(m.source for name in answers.names for m in _volumes(compose.services[name])
                                      if m.named and m.source)]
    return [f"No shared service uses {kind} {key}, so nothing creates {name}: create it once with "
            f"`docker {kind} create {name}` and declare it `external: true` in {compose.path.name}."
            for kind, key, users, name in used
            if not users and not ((compose.data.get(f"{kind}s") or {}).get(key) or {}).get("external")]


def _first_version(compose: ComposeFile, answers: Answers) -> str:
    """The tag the compose file runs today, when it names one; else a placeholder."""
    for name in answers.names:
        repo, tag = _repository(compose.services[name].get("image"))
        if tag and repo in _app_repos(compose, answers):
            try:
                return validate_tag(tag)
            except ValueError:
                return "VERSION"
    return "VERSION"
