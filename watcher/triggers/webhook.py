"""The webhook receiver: a Flask app (served by waitress, see server.py).

    POST /hooks/github    GitHub `package` / `registry_package` events, HMAC-SHA256 signed
    POST /hooks/registry  Docker Distribution notifications (or Harbor), bearer token
    POST /pause           pause the deploy queue (JSON {"reason", "by", "app", "until"}; all optional)
    POST /resume          lift the pause
    POST /promote         queue a promote of the deploy awaiting promotion (JSON {"app", "by"});
    POST /abort           ... or an abort: 202 + job id, 200 already queued, 409 nothing awaits
    GET  /status          `watcher status --json` (?app=NAME; several apps: an object per app;
                          API token unless status_auth = false)
    GET  /metrics         Prometheus metrics (watcher/metrics/); guarded exactly as /status, so a
                          scraper sends the API token; at `[metrics] listen` instead when set
    GET  /healthz         liveness: the process answers (200), readiness (Redis) in the body
    GET  /readyz          readiness: Redis answers (503 otherwise)

Trust: a delivery is read only after its signature or token is verified, each compared in
constant time (hmac.compare_digest); with no secret configured an endpoint refuses everything
(fail closed, 403) and start-up says so. Secrets and signatures are never logged.

Answers, the same on both hooks: 202 + job id when a deploy was queued; 200 with a reason when
nothing was (ping, unknown event, unknown image, untagged version, tag refused by the policy,
duplicate delivery, already queued or live); 401 bad or missing signature/token; 400 malformed
JSON; 413 body over `[webhook] max_body`; 422 the tag is not in the registry; 503 Redis or the
registry is unreachable (after a 422 or 503 the delivery can be redelivered: its id is released).
Never a 500: anything unexpected is logged and answered 503 (nothing was enqueued).

Every delivery is logged with the id its sender gives it: GitHub's X-GitHub-Delivery, the
`events[].id` of a registry notification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from watcher.config import WebhookSettings
from watcher.errors import RedisUnavailable, WatcherError
from watcher.freeze import moment
from watcher.metrics import activity
from watcher.queue.connection import REDIS_DOWN
from watcher.queue.suspension import parse_until
from watcher.triggers.dispatch import Outcome, Triggers
from watcher.triggers.payloads import (
    Ignored,
    Push,
    parse_github,
    parse_registry_notification,
    verify_github_signature,
)
from watcher.triggers.sink import Suspension

log = logging.getLogger("watcher.webhook")

GITHUB_EVENTS = ("package", "registry_package")
_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,80}")
_EVENT = re.compile(r"[a-z_]{1,50}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_SHOWN_IDS = 10  # event ids named in one log line; an envelope may batch many events
_MAX_DEPTH = 32  # JSON nesting; GitHub's package events nest 6 deep, registry envelopes 5


def _clean(value: Any, limit: int) -> str:
    """A caller-supplied string (reason, by) fit to store and log: no control characters, cut."""
    return _CONTROL.sub(" ", value)[:limit].strip() if isinstance(value, str) else ""


def _event_ids(items: list[Push | Ignored]) -> str:
    """The envelope's event ids for its log line (the registry's own log names the same ids)."""
    ids = list(dict.fromkeys(filter(None, (_clean(item.event_id, 100) for item in items))))
    more = f" (+{len(ids) - _SHOWN_IDS} more)" if len(ids) > _SHOWN_IDS else ""
    return ", ".join(ids[:_SHOWN_IDS]) + more


def _bearer_ok(header: str | None, token: str | None) -> bool:
    if not token or not header:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _hmac_ok(header: str | None, token: str | None, body: bytes) -> bool:
    if not token or not header:
        return False
    expected = "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode(errors="replace"))


def _loads(body: bytes) -> Any:
    """The body's JSON, refused with ValueError (a 400, as any malformed body) when it nests
    deeper than any sender's: `[[[...` a thousand deep is a RecursionError in json.loads, and a
    little less deep one in whatever recurses through it next (jsonify echoing `hook_id`)."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    level = [payload]
    for _ in range(_MAX_DEPTH):
        level = [
            child
            for value in level
            if isinstance(value, (dict, list))
            for child in (value.values() if isinstance(value, dict) else value)
        ]
    if level:
        raise ValueError("the JSON is nested too deeply")
    return payload


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


