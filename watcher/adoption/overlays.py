"""The text of what init writes for the app: the colour overlays (compose.<colour>.yml) and the
app's `[apps.<name>]` section of the watcher config, or a new config around it."""

from __future__ import annotations

import json
import re

from watcher.adoption.answers import Answers, Stateless
from watcher.adoption.compose_file import ComposeFile, volumes_of

COLORS = ("blue", "green")
#: The overlay with the Caddy service init adds when the compose file has none.
CADDY_OVERLAY = "compose.watcher.yml"


def quoted(value: str) -> str:
    """A double-quoted string, valid both in YAML and in TOML."""
    return json.dumps(value)


def key_text(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_.-]+", name) else quoted(name)


def overlay(compose: ComposeFile, answers: Answers, color: str) -> str:
    """compose.<colour>.yml: per stateless service, the colour's label and its network alias on
    each of its networks, which are the shared project's (external: a colour only joins them)."""
    names = answers.names
    lines = [
        f"# The {color} colour of {answers.app}'s stateless services (written by `watcher init`). watcher runs",
        f"#   docker compose -p {answers.project}-{color} -f {compose.path.name} -f compose.{color}.yml "
        f"--profile '*' up -d {' '.join(names)}",
        "# with WATCHER_APP, APP_IMAGE, APP_VERSION and WATCHER_COLOR set. Caddy reaches this colour by",
        f"# the network alias {answers.app}-<service>-{color}.",
        "services:",
    ]
    networks: dict[str, None] = {}
    volumes: dict[str, None] = {}
    for name in names:
        lines += [f"  {key_text(name)}:", "    labels:", f"      watcher.color: {color}", "    networks:"]
        for network in compose.networks_of(name):
            networks[network] = None
            lines += [
                f"      {key_text(network)}:",
                f"        aliases: [{quoted(f'{answers.app}-{name}-{color}')}]",
            ]
        volumes.update((m.source, None) for m in volumes_of(compose.services[name]) if m.named and m.source)
    lines += ["", "networks:"]
    for index, network in enumerate(networks):
        if index == 0:
            lines.append(f"  # The shared project {answers.project}'s: a colour project only joins them.")
        lines += [
            f"  {key_text(network)}:",
            f"    name: {quoted(compose.network_name(network, answers.project))}",
            "    external: true",
        ]
    lines += _volumes(compose, answers, color, list(volumes))
    return "\n".join(lines) + "\n"


def _volumes(compose: ComposeFile, answers: Answers, color: str, volumes: list[str]) -> list[str]:
    """The named volumes the colour's services mount: its own (per colour, created by the colour
    project and removed with it), and the shared project's (read-only, one copy for both)."""
    own = [volume for volume in volumes if volume in answers.per_colour]
    shared = [volume for volume in volumes if volume not in answers.per_colour]
    lines = ["", "volumes:"] if volumes else []
    if own:
        lines.append(
            "  # This colour's own (--per-colour-volume): an empty copy per colour, removed with it."
        )
    for volume in own:
        lines += [f"  {key_text(volume)}:", f"    name: {quoted(f'{answers.project}-{color}_{volume}')}"]
    if shared:
        lines.append(
            f"  # The shared project {answers.project}'s, read-only here: one copy for both colours."
        )
    for volume in shared:
        lines += [
            f"  {key_text(volume)}:",
            f"    name: {quoted(compose.volume_name(volume, answers.project))}",
            "    external: true",
        ]
    return lines


def app_section(
    compose: ComposeFile,
    answers: Answers,
    project_dir: str,
    added_caddy: str | None,
    *,
    platform_key: bool = False,
) -> str:
    """The app's `[apps.<name>]` tables, each key commented for the user who reads them next;
    `added_caddy`: the Caddy service of CADDY_OVERLAY, run shared. `platform` is written for
    Swarm, or always (`platform_key`) when it replaces a section that had one."""
    app = answers.app
    shared = [*answers.shared(compose), *([added_caddy] if added_caddy else [])]
    files = [compose.path.name, *([CADDY_OVERLAY] if added_caddy else [])]
    lines = [
        f"# {app}: adopted from {compose.path.name} by `watcher init`.",
        f"[apps.{app}]",
        f"image = {quoted(answers.image)}   # the repository; each deploy's version is its tag",
        *(
            [f"platform = {quoted(answers.platform)}   # what runs the colours (docs/platforms.md)"]
            if platform_key or answers.platform != "compose"
            else []
        ),
        f"project = {quoted(answers.project)}   # the compose project the shared services already run in",
        f"project_dir = {quoted(project_dir)}",
        f"compose_files = [{', '.join(quoted(f) for f in files)}]   # compose.<colour>.yml is added per colour",
        f"shared_services = [{', '.join(quoted(s) for s in shared)}]   # started if missing, never recreated",
    ]
    if answers.site:
        lines += ["", f"[apps.{app}.caddy]", f"site = {quoted(answers.site)}"]
    for service in answers.stateless:
        lines += ["", f"[apps.{app}.services.{service.name}]", *_service_keys(app, service)]
    if answers.tags and answers.tags.table:
        lines += [
            "",
            f"[apps.{app}.policy]   # proposed by init from the registry's tags: see `watcher check-tags`",
        ]
        lines += [f"{key} = {_toml_text(value)}" for key, value in answers.tags.table.items()]
    lines += [
        "",
        f"[apps.{app}.verify]",
        f"url = {quoted(answers.verify_url)}   # through Caddy: must answer the version deployed",
    ]
    if answers.verify_header:
        lines.append(f"header = {quoted(answers.verify_header)}")
    return "\n".join(lines) + "\n"


def _toml_text(value: str) -> str:
    """A literal string when it can be one (a regex reads as written), else a basic one."""
    return f"'{value}'" if "'" not in value and "\n" not in value else quoted(value)


def _service_keys(app: str, service: Stateless) -> list[str]:
    """One stateless service's keys: what the user said, and what the file says of it; a health
    path init only proposes is commented out, for the user to check."""
    lines = []
    if service.port is None:
        lines.append("# per colour, not proxied")
    else:
        lines += [f"port = {service.port}   # Caddy dials {app}-{service.name}-<colour>:{service.port}"]
    if service.path:
        lines.append(f"path = {quoted(service.path)}")
    if service.keep_prefix:
        lines.append("keep_prefix = true   # Caddy sends the full path, prefix included")
    if service.one_shot:
        lines.append(f"one_shot = true   # {service.one_shot}: runs to completion once per deploy")
    if service.follows:
        lines.append(f"follows_version = true   # {service.follows}: deployed with the app's version")
    if service.health:
        port = f", port = {service.health.port}" if service.health.port else ""
        value = f"health = {{ path = {quoted(service.health.path)}{port} }}"
        if service.health_given:
            lines.append(f"{value}   # watcher GETs it itself (2xx/3xx: healthy)")
        else:
            lines += [
                f"# {value}   # proposed by init: {service.health.why};",
                f"#   check that it answers 2xx, then uncomment (or pass --health {service.name}:"
                f"{service.health.path}{f':{service.health.port}' if port else ''} to init)",
            ]
    return lines


NEW_CONFIG = """\
# watcher configuration, written by `watcher init`. Every key is described in watcher's docs/configuration.md
# ("Configuration"); durations accept 300, 300s, 5m, 250ms.

[caddy]
run_dir = ".watcher/run"   # mounted into Caddy at /run/watcher: the route files and its admin socket

"""
