"""The edits the user's compose file needs, proposed as a diff (init never edits it): line edits
that keep comments and layout, checked by parsing the result, or None when the layout is beyond them."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from watcher.adoption.answers import Answers, default_image
from watcher.adoption.caddy import released_ports
from watcher.adoption.compose_file import ComposeFile, ComposeLoader, caddy_service, repository, volumes_of
from watcher.adoption.overlays import quoted

# The profile the edits put on the stateless services: a plain `docker compose up` skips them.
PROFILE = "app"


@dataclass(frozen=True)
class _Key:
    line: int  # the key's line
    end: int  # after its block's last line with content
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
        self.changes: list[tuple[int, int, list[str]]] = []  # lines[start:end] = new

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

    def remove(self, keys: dict[str, _Key], key: str) -> None:
        self.changes.append((keys[key].line, keys[key].end, []))

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
    dropped = dropped_keys(compose, answers)
    for name in answers.names:
        keys = edits.service(name)
        if keys is None or any(key not in keys for key in dropped.get(name, [])):
            return None  # or the key comes from an anchor (`<<: *defaults`)
        for key in dropped.get(name, []):
            edits.remove(keys, key)
        image = image_for(compose, answers, name)
        if image != compose.services[name].get("image"):
            edits.put(keys, "image", image)
        profiles = list(compose.services[name].get("profiles") or [])
        if uses_profile(answers) and PROFILE not in profiles:
            edits.put(
                keys,
                "profiles",
                f"[{', '.join([PROFILE, *profiles])}]",
                "run per colour by watcher; a plain `docker compose up` skips it",
            )
    caddy = caddy_service(compose, answers.names)
    if caddy and not _mounts(compose, caddy, mount):
        if not _mount_run_dir(edits, caddy, f"{bind_source(run_dir, compose.dir)}:{mount}"):
            return None
    text = edits.text()
    return text if _edited_right(text, compose, answers, caddy) else None


def uses_profile(answers: Answers) -> bool:
    """Whether the diff puts the stateless services behind the `app` profile: on Compose (a plain
    `docker compose up` then skips them), never on Swarm, whose `stack deploy` rejects profiles."""
    return answers.platform == "compose"


def dropped_keys(compose: ComposeFile, answers: Answers) -> dict[str, list[str]]:
    """The keys the stateless services lose: a container_name (a name exists once, but each colour
    runs its own copy; Caddy reaches them by alias), and the proxied services' host ports (Caddy
    fronts them; the one it adds publishes the main service's)."""
    dropped = {
        s.name: ["container_name"]
        for s in answers.stateless
        if compose.services[s.name].get("container_name")
    }
    for name in released_ports(compose, answers):
        dropped.setdefault(name, []).append("ports")
    return dropped


def image_for(compose: ComposeFile, answers: Answers, name: str) -> str:
    """The app's image under watcher's variables (the defaults keep a plain `docker compose`
    quiet and never run a version nobody chose); a sidecar on another image keeps its own."""
    current = str(compose.services[name].get("image"))
    if answers.of(name).follows:
        # Its own repository, the app's version: `…-streaming:${VERSION}` moves with the app.
        last = current.rsplit("/", 1)[-1]
        repo = current[: len(current) - len(last)] + last.split(":", 1)[0].split("@", 1)[0]
        return f"{repo}:${{APP_VERSION:-unset}}"
    if is_sidecar(compose, answers, name):
        return current
    return f"${{APP_IMAGE:-{answers.image}}}:${{APP_VERSION:-unset}}"


def is_sidecar(compose: ComposeFile, answers: Answers, name: str) -> bool:
    """A stateless service on an image of its own, which keeps its tag across deploys."""
    repo = compose.repository_of(name)
    return repo is not None and repo not in app_repos(compose, answers) and not answers.of(name).follows


def app_repos(compose: ComposeFile, answers: Answers) -> set[str | None]:
    """The app's image, as configured and as the compose file names it today."""
    return {answers.image, default_image(compose, answers.stateless)}


def current_tag(compose: ComposeFile, answers: Answers) -> str | None:
    """The tag of the app's image the compose file runs today: written, or the default of its
    variable (`${VERSION:-1.4.2}`)."""
    for name in answers.names:
        image = str(compose.services[name].get("image") or "")
        repo, tag = compose.repository_of(name), repository(image)[1]
        if repo not in app_repos(compose, answers):
            continue
        default = re.fullmatch(r"\$\{\w+:?-([^}$]+)\}", image.rsplit("/", 1)[-1].partition(":")[2])
        if tag or default:
            return tag or default.group(1)
    return None


def _mounts(compose: ComposeFile, service: str, target: str) -> bool:
    return any(m.shown.split(":")[1:2] == [target] for m in volumes_of(compose.services[service]))


def _mount_run_dir(edits: _Edits, caddy: str, volume: str) -> bool:
    keys = edits.service(caddy)
    if keys is None:
        return False
    entry = f"- {quoted(volume)}   # watcher's route files and Caddy's admin socket"
    if "volumes" not in keys:
        indent = next(iter(keys.values())).indent
        edits.insert(
            max(key.end for key in keys.values()), [" " * indent + "volumes:", " " * (indent + 2) + entry]
        )
        return True
    key = keys["volumes"]
    items = [line for line in edits.lines[key.line + 1 : key.end] if line.strip().startswith("- ")]
    if not items:
        return False  # a flow list, `volumes: [a, b]`
    edits.insert(key.end, [" " * (len(items[-1]) - len(items[-1].lstrip(" "))) + entry])
    return True


def bind_source(path: Path, base: Path) -> str:
    """A bind mount's source as compose reads it: `./x` under the project directory, else absolute."""
    return f"./{path.relative_to(base)}" if path.is_relative_to(base) else str(path)


def _edited_right(text: str, compose: ComposeFile, answers: Answers, caddy: str | None) -> bool:
    """The edited file parses and differs from the original exactly as meant: a line edit of
    YAML is checked, never trusted."""
    try:
        after = yaml.load(text, Loader=ComposeLoader)  # noqa: S506 - a SafeLoader subclass
        services = after["services"]
    except (yaml.YAMLError, KeyError, TypeError):
        return False
    expected = {name: dict(service) for name, service in compose.services.items()}
    for name, keys in dropped_keys(compose, answers).items():
        for key in keys:
            del expected[name][key]
    for name in answers.names:
        expected[name]["image"] = image_for(compose, answers, name)
        profiles = list(expected[name].get("profiles") or [])
        if uses_profile(answers):
            expected[name]["profiles"] = profiles if PROFILE in profiles else [PROFILE, *profiles]
    if caddy is not None and isinstance(services.get(caddy), dict):
        expected[caddy]["volumes"] = services[caddy].get("volumes")
    others = {k: v for k, v in after.items() if k != "services"}
    return services == expected and others == {k: v for k, v in compose.data.items() if k != "services"}


def diff(compose: ComposeFile, text: str) -> str:
    name = compose.path.name
    return "".join(
        difflib.unified_diff(
            _ended(compose.text).splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"a/{name}",
            f"b/{name}",
        )
    )
