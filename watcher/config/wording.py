"""Every config error says file, app, key and problem, in the words of the documentation: where a
bad setting is (or the environment variable that set it), and pydantic's complaint retold."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from watcher.config.env import APP_ENV, HOST_ENV
from watcher.config.schema import LEGACY_APP_SECTIONS, AppModel, FileModel, ServiceModel
from watcher.errors import ConfigError

#: `fail(app, key, problem)`: the error to raise for one key (app None: a host key).
Fail = Callable[[str | None, str, str], ConfigError]

# The sections of the single-app layout's top level; its other keys are [app]'s.
LEGACY_TOP = {*LEGACY_APP_SECTIONS, "caddy", "poll", "redis", "webhook", "worker"}

_TYPES = {
    "string_type": "expected a string",
    "int_type": "expected a number",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "int_parsing": "expected a number",
}


class Wording:
    """The errors of one file: its path, its layout, and which keys the environment set."""

    def __init__(self, path: Path, legacy: bool, overridden: set[tuple[str | None, str]]) -> None:
        self.path = path
        self.legacy = legacy
        self.overridden = overridden

    def where(self, app: str | None, key: str) -> str:
        """`file: app shop: health.timeout`, or the environment variable that set the key."""
        section, _, name = key.partition(".")
        for env_name, target in {**APP_ENV, **HOST_ENV}.items():
            if target == (section, name) and (app, key) in self.overridden:
                return f"environment {env_name}"
        if self.legacy or app is None:
            if self.legacy and app is not None and section.split("[")[0] not in LEGACY_TOP:
                key = f"app.{key}"
            return f"{self.path}: {key}"
        return f"{self.path}: app {app}: {key}"

    def fail(self, app: str | None, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(app, key)}: {problem}")

    def explain(self, exc: ValidationError) -> ConfigError:
        """pydantic's first error, at the key the user wrote; an unknown key before all else, since
        a typo (`imagee`) is also why a required key (`image`) is missing."""
        errors = exc.errors()
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = [str(part) for part in error["loc"]]
        app = None
        if len(loc) >= 2 and loc[0] == "apps":
            app, loc = loc[1], loc[2:]
        if loc and loc[-1] == "[key]":  # a table's name: an app's or a service's
            loc = loc[:-1] + ["name"] if loc else ["name"]
            if not self.legacy and loc == ["name"]:
                loc = []
        key = ".".join(loc)
        if app is not None and not key:
            return ConfigError(f"{self.path}: apps.{app}: {_problem(error, [])}")
        return self.fail(app, key or "apps", _problem(error, self._known(app, loc)))

    def _known(self, app: str | None, loc: list[str]) -> list[str]:
        """The keys allowed where an unknown one was found, for the message."""
        if app is None and len(loc) == 1 and self.legacy:
            return ["app", *LEGACY_TOP]
        model: Any = FileModel if app is None else AppModel
        for index, part in enumerate(loc[:-1]):
            if index and loc[index - 1] == "services":
                continue  # a service's name
            field = getattr(model, "model_fields", {}).get(part)  # a list of tables has none
            if field is None:
                return []
            model = ServiceModel if part == "services" else _table(field.annotation)
        return list(getattr(model, "model_fields", {}))


def _table(annotation: Any) -> Any:
    """The table model of a key's type: `X`, or the X of `X | None`."""
    return next((arg for arg in get_args(annotation) if hasattr(arg, "model_fields")), annotation)


def _problem(error: Any, known: list[str]) -> str:
    """pydantic's error in the words of this file's documentation."""
    kind, message = error["type"], error["msg"]
    value = error.get("input")
    if kind == "extra_forbidden":
        where = "section" if len(error["loc"]) == 1 else "key"
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        meant = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {where}{meant} (known: {', '.join(known)})" if known else f"unknown {where}"
    if kind == "missing":
        return "is required"
    if kind in _TYPES:
        return f"{_TYPES[kind]}, got {value!r}"
    if kind == "literal_error":
        expected = message.split("Input should be ", 1)[-1].replace("'", "")
        return f"expected {expected}, got {value!r}"
    if kind in ("greater_than", "less_than", "greater_than_equal", "less_than_equal"):
        return f"out of range ({message.split('Input should be ', 1)[-1]}), got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"expected an absolute path, got {value!r}"
    return message.removeprefix("Value error, ")