def _level(code: int) -> int:
    """Refusals an operator must see (a lost delivery, a sender set up wrong, Redis down) warn."""
    return logging.WARNING if code in (401, 403, 413, 503) else logging.INFO


def _size(size: int) -> str:
    """`1 MiB (1048576 bytes)`: the limit as it was likely configured, and to the byte."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor} {unit} ({size} bytes)"
    return f"{size} bytes"


def _reply(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"outcome": outcome, "reason": reason, **extra}), code


def _read_refused(settings: WebhookSettings, what: str) -> tuple[Response, int] | None:
    """The refusal of a read endpoint (/status, /metrics) without the API token, unless
    `status_auth = false`: both tell what is deployed where, and when."""
    if not settings.status_auth:
        return None
    if not settings.api_token:
        return _reply(
            403,
            "refused",
            f"{what} needs the API token, and none is configured "
            "(WATCHER_API_TOKEN; or [webhook] status_auth = false)",
        )
    if not _bearer_ok(request.headers.get("Authorization"), settings.api_token):
        return _reply(401, "refused", "missing or wrong bearer token")
    return None


def _add_metrics(app: Flask, settings: WebhookSettings, metrics: CollectorRegistry) -> None:
    @app.get("/metrics")
    def metrics_endpoint() -> tuple[Response, int]:
        return _read_refused(settings, "metrics") or (
            Response(generate_latest(metrics), content_type=CONTENT_TYPE_LATEST),
            200,
        )


def create_metrics_app(settings: WebhookSettings, metrics: CollectorRegistry) -> Flask:
    """/metrics alone, for `[metrics] listen`: a scrape address apart from the hooks (a private
    interface, while the receiver faces GitHub), guarded the same way."""
    app = Flask("watcher-metrics")
    _add_metrics(app, settings, metrics)
    return app


def create_app(
    triggers: Triggers,
    suspension: Suspension,
    settings: WebhookSettings,
    *,
    ready: Callable[[], None],
    status: Callable[[str], dict[str, Any]],
    metrics: CollectorRegistry,
) -> Flask:
    """`ready()` raises when Redis is unreachable; `status(app)` returns `status --json`'s data;
    `metrics` is what /metrics exposes (watcher.metrics.registry_for), here unless `[metrics]
    listen` gives it an address of its own (create_metrics_app)."""
    app = Flask("watcher")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    memory = triggers.memory

    def body_or_413() -> bytes | None:
        if request.content_length is not None and request.content_length > settings.max_body:
            return None
        try:
            return request.get_data(cache=True)
        except RequestEntityTooLarge:
            return None

    def too_large() -> str:
        """The 413 reason: the limit as configured (`1MiB`), and the body's size when it was sent."""
        sent = f" ({request.content_length} bytes)" if request.content_length is not None else ""
        return f"the body{sent} exceeds the {_size(settings.max_body)} limit ([webhook] max_body)"

    def delivery_log(
        kind: str, delivery: str | None, event: str, code: int, outcome: str, reason: str
    ) -> None:
        log.log(
            _level(code),
            "%s delivery %s%s: %d %s: %s",
            kind,
            delivery or "-",
            f" ({event})" if event else "",
            code,
            outcome,
            reason,
        )

    # -- GitHub --------------------------------------------------------------------------------

    @app.post("/hooks/github")
    def github() -> tuple[Response, int]:
        raw_delivery = request.headers.get("X-GitHub-Delivery", "")
        delivery = raw_delivery if _DELIVERY.fullmatch(raw_delivery) else None
        raw_event = request.headers.get("X-GitHub-Event", "")
        event = raw_event if _EVENT.fullmatch(raw_event) else ""

        def done(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
            delivery_log("github", delivery, event, code, outcome, reason)
            activity.delivery("github", outcome)
            return _reply(code, outcome, reason, delivery=delivery, **extra)

        body = body_or_413()
        if body is None:
            return done(413, "refused", too_large())
        if not settings.secret:
            return done(
                403,
                "refused",
                "no webhook secret is configured (WEBHOOK_SECRET or WEBHOOK_SECRET_FILE): "
                "every delivery is refused",
            )
        if not verify_github_signature(settings.secret, body, request.headers.get("X-Hub-Signature-256")):
            return done(401, "refused", "missing or wrong X-Hub-Signature-256")
        if not event:
            return done(400, "refused", "missing or malformed X-GitHub-Event header")
        try:
            payload = _loads(_github_json(body, request.mimetype))
        except ValueError:  # UnicodeDecodeError is a ValueError too
            return done(400, "refused", "the body is not valid JSON")
        if not isinstance(payload, dict):
            return done(400, "refused", "the body is not a JSON object")
        if event == "ping":
            return done(200, "pong", "ping received; this hook is set up", hook_id=payload.get("hook_id"))
        if event not in GITHUB_EVENTS:
            return done(200, "ignored", f"event {event!r} is not handled (only {', '.join(GITHUB_EVENTS)})")
        parsed = parse_github(event, payload)
        if isinstance(parsed, Ignored):
            return done(200, "ignored", parsed.reason)
        try:
            return github_push(parsed, payload, delivery, done)
        except (*REDIS_DOWN, RedisUnavailable) as exc:
            return done(
                503,
                "unavailable",
                f"Redis is unreachable ({str(exc).splitlines()[0]}); nothing was enqueued: redeliver later",
            )

    def github_push(
        parsed: Push, payload: dict[str, Any], delivery: str | None, done: Callable[..., tuple[Response, int]]
    ) -> tuple[Response, int]:
        if delivery and not memory.claim_delivery("github", delivery):
            return done(200, "duplicate", "this delivery id was already processed")
        sender = payload.get("sender")
        login = (
            sender.get("login") if isinstance(sender, dict) and isinstance(sender.get("login"), str) else None
        )
        by = f"github delivery {delivery or '-'}" + (f" ({_clean(login, 40)})" if login else "")
        named = payload.get("repository")
        repository = named.get("full_name") if isinstance(named, dict) else None
        try:
            outcomes = triggers.push(
                parsed,
                source="webhook",
                requested_by=by,
                repository=repository
                if isinstance(repository, str) and _REPOSITORY.fullmatch(repository)
                else None,
            )
        except BaseException:
            if delivery:
                memory.release_delivery("github", delivery)
            raise
        code, outcome = _http_status(outcomes)
        if code >= 400 and delivery:
            memory.release_delivery("github", delivery)  # a redelivery may succeed later
        job = next((o.job_id for o in outcomes if o.status == "enqueued"), None)
        reason = "; ".join(f"{o.app or parsed.image}: {o.reason}" for o in outcomes)
        return done(
            code, outcome, reason, job_id=job, image=parsed.image, results=[o.to_dict() for o in outcomes]
        )

    # -- registry notifications ----------------------------------------------------------------

    @app.post("/hooks/registry")
    def registry() -> tuple[Response, int]:
        items: list[Push | Ignored] = []  # the envelope's events, once it is read

        def done(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
            # A registry notifies every blob push and pull: only what concerns an app is worth a line.
            ids = _event_ids(items)
            activity.delivery("registry", outcome)
            if code == 200 and outcome == "ignored":
                log.debug("registry delivery %s: ignored: %s", ids or "-", reason)
            else:
                delivery_log("registry", ids, "", code, outcome, reason)
            return _reply(code, outcome, reason, **extra)

        body = body_or_413()
        if body is None:
            return done(413, "refused", too_large())
        if not settings.registry_token:
            return done(
                403,
                "refused",
                "no registry token is configured (WEBHOOK_REGISTRY_TOKEN or "
                "WEBHOOK_REGISTRY_TOKEN_FILE): every notification is refused",
            )
        if not _bearer_ok(request.headers.get("Authorization"), settings.registry_token):
            return done(401, "refused", "missing or wrong bearer token")
        try:
            payload = _loads(body)
        except ValueError:
            return done(400, "refused", "the body is not valid JSON")
        items.extend(parse_registry_notification(payload))
        try:
            return registry_pushes(items, done)
        except (*REDIS_DOWN, RedisUnavailable) as exc:
            return done(
                503,
                "unavailable",
                f"Redis is unreachable ({str(exc).splitlines()[0]}); nothing was "
                "enqueued: the registry retries",
            )

    def registry_pushes(
        items: list[Push | Ignored], done: Callable[..., tuple[Response, int]]
    ) -> tuple[Response, int]:
        outcomes: list[Outcome] = []
        claimed: list[str] = []
        try:
            for item in items:
                if isinstance(item, Ignored):
                    outcomes.append(Outcome(None, "ignored", item.reason))
                    continue
                outcomes.extend(_registry_push(item, claimed))
        except BaseException:
            for event_id in claimed:
                memory.release_delivery("registry", event_id)
            raise
        # The registry retries a failed notification (with backoff) until it gets a 2xx: only a
        # failure a retry can mend earns a non-2xx: Redis or the registry unreachable (503), or a
        # tag the app's registry does not show yet (422, as /hooks/github).
        code, outcome = _http_status(outcomes)
        if code >= 400:
            for event_id in claimed:
                memory.release_delivery("registry", event_id)
        job = next((o.job_id for o in outcomes if o.status == "enqueued"), None)
        reason = "; ".join(dict.fromkeys(f"{o.app + ': ' if o.app else ''}{o.reason}" for o in outcomes))
        return done(code, outcome, reason, job_id=job, results=[o.to_dict() for o in outcomes])

    def _registry_push(push: Push, claimed: list[str]) -> list[Outcome]:
        if push.event_id:
            if not memory.claim_delivery("registry", push.event_id):
                return [Outcome(None, "duplicate", f"event {push.event_id} was already processed")]
            claimed.append(push.event_id)
        return triggers.push(
            push, source="webhook", requested_by=f"registry notification {push.event_id or '-'}"
        )

    # -- control -------------------------------------------------------------------------------

    def authorized(body: bytes) -> bool:
        token = settings.api_token
        return _bearer_ok(request.headers.get("Authorization"), token) or _hmac_ok(
            request.headers.get("X-Watcher-Signature-256"), token, body
        )

    def control(action: str) -> tuple[Response, int]:
        def done(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
            log.log(_level(code), "%s from %s: %d %s: %s", action, request.remote_addr, code, outcome, reason)
            return _reply(code, outcome, reason, **extra)

        body = body_or_413()
        if body is None:
            return done(413, "refused", too_large())
        if not settings.api_token:
            return done(
                403, "refused", "no API token is configured (WATCHER_API_TOKEN or WATCHER_API_TOKEN_FILE)"
            )
        if not authorized(body):
            return done(401, "refused", "missing or wrong bearer token or X-Watcher-Signature-256")
        try:
            data = _loads(body) if body.strip() else {}
        except ValueError:
            return done(400, "refused", "the body is not valid JSON")
        if not isinstance(data, dict):
            return done(400, "refused", "the body is not a JSON object")
        reason = _clean(data.get("reason"), 500)
        by = _clean(data.get("by"), 100) or f"http {request.remote_addr}"
        names = [app.name for app in triggers.apps]
        if data.get("app") is not None:
            if data.get("app") not in names:
                return done(
                    404,
                    "refused",
                    f"no app {_clean(data.get('app'), 100)!r} (configured: {', '.join(names)})",
                )
            names = [data["app"]]
        if action in ("promote", "abort"):
            return act(action, names, by, done)
        if action == "pause":
            try:  # "until": a span ahead (2h) or an ISO date-time, as `watcher pause --until`
                until = None if data.get("until") is None else parse_until(str(data["until"]))
            except ValueError as exc:
                return done(400, "refused", f"until: {_clean(str(exc), 300)}")
            states = {name: suspension.pause(name, by=by, reason=reason, until=until) for name in names}
            ends = f" until {moment(until)}" if until is not None else ""
            return done(
                200,
                "paused",
                f"{', '.join(names)} paused{ends} by {by}" + (f": {reason}" if reason else ""),
                paused=states,
            )
        lifted = {name: suspension.resume(name, by=by) for name in names}
        return done(
            200,
            "resumed",
            f"{', '.join(names)} resumed by {by}" + (f": {reason}" if reason else ""),
            lifted=lifted,
        )

    def act(
        action: str, names: list[str], by: str, done: Callable[..., tuple[Response, int]]
    ) -> tuple[Response, int]:
        """Promote or abort: a job for the app's worker, as `watcher promote` / `watcher abort`."""
        if len(names) != 1:
            return done(
                400, "refused", f'several apps are configured: name one with "app" ({", ".join(names)})'
            )
        try:
            asked = triggers.sink.act(names[0], action, requested_by=by)
        except WatcherError as exc:
            return done(409, "refused", str(exc))
        return done(
            202 if asked.created else 200,
            "queued" if asked.created else "already-queued",
            asked.reason,
            job=asked.job_id,
        )

    @app.post("/pause")
    def pause() -> tuple[Response, int]:
        return control("pause")

    @app.post("/promote")
    def promote() -> tuple[Response, int]:
        return control("promote")

    @app.post("/abort")
    def abort() -> tuple[Response, int]:
        return control("abort")

    @app.post("/resume")
    def resume() -> tuple[Response, int]:
        return control("resume")

    @app.get("/status")
    def status_endpoint() -> tuple[Response, int]:
        refused = _read_refused(settings, "status")
        if refused:
            return refused
        names = [app.name for app in triggers.apps]
        name = request.args.get("app") or (names[0] if len(names) == 1 else None)
        if name is not None and name not in names:
            return _reply(404, "refused", f"no app {_clean(name, 100)!r} (configured: {', '.join(names)})")
        try:
            # One app: its `status --json`; several and no ?app=: an object per app, as the CLI.
            return jsonify(status(name) if name else {each: status(each) for each in names}), 200
        except WatcherError as exc:
            return _reply(503, "unavailable", f"status failed: {exc}")

    if not settings.metrics_listen:
        _add_metrics(app, settings, metrics)

    def readiness() -> tuple[bool, str]:
        try:
            ready()
        except (*REDIS_DOWN, RedisUnavailable) as exc:
            return False, f"unreachable: {str(exc).splitlines()[0]}"
        return True, "ok"

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        """Liveness (200 while the process answers), with readiness in the body."""
        is_ready, redis_state = readiness()
        return jsonify({"status": "ok", "ready": is_ready, "redis": redis_state}), 200

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness as a status code, for probes that only read the code."""
        is_ready, redis_state = readiness()
        return jsonify(
            {"status": "ready" if is_ready else "unavailable", "redis": redis_state}
        ), 200 if is_ready else 503

    # -- errors: JSON, and never a 500 ---------------------------------------------------------

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 400
        return _reply(code, "refused", exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        if isinstance(exc, (*REDIS_DOWN, RedisUnavailable)):
            log.warning(
                "%s %s: Redis unreachable: %s", request.method, request.path, str(exc).splitlines()[0]
            )
            return _reply(
                503, "unavailable", "Redis is unreachable; nothing was enqueued: retry or redeliver"
            )
        log.exception("%s %s: unexpected error", request.method, request.path)
        return _reply(
            503,
            "unavailable",
            "unexpected error: retry or redeliver (a request already queued is "
            "recognized and not queued twice)",
        )

    return app
