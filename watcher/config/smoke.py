"""`[[smoke]]`: the requests a deploy sends to the new colour through Caddy before the switch.

What the schema cannot say is checked here: header names are HTTP tokens, values hold no line
break (httpx would refuse them only at deploy time), and the preview header is watcher's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from watcher.config.schema import SmokeCheckModel
from watcher.errors import ConfigError

#: The request header that takes a request to the previewed colour (its value: the deploy's secret).
PREVIEW_HEADER = "X-Watcher-Preview"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class SmokeCheck:
    """One request and what its answer must be: this status, and this text in the body."""

    method: str
    path: str
    status: int = 200
    body_contains: str | None = None
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 10.0

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class SmokeSettings:
    """`[hooks] smoke` (an argv) and the `[[smoke]]` checks: both run while the idle colour is
    previewed; an empty hook and no checks mean no smoke phase."""

    hook: tuple[str, ...] = ()
    hook_timeout: float = 300.0
    checks: tuple[SmokeCheck, ...] = field(default_factory=tuple)

    @property
    def enabled(self) -> bool:
        return bool(self.hook or self.checks)


def smoke_settings(
    hook: list[str],
    hook_timeout: float,
    checks: list[SmokeCheckModel],
    fail: Callable[[str, str], ConfigError],
) -> SmokeSettings:
    """The settings of one app; `fail(key, problem)` makes the error that names file and app."""
    if hook and not hook[0]:
        raise fail("hooks.smoke", "the first element is the program to run; it is empty")
    built = []
    for index, check in enumerate(checks):
        for name, value in check.headers.items():
            key = f"smoke[{index}].headers"
            if not _TOKEN.fullmatch(name):
                raise fail(key, f"not an HTTP header name: {name!r}")
            if name.lower() == PREVIEW_HEADER.lower():
                raise fail(key, f"{PREVIEW_HEADER} is set by watcher (the deploy's secret); leave it out")
            if any(c in value for c in "\r\n\x00"):
                raise fail(key, f"the value of {name} holds a line break or NUL")
        if check.method == "HEAD" and check.body_contains is not None:
            raise fail(f"smoke[{index}].body_contains", "a HEAD answer has no body; use GET")
        built.append(
            SmokeCheck(
                check.method,
                check.path,
                check.status,
                check.body_contains,
                check.body,
                tuple(check.headers.items()),
                check.timeout,
            )
        )
    return SmokeSettings(tuple(hook), hook_timeout, tuple(built))
