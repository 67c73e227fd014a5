"""Checking through Caddy *which colour* answers and *which version*: not just a 200.

A check through the public URL passes when the *old* colour answers, unless it tells the two
apart. The Caddyfile adds `X-Watcher-Color` to every response a colour's app served, so we ask
for both: the colour header (a same-tag redeploy answers the same version from both colours, and
a route file Caddy no longer reads shows up as the wrong colour) and the version (a response
header, or the body / its JSON `version` field).

Every check carries X-Watcher-Probe with this process's secret, which `check_route` writes into
the app's probe file before a deploy's first check: Caddy logs a request as watcher's own (left
out of the receipt and the bake) only when the two are equal, so nobody else can hide a request.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

import httpx

from watcher.atomic import write_atomic
from watcher.backends.access_log import PROBE_HEADER
from watcher.config import AppConfig
from watcher.engine.bake import Bake
from watcher.errors import DeployFailed, unwritable
from watcher.platforms.base import ColorStack
from watcher.platforms.color import Color
from watcher.progress import Progress

COLOR_HEADER = "X-Watcher-Color"
#: This process's value of PROBE_HEADER, sent with every check: random, never logged, and only
#: in the probe file (mode 0600) for Caddy to compare.
PROBE_SECRET = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Answer:
    """What the public URL said: the version (None unless 2xx), the colour header, the status,
    and, when nothing answered at all, why (so "Caddy is down" never reads as "no header")."""

    version: str | None
    color: str | None
    status: int | None = None
    error: str | None = None

    def __str__(self) -> str:
        if self.error:
            return f"no answer ({self.error})"
        return f"{self.version!r} from {self.color or 'no colour (no X-Watcher-Color header)'}"


def answer(url: str, header: str | None, timeout: float = 5.0) -> Answer:
    try:
        # trust_env=False: the check must reach this host's Caddy, never an HTTP_PROXY.
        response = httpx.get(
            url,
            timeout=timeout,
            headers={"Cache-Control": "no-cache", PROBE_HEADER: PROBE_SECRET},
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        return Answer(None, None, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    color = response.headers.get(COLOR_HEADER)
    if not response.is_success:
        return Answer(None, color, response.status_code)
    return Answer(_version(response, header), color, response.status_code)


def answered_version(url: str, header: str | None, timeout: float = 5.0) -> str | None:
    """The version the public URL reports now, or None when it does not answer 2xx."""
    return answer(url, header, timeout).version


def _version(response: httpx.Response, header: str | None) -> str | None:
    if header:
        return response.headers.get(header)
    body = response.text.strip()
    if body.startswith("{"):
        try:
            version = json.loads(body).get("version")
        except (ValueError, AttributeError):
            return None
        return str(version) if version is not None else None
    return body.splitlines()[0].strip() if body else None


def wait_for_version(
    url: str,
    version: str,
    header: str | None,
    *,
    timeout: float,
    progress: Progress,
    color: str | None = None,
) -> bool:
    """True once `version` answers at `url` (from `color`, when given); False after `timeout`."""
    started = time.monotonic()
    while True:
        seen = answer(url, header)
        if seen.version == version and (color is None or seen.color == color):
            return True
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            wanted = f"{version!r} from {color}" if color else repr(version)
            progress.say(f"  {url} still answers {seen}, not {wanted}, after {timeout:.0f}s")
            return False
        progress.waiting(f"{url} to answer {version} (now {seen})", elapsed, timeout, every=2.0)
        time.sleep(0.2)


def mark_probes(config: AppConfig) -> None:
    """Let Caddy tell this process's checks of the app from users' requests (caddyfile.py)."""
    try:
        write_atomic(config.probe_file, f"{PROBE_SECRET}\n", mode=0o600)
    except OSError as exc:
        raise unwritable(config.probe_file.parent, "the probe file in", exc) from exc


def check_route(config: AppConfig, live: Color) -> None:
    """Before anything changes: Caddy's answers must come from the colour the route file names,
    or Caddy does not read this route file and a switch would be silently ignored."""
    mark_probes(config)
    seen = answer(config.verify.url, config.verify.header)
    for _ in range(10):
        if seen.color is not None:
            break
        time.sleep(0.3)
        seen = answer(config.verify.url, config.verify.header)
    if seen.color == live.value:
        return
    if seen.error:
        raise DeployFailed(
            f"{config.verify.url} does not answer ({seen.error}): is Caddy running? "
            f"(`docker compose -p {config.project()} ps caddy`); nothing was changed"
        )
    if seen.color is None and seen.status is not None and seen.status >= 500:
        raise DeployFailed(
            f"{config.verify.url} answers {seen.status} with no {COLOR_HEADER} header: Caddy "
            f"cannot reach the live colour {live} (`watcher status` shows its containers); "
            "nothing was changed"
        )
    if seen.color is None:
        raise DeployFailed(
            f"{config.verify.url} answers without a {COLOR_HEADER} header, so watcher cannot "
            "tell which colour serves: each colour's reverse_proxy in the Caddyfile must set "
            f"`header_down {COLOR_HEADER} <colour>` (see the Caddyfile shipped with watcher), or "
            f"Caddy does not read {config.caddy.route_file}; nothing was changed"
        )
    raise DeployFailed(
        f"Caddy answers from {seen.color} although {config.caddy.route_file} says {live}: Caddy "
        f"does not read this route file (was {config.caddy.route_file.parent} removed or "
        f"recreated after Caddy started? restart Caddy: `docker compose -p "
        f"{config.project()} restart caddy`); nothing was changed"
    )


def verify(
    config: AppConfig, target: ColorStack, version: str, bake: Bake | None, progress: Progress
) -> None:
    """The new version must answer through Caddy, from the new colour, then stay healthy and
    answering for the window (and pass the bake, when one runs, for its duration)."""
    url, header, color = config.verify.url, config.verify.header, target.color.value
    if not wait_for_version(
        url, version, header, timeout=config.verify.timeout, progress=progress, color=color
    ):
        raise DeployFailed(
            f"{url} did not answer {version} from {target.color} within "
            f"{config.verify.timeout:g}s after the switch"
        )
    window = max(config.verify.window, bake.duration if bake else 0.0)
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        health = target.health()
        if not health.healthy:
            raise DeployFailed(f"{target.color} turned {health} during the verification window")
        seen = answer(url, header)
        if seen.error:  # Caddy itself did not answer (restarting): judge the app once it answers again
            down = time.monotonic()
            if wait_for_version(
                url, version, header, timeout=config.verify.timeout, progress=progress, color=color
            ):
                deadline += time.monotonic() - down  # the window counts answered time only
                continue
        if (seen.version, seen.color) != (version, color):
            raise DeployFailed(
                f"{url} answered {seen} instead of {version!r} from {target.color} "
                "during the verification window"
            )
        if bake and (verdict := bake.check(time.time())):
            raise DeployFailed(verdict)
        progress.waiting(
            f"the verification window ({version} healthy and answering)",
            window - (deadline - time.monotonic()),
            window,
        )
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    if bake and (verdict := bake.check(time.time(), final=True)):
        raise DeployFailed(verdict)
