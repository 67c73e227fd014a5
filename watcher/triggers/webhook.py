"""The hooks: a Blueprint of the two endpoints a sender pushes to (served by waitress, see server.py).

    POST /hooks/github    GitHub `package` / `registry_package` events, HMAC-SHA256 signed
    POST /hooks/registry  Docker Distribution notifications (or Harbor), bearer token

Trust: a delivery is read only after its signature or token is verified, each compared in
constant time (hmac.compare_digest); with no secret configured an endpoint refuses everything
(fail closed, 403) and start-up says so. Secrets and signatures are never logged.

Answers, the same on both hooks: 202 + job id when a deploy was queued; 200 with a reason when
nothing was (ping, unknown event, unknown image, untagged version, tag refused by the policy,
duplicate delivery, already queued or live, a stale event, what an operator rolled back from:
no retry would mend those); 401 bad or missing signature/token; 400 malformed
JSON; 413 body over `[webhook] max_body`; 422 the tag is not in the registry; 503 Redis or the
registry is unreachable (after a 422 or 503 the delivery can be redelivered: its id is released).

Every delivery is logged with the id its sender gives it: GitHub's X-GitHub-Delivery, the
`events[].id` of a registry notification.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Blueprint, Response, request

from watcher import activity
from watcher.config import WebhookSettings
from watcher.host import Host, Outcome
from watcher.http import (
    UNAVAILABLE,
    Guard,
    body_or_none,
    clean,
    level,
    loads,
    redis_down,
    reply,
    too_large,
)
from watcher.triggers import dispatch
from watcher.triggers.payloads import (
    Ignored,
    Push,
    parse_github,
    parse_registry_notification,
    verify_github_signature,
)

log = logging.getLogger("watcher.webhook")

GITHUB_EVENTS = ("package", "registry_package")
_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,80}")
_EVENT = re.compile(r"[a-z_]{1,50}")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_SHOWN_IDS = 10  # event ids named in one log line; an envelope may batch many events

Done = Callable[..., tuple[Response, int]]


def _event_ids(items: list[Push | Ignored]) -> str:
    """The envelope's event ids for its log line (the registry's own log names the same ids)."""
    ids = list(dict.fromkeys(filter(None, (clean(item.event_id, 100) for item in items))))
    more = f" (+{len(ids) - _SHOWN_IDS} more)" if len(ids) > _SHOWN_IDS else ""
    return ", ".join(ids[:_SHOWN_IDS]) + more


def _github_json(body: bytes, mimetype: str) -> bytes:
    """The JSON of a delivery: the body, or its `payload` field when the hook was set up with
    content type application/x-www-form-urlencoded (the signature covers the raw body either way)."""
    if mimetype != "application/x-www-form-urlencoded":
        return body
    fields = urllib.parse.parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=10)
    payload = fields.get("payload")
    if not payload or len(payload) != 1:
        raise ValueError("a form-encoded delivery has no single payload field")
    return payload[0].encode()


def _http_status(outcomes: list[Outcome]) -> tuple[int, str]:
    """One answer for a delivery's outcomes: the first of enqueued, unavailable, not-found."""
    statuses = [o.status for o in outcomes]
    for status, code in (("enqueued", 202), ("unavailable", 503), ("not-found", 422)):
        if status in statuses:
            return code, status
    return 200, statuses[0] if statuses else "ignored"


def delivery_log(kind: str, delivery: str | None, event: str, code: int, outcome: str, reason: str) -> None:
    log.log(
        level(code),
        "%s delivery %s%s: %d %s: %s",
        kind,
        delivery or "-",
        f" ({event})" if event else "",
        code,
        outcome,
        reason,
    )


def blueprint(host: Host, settings: WebhookSettings, guard: Guard) -> Blueprint:
    """POST /hooks/github and /hooks/registry: parse, ask the apps (dispatch.push), answer."""
    bp = Blueprint("hooks", __name__)

    bp.add_url_rule("/hooks/github", "github", partial(_github, host, settings), methods=["POST"])
    bp.add_url_rule(
        "/hooks/registry", "registry", partial(_registry, host, settings, guard), methods=["POST"]
    )
    return bp


