"""Checking through Caddy that the new version is what answers: the version, not just a 200.

A check through the public URL passes when the *old* colour answers, unless it compares the
version: this one does (a response header, or the body / its JSON `version` field).
"""

from __future__ import annotations

import json
import time

import httpx

from watcher.engine.progress import Progress


def answered_version(url: str, header: str | None, timeout: float = 5.0) -> str | None:
    """The version the public URL reports now, or None when it does not answer 2xx."""
    try:
        # trust_env=False: the check must reach this host's Caddy, never an HTTP_PROXY.
        response = httpx.get(url, timeout=timeout, headers={"Cache-Control": "no-cache"}, trust_env=False)
    except httpx.HTTPError:
        return None
    if not response.is_success:
        return None
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


def wait_for_version(url: str, version: str, header: str | None, *, timeout: float,
                     progress: Progress) -> bool:
    """True once `version` answers at `url`; False when `timeout` passes first."""
    started = time.monotonic()
    while True:
        seen = answered_version(url, header)
        if seen == version:
            return True
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            progress.say(f"  {url} still answers {seen!r}, not {version!r}, after {timeout:.0f}s")
            return False
        progress.waiting(f"{url} to answer {version} (now {seen!r})", elapsed, timeout, every=2.0)
        time.sleep(0.2)
