"""What a monitor reads: a Blueprint of the status, the metrics and the probes.

GET  /status          `watcher status --json` (?app=NAME; several apps: an object per app;
                      API token unless status_auth = false)
GET  /metrics         Prometheus metrics (watcher/metrics/); guarded exactly as /status, so a
                      scraper sends the API token; at `[metrics] listen` instead when set
GET  /healthz         liveness: the process answers (200), readiness (Redis) in the body
GET  /readyz          readiness: Redis answers (503 otherwise)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from watcher.config import WebhookSettings
from watcher.errors import WatcherError
from watcher.http import UNAVAILABLE, Guard, clean, handle_errors, read_refused, reply


def blueprint(
    names: list[str],
    settings: WebhookSettings,
    guard: Guard,
    *,
    ready: Callable[[], None],
    status: Callable[[str], dict[str, Any]],
) -> Blueprint:
    """`ready()` raises when Redis is unreachable; `status(app)` returns `status --json`'s data."""
    bp = Blueprint("probes", __name__)

    @bp.get("/status")
    def status_endpoint() -> tuple[Response, int]:
        refused = read_refused(settings, guard, "status")
        if refused:
            return refused
        name = request.args.get("app") or (names[0] if len(names) == 1 else None)
        if name is not None and name not in names:
            return reply(404, "refused", f"no app {clean(name, 100)!r} (configured: {', '.join(names)})")
        try:
            # One app: its `status --json`; several and no ?app=: an object per app, as the CLI.
            return jsonify(status(name) if name else {each: status(each) for each in names}), 200
        except WatcherError as exc:
            return reply(503, "unavailable", f"status failed: {exc}")

    def readiness() -> tuple[bool, str]:
        try:
            ready()
        except UNAVAILABLE as exc:
            return False, f"unreachable: {str(exc).splitlines()[0]}"
        return True, "ok"

    @bp.get("/healthz")
    def healthz() -> tuple[Response, int]:
        """Liveness (200 while the process answers), with readiness in the body."""
        is_ready, redis_state = readiness()
        return jsonify({"status": "ok", "ready": is_ready, "redis": redis_state}), 200

    @bp.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness as a status code, for probes that only read the code."""
        is_ready, redis_state = readiness()
        body = {"status": "ready" if is_ready else "unavailable", "redis": redis_state}
        return jsonify(body), 200 if is_ready else 503

    return bp


def metrics_blueprint(settings: WebhookSettings, guard: Guard, metrics: CollectorRegistry) -> Blueprint:
    """GET /metrics, guarded as /status."""
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    def metrics_endpoint() -> tuple[Response, int]:
        return read_refused(settings, guard, "metrics") or (
            Response(generate_latest(metrics), content_type=CONTENT_TYPE_LATEST),
            200,
        )

    return bp


def create_metrics_app(settings: WebhookSettings, guard: Guard, metrics: CollectorRegistry) -> Flask:
    """/metrics alone, for `[metrics] listen`: a scrape address apart from the hooks (a private
    interface, while the receiver faces GitHub), guarded the same way."""
    app = Flask("watcher-metrics")
    app.register_blueprint(metrics_blueprint(settings, guard, metrics))
    handle_errors(app)  # a 429 as JSON, with its Retry-After
    return app