def _github(host: Host, settings: WebhookSettings) -> tuple[Response, int]:
    """POST /hooks/github: a GitHub package event, signed."""
    raw_delivery = request.headers.get("X-GitHub-Delivery", "")
    delivery = raw_delivery if _DELIVERY.fullmatch(raw_delivery) else None
    raw_event = request.headers.get("X-GitHub-Event", "")
    event = raw_event if _EVENT.fullmatch(raw_event) else ""

    def done(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
        delivery_log("github", delivery, event, code, outcome, reason)
        activity.delivery("github", outcome)
        return reply(code, outcome, reason, delivery=delivery, **extra)

    payload = _github_payload(settings, event, done)
    if not isinstance(payload, dict):
        return payload
    if event == "ping":
        return done(200, "pong", "ping received; this hook is set up", hook_id=payload.get("hook_id"))
    if event not in GITHUB_EVENTS:
        return done(200, "ignored", f"event {event!r} is not handled (only {', '.join(GITHUB_EVENTS)})")
    parsed = parse_github(event, payload)
    if isinstance(parsed, Ignored):
        return done(200, "ignored", parsed.reason)
    try:
        return _github_push(host, parsed, payload, delivery, done)
    except UNAVAILABLE as exc:
        return done(503, "unavailable", f"{redis_down(exc)}: redeliver later")


def _registry(host: Host, settings: WebhookSettings, guard: Guard) -> tuple[Response, int]:
    """POST /hooks/registry: a Distribution (or Harbor) notification envelope."""
    items: list[Push | Ignored] = []  # the envelope's events, once it is read

    def done(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
        # A registry notifies every blob push and pull: only what concerns an app is worth a line.
        ids = _event_ids(items)
        activity.delivery("registry", outcome)
        if code == 200 and outcome == "ignored":
            log.debug("registry delivery %s: ignored: %s", ids or "-", reason)
        else:
            delivery_log("registry", ids, "", code, outcome, reason)
        return reply(code, outcome, reason, **extra)

    body = body_or_none(settings.max_body)
    if body is None:
        return done(413, "refused", too_large(settings.max_body))
    if not settings.registry_token:
        return done(
            403,
            "refused",
            "no registry token is configured (WEBHOOK_REGISTRY_TOKEN or "
            "WEBHOOK_REGISTRY_TOKEN_FILE): every notification is refused",
        )
    if not guard.bearer(settings.registry_token):  # a throttled address: 429 (raised)
        return done(401, "refused", "missing or wrong bearer token")
    try:
        payload = loads(body)
    except ValueError:
        return done(400, "refused", "the body is not valid JSON")
    items.extend(parse_registry_notification(payload))
    try:
        return _registry_pushes(host, items, done)
    except UNAVAILABLE as exc:
        return done(503, "unavailable", f"{redis_down(exc)}: the registry retries")


def _github_payload(
    settings: WebhookSettings, event: str, done: Done
) -> dict[str, Any] | tuple[Response, int]:
    """The delivery's verified JSON object, or the refusal."""
    body = body_or_none(settings.max_body)
    if body is None:
        return done(413, "refused", too_large(settings.max_body))
    if not settings.secret:
        return done(
            403,
            "refused",
            "no webhook secret is configured (WEBHOOK_SECRET or WEBHOOK_SECRET_FILE): "
            "every delivery is refused",
        )
    sent = request.headers.get("X-Hub-Signature-256")
    if not any([verify_github_signature(secret, body, sent) for secret in settings.secrets]):
        return done(401, "refused", "missing or wrong X-Hub-Signature-256")
    if not event:
        return done(400, "refused", "missing or malformed X-GitHub-Event header")
    try:
        payload = loads(_github_json(body, request.mimetype))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return done(400, "refused", "the body is not valid JSON")
    if not isinstance(payload, dict):
        return done(400, "refused", "the body is not a JSON object")
    return payload


def _github_push(
    host: Host, parsed: Push, payload: dict[str, Any], delivery: str | None, done: Done
) -> tuple[Response, int]:
    if delivery and not host.claim_delivery("github", delivery):
        return done(200, "duplicate", "this delivery id was already processed")
    sender = payload.get("sender")
    login = sender.get("login") if isinstance(sender, dict) and isinstance(sender.get("login"), str) else None
    by = f"github delivery {delivery or '-'}" + (f" ({clean(login, 40)})" if login else "")
    named = payload.get("repository")
    repository = named.get("full_name") if isinstance(named, dict) else None
    if not (isinstance(repository, str) and _REPOSITORY.fullmatch(repository)):
        repository = None
    try:
        outcomes = dispatch.push(host, parsed, by=by, repository=repository)
    except BaseException:
        if delivery:
            host.release_delivery("github", delivery)
        raise
    code, outcome = _http_status(outcomes)
    if code >= 400 and delivery:
        host.release_delivery("github", delivery)  # a redelivery may succeed later
    job = next((o.job_id for o in outcomes if o.status == "enqueued"), None)
    reason = "; ".join(f"{o.app or parsed.image}: {o.reason}" for o in outcomes)
    return done(
        code, outcome, reason, job_id=job, image=parsed.image, results=[o.to_dict() for o in outcomes]
    )


def _registry_pushes(host: Host, items: list[Push | Ignored], done: Done) -> tuple[Response, int]:
    outcomes: list[Outcome] = []
    claimed: list[str] = []
    try:
        for item in items:
            if isinstance(item, Ignored):
                outcomes.append(Outcome(None, "ignored", item.reason))
            elif item.event_id and not host.claim_delivery("registry", item.event_id):
                outcomes.append(Outcome(None, "duplicate", f"event {item.event_id} was already processed"))
            else:
                if item.event_id:
                    claimed.append(item.event_id)
                outcomes += dispatch.push(host, item, by=f"registry notification {item.event_id or '-'}")
    except BaseException:
        for event_id in claimed:
            host.release_delivery("registry", event_id)
        raise
    # The registry retries a failed notification (with backoff) until it gets a 2xx: only a
    # failure a retry can mend earns a non-2xx: Redis or the registry unreachable (503), or a
    # tag the app's registry does not show yet (422, as /hooks/github).
    code, outcome = _http_status(outcomes)
    if code >= 400:
        for event_id in claimed:
            host.release_delivery("registry", event_id)
    job = next((o.job_id for o in outcomes if o.status == "enqueued"), None)
    reason = "; ".join(dict.fromkeys(f"{o.app + ': ' if o.app else ''}{o.reason}" for o in outcomes))
    return done(code, outcome, reason, job_id=job, results=[o.to_dict() for o in outcomes])
