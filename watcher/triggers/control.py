"""The control API: a Blueprint of what an operator's script asks of the queue.

    POST /pause           pause the deploy queue (JSON {"reason", "by", "app", "until"}; all optional)
    POST /resume          lift the pause
    POST /promote         queue a promote of the deploy awaiting promotion (JSON {"app", "by"});
    POST /abort           ... or an abort: 202 + job id, 200 already queued, 409 nothing awaits

A bearer token or an X-Watcher-Signature-256 (watcher/signing.py: the method, path, a timestamp
and a one-time nonce signed with the body), with the API token or, while it is rotated, the
previous one; none configured: every request is refused (403). Failed attempts are throttled
per address (http.Guard).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, request

from watcher.config import WebhookSettings
from watcher.errors import WatcherError
from watcher.freeze import moment
from watcher.host import App, Host
from watcher.http import Guard, body_or_none, clean, level, loads, reply, too_large
from watcher.queue.suspension import parse_until
from watcher.signing import NONCE, SIGNATURE, refusal

log = logging.getLogger("watcher.webhook")

ACTIONS = ("pause", "resume", "promote", "abort")


class Refused(Exception):
    """A request answered with `code` and `reason` before anything was done."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def blueprint(host: Host, settings: WebhookSettings, guard: Guard) -> Blueprint:
    bp = Blueprint("control", __name__)

    def control(action: str) -> tuple[Response, int]:
        def done(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
            log.log(level(code), "%s from %s: %d %s: %s", action, request.remote_addr, code, outcome, reason)
            return reply(code, outcome, reason, **extra)

        try:
            data = _read(settings, guard)
            apps = _apps(host, data.get("app"))
            by = clean(data.get("by"), 100) or f"http {request.remote_addr}"
            reason = clean(data.get("reason"), 500)
            if action in ("promote", "abort"):
                code, outcome, said, extra = _act(apps, action, by)
            elif action == "pause":
                code, outcome, said, extra = _pause(apps, by, reason, data.get("until"))
            else:
                lifted = {app.name: app.resume(by=by) for app in apps}
                said = f"{', '.join(lifted)} resumed by {by}" + (f": {reason}" if reason else "")
                code, outcome, extra = 200, "resumed", {"lifted": lifted}
        except Refused as refused:
            return done(refused.code, "refused", refused.reason)
        return done(code, outcome, said, **extra)

    for action in ACTIONS:
        bp.add_url_rule(f"/{action}", action, lambda action=action: control(action), methods=["POST"])
    return bp


def _read(settings: WebhookSettings, guard: Guard) -> dict[str, Any]:
    """The authenticated body as a JSON object (an empty body is {})."""
    body = body_or_none(settings.max_body)
    if body is None:
        raise Refused(413, too_large(settings.max_body))
    if not settings.api_token:
        raise Refused(403, "no API token is configured (WATCHER_API_TOKEN or WATCHER_API_TOKEN_FILE)")
    if not guard.bearer(*settings.api_tokens):
        _check_signature(settings, guard, body)
    try:
        data = loads(body) if body.strip() else {}
    except ValueError:
        raise Refused(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body is not a JSON object")
    return data


def _check_signature(settings: WebhookSettings, guard: Guard, body: bytes) -> None:
    """Refuse (401) a request without a bearer whose signature does not hold, is stale, or
    whose nonce was used before: a replay of a captured request. Each a counted failure."""
    headers = request.headers
    if SIGNATURE not in headers:
        raise Refused(401, f"missing or wrong bearer token, and no {SIGNATURE}")
    reason = refusal(settings.api_tokens, headers, request.method, request.path, body, time.time())
    if reason is None and not guard.fresh(headers[NONCE].strip()):
        reason = f"this {NONCE} was used already: a signed request is accepted once"
    if reason is not None:
        guard.failed()
        raise Refused(401, reason)


def _apps(host: Host, name: Any) -> list[App]:
    """The app the body names, or every app."""
    if name is None:
        return list(host.apps.values())
    if not isinstance(name, str) or name not in host.apps:
        raise Refused(404, f"no app {clean(name, 100)!r} (configured: {', '.join(host.apps)})")
    return [host.apps[name]]


def _pause(apps: list[App], by: str, reason: str, until_text: Any) -> tuple[int, str, str, dict[str, Any]]:
    try:  # "until": a span ahead (2h) or an ISO date-time, as `watcher pause --until`
        until = None if until_text is None else parse_until(str(until_text))
    except ValueError as exc:
        raise Refused(400, f"until: {clean(str(exc), 300)}") from None
    states = {app.name: app.pause(by=by, reason=reason, until=until) for app in apps}
    ends = f" until {moment(until)}" if until is not None else ""
    said = f"{', '.join(states)} paused{ends} by {by}" + (f": {reason}" if reason else "")
    return 200, "paused", said, {"paused": states}


def _act(apps: list[App], action: str, by: str) -> tuple[int, str, str, dict[str, Any]]:
    """Promote or abort: a job for the app's worker, as `watcher promote` / `watcher abort`."""
    if len(apps) != 1:
        names = ", ".join(app.name for app in apps)
        raise Refused(400, f'several apps are configured: name one with "app" ({names})')
    try:
        asked = apps[0].act(action, by=by)
    except WatcherError as exc:
        raise Refused(409, str(exc)) from None
    return (
        202 if asked.created else 200,
        "queued" if asked.created else "already-queued",
        asked.reason,
        {"job": asked.job_id},
    )
