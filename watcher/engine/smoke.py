"""The smoke phase: the new colour, healthy but not yet live, answers real requests through the
same Caddy before any traffic moves to it.

A `Preview` opens the idle colour to one secret: watcher writes "<colour> <secret>" into the
app's preview file, and Caddy sends a request to that colour only when its X-Watcher-Preview
header equals the secret (watcher/caddyfile.py). The secret is new per deploy, never logged nor
recorded; only the smoke hook's environment and watcher's own checks carry it. The file goes
when the phase ends, whatever the outcome, and a deploy removes one a crashed deploy left.

Then the hook (`[hooks] smoke`, an argv) runs, then the `[[smoke]]` checks; the first failure
raises DeployFailed with what was seen, and the deploy aborts with nothing switched.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import TracebackType

import httpx

from watcher.atomic import write_atomic
from watcher.config import AppConfig, SmokeCheck
from watcher.config.smoke import PREVIEW_HEADER
from watcher.engine.hooks import run_hook
from watcher.engine.verification import COLOR_HEADER
from watcher.errors import DeployFailed
from watcher.platforms.color import Color
from watcher.progress import Progress

#: How much of an unexpected answer's body a failure quotes.
QUOTED = 200


class Preview:
    """The idle colour reachable through Caddy with `header`, while the context is open."""

    def __init__(self, path: Path, color: Color) -> None:
        self.path = path
        self.color = color
        self.secret = secrets.token_urlsafe(32)

    @property
    def header(self) -> tuple[str, str]:
        return PREVIEW_HEADER, self.secret

    def redact(self, text: str) -> str:
        """`text` without the secret (a hook or an app may echo the header it was sent)."""
        return text.replace(self.secret, "<preview secret>")

    def __enter__(self) -> Preview:
        write_atomic(self.path, f"{self.color.value} {self.secret}\n", mode=0o600)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.path.unlink(missing_ok=True)


def clear_preview(path: Path) -> bool:
    """Remove the preview file a deploy that died in its smoke phase left; True if there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def run_smoke(config: AppConfig, version: str, color: Color, progress: Progress) -> None:
    """Preview `color`, run the smoke hook and checks against it; raise DeployFailed on the first failure."""
    with Preview(config.preview_file, color) as preview:
        try:
            if config.smoke.hook:
                _hook(config, version, preview)
            for check in config.smoke.checks:
                progress.say(f"  smoke check {check}")
                run_check(config.preview_url, check, preview)
        except DeployFailed as failure:
            raise DeployFailed(preview.redact(str(failure))) from None


def _hook(config: AppConfig, version: str, preview: Preview) -> None:
    name, secret = preview.header
    run_hook(
        config.smoke.hook,
        cwd=config.project_dir,
        timeout=config.smoke.hook_timeout,
        what="smoke hook",
        env={
            **config.compose_env(version),
            "WATCHER_VERSION": version,
            "WATCHER_COLOR": preview.color.value,
            "WATCHER_PREVIEW_URL": config.preview_url,
            "WATCHER_PREVIEW_HEADER": f"{name}: {secret}",
            "WATCHER_PREVIEW_SECRET": secret,
        },
    )


def run_check(base_url: str, check: SmokeCheck, preview: Preview) -> None:
    """One request through Caddy with the preview header: it must be answered by the previewed
    colour (else Caddy does not route the preview), with the status and body text wanted."""
    name, secret = preview.header
    headers = {"Cache-Control": "no-cache", **dict(check.headers), name: secret}
    try:
        # trust_env=False: the check must reach this host's Caddy, never an HTTP_PROXY.
        with httpx.Client(trust_env=False, follow_redirects=False, timeout=check.timeout) as client:
            response = client.request(
                check.method,
                base_url + check.path,
                headers=headers,
                content=check.body.encode() if check.body is not None else None,
            )
    except httpx.HTTPError as exc:
        raise DeployFailed(
            f"smoke check {check}: no answer from {base_url} ({type(exc).__name__}: {exc})"
        ) from None
    body = " ".join(response.text[:QUOTED].split())
    seen = response.headers.get(COLOR_HEADER)
    if seen != preview.color.value:
        by = (
            f"answered by {seen}"
            if seen
            else f"answered {response.status_code} with no {COLOR_HEADER} header"
        )
        raise DeployFailed(
            f"smoke check {check}: {by}, not by the previewed {preview.color}: Caddy does not route "
            f"{PREVIEW_HEADER} to the idle colour, or the colour did not answer (print the Caddyfile "
            "again with `watcher caddyfile` and reload Caddy; Caddy must be able to read "
            f"{preview.path.name} in its run directory)"
        )
    if response.status_code != check.status:
        raise DeployFailed(
            f"smoke check {check}: expected {check.status}, got {response.status_code}: {body}"
        )
    if check.body_contains is not None and check.body_contains not in response.text:
        raise DeployFailed(f"smoke check {check}: the body does not contain {check.body_contains!r}: {body}")
