"""Rewriting an app already in the config (--force): init's own keys replace the old ones, and
every other key the user set for the app (health, verify timeouts, drain, bake, hooks, ...) is
kept where it was; what changed is said. tomllib has no writer, so the kept values are written
back here (inline tables and arrays: valid wherever a table would be)."""

from __future__ import annotations

import datetime
import json
import re
import tomllib
from typing import Any

from watcher.adoption.overlays import key_text
from watcher.errors import UsageError

_HEADER = re.compile(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def rewritten(config: str, app: str, section: str) -> tuple[str, list[str]]:
    """The config with app's section replaced by `section` plus the keys init does not decide,
    and what changed, one line per key."""
    old = tomllib.loads(config)["apps"][app]
    new = tomllib.loads(section)["apps"][app]
    # The tables init writes, and `services`, which holds those of the services.
    tables = {path for line in section.splitlines() if (path := _header_path(line))} | {
        f"apps.{app}.services"
    }
    kept = _kept(old, new, f"apps.{app}", tables)
    text = _without(config, app) + "\n\n" + _with_kept(section, app, kept)
    try:
        same = tomllib.loads(text)["apps"][app] == _merged(new, kept)
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise UsageError(
            f"[apps.{app}] is written in a layout init cannot rewrite (dotted keys outside its "
            "tables?): move it to [apps.<name>] tables, or remove it and run init again"
        )
    changes = [
        f"{key}: {_shown(before)} -> {_shown(after)}"
        for key, before, after in _differences(_flat(old), _flat(_merged(new, kept)))
    ]
    return text, changes


def _kept(old: dict[str, Any], new: dict[str, Any], path: str, tables: set[str]) -> dict[str, Any]:
    """What the user had that init does not write: old keys absent from `new` and, within the
    tables init writes (`tables`), theirs, recursively. A value init writes (an inline
    `health = {...}` too) replaces the old one whole."""
    kept: dict[str, Any] = {}
    for key, value in old.items():
        here = f"{path}.{key}"
        if key not in new:
            if not path.endswith(".services"):  # a service no longer stateless runs shared now
                kept[key] = value
        elif isinstance(value, dict) and here in tables:
            inner = _kept(value, new[key], here, tables)
            if inner:
                kept[key] = inner
    return kept


def _merged(new: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    merged = dict(new)
    for key, value in kept.items():
        merged[key] = _merged(new[key], value) if key in new else value
    return merged


def _without(config: str, app: str) -> str:
    """The config without app's tables (and init's own comment line above them)."""
    lines, out, inside = config.splitlines(), [], False
    for line in lines:
        header = _HEADER.match(line)
        if header:
            path = header.group(1).replace(" ", "")
            inside = path == f"apps.{app}" or path.startswith(f"apps.{app}.")
        if not inside and not line.startswith(f"# {app}: adopted from "):
            out.append(line)
    return "\n".join(out).rstrip("\n")


def _with_kept(section: str, app: str, kept: dict[str, Any]) -> str:
    """Init's section with each kept key written at the end of its table; the tables init does
    not write follow, as tables of their own."""
    lines, out = section.rstrip("\n").split("\n"), []
    prefix = f"apps.{app}"
    tables = {_header_path(line) for line in lines} - {None}
    current: str | None = None
    for line in [*lines, "[end]"]:
        path = _header_path(line)
        if path is not None:
            if current is not None:
                while out and not out[-1].strip():
                    out.pop()
                out += _scalars(_at(kept, current, prefix))
                out.append("")
            current = path
        if line != "[end]":
            out.append(line)
    for path in sorted(_table_paths(kept, prefix) - tables):
        out += [f"[{path}]", *_scalars(_at(kept, path, prefix)), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _header_path(line: str) -> str | None:
    match = _HEADER.match(line.split("   #")[0])
    return match.group(1).replace(" ", "").replace('"', "") if match else None


def _at(kept: dict[str, Any], path: str, prefix: str) -> dict[str, Any]:
    node: Any = kept
    rest = path.removeprefix(prefix).strip(".")
    for part in rest.split(".") if rest else []:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _table_paths(kept: dict[str, Any], path: str) -> set[str]:
    """Every table under `path` that has a key of its own to write."""
    paths = {path} if any(not isinstance(v, dict) for v in kept.values()) else set()
    for key, value in kept.items():
        if isinstance(value, dict):
            paths |= _table_paths(value, f"{path}.{key}")
    return paths


def _scalars(values: dict[str, Any]) -> list[str]:
    """The keys of one table that are not tables themselves (those get their own header)."""
    return [
        f"{key_text(key)} = {value_text(value)}   # kept"
        for key, value in values.items()
        if not isinstance(value, dict)
    ]


def value_text(value: Any) -> str:
    """A TOML value: strings as JSON's (a subset of TOML's basic strings), tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    pairs = ", ".join(f"{key_text(k)} = {value_text(v)}" for k, v in value.items())
    return f"{{ {pairs} }}" if pairs else "{}"


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    keys = [*before, *(key for key in after if key not in before)]
    return [(key, before.get(key), after.get(key)) for key in keys if before.get(key) != after.get(key)]


def _shown(value: Any) -> str:
    return "(none)" if value is None else value_text(value)
