"""`watcher serve` (webhook receiver + poller) and the trigger half of `watcher run`.

The WSGI server is waitress, not gunicorn: waitress is a production server (Pylons project,
pure Python, no C extension to build in the image) that runs *inside* our process in a thread,
so `watcher run` can hold the receiver, the APScheduler poller and the queue worker in one
process with one SIGTERM handler, and the worker keeps the main thread the engine's interrupt
handling needs. Gunicorn is a pre-fork master that owns the process and its signals and would
fork the poller along with each worker. waitress also reads each request whole in its I/O
thread before an application thread sees it (a slow client ties up no worker thread) and caps
bodies itself (`max_request_body_size`) before buffering more than the limit: a body over it is
answered by the app all the same (`Oversize`), so every oversize body gets the one JSON 413.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import redis
import waitress
from flask import Flask
from prometheus_client import CollectorRegistry
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask, Task, WSGITask
from waitress.utilities import RequestEntityTooLarge

from watcher import dashboard
from watcher.config import HostConfig, WebhookSettings, listen_host, listen_port
from watcher.errors import ConfigError, Interrupted
from watcher.host import QUICK_REGISTRY, App, Host
from watcher.http import Guard, handle_errors
from watcher.memory import LocalMemory
from watcher.metrics import registry_for
from watcher.queue.connection import describe
from watcher.retry import reason
from watcher.triggers import control, probes, webhook
from watcher.triggers.poller import Poller
from watcher.triggers.probes import create_metrics_app

log = logging.getLogger("watcher.serve")


def announce(host: HostConfig) -> None:
    """Say at start-up what each endpoint will accept: a refused endpoint must not be a surprise."""
    webhook = host.webhook
    if webhook.secret:
        log.info("POST /hooks/github: verifying X-Hub-Signature-256 (HMAC-SHA256)")
    else:
        log.warning(
            "POST /hooks/github: REFUSING every delivery: no webhook secret is configured "
            "(set WEBHOOK_SECRET or WEBHOOK_SECRET_FILE)"
        )
    if webhook.registry_token:
        log.info("POST /hooks/registry: verifying the bearer token")
    else:
        log.warning(
            "POST /hooks/registry: REFUSING every notification: no token is configured "
            "(set WEBHOOK_REGISTRY_TOKEN or WEBHOOK_REGISTRY_TOKEN_FILE)"
        )
    if webhook.api_token:
        log.info(
            "POST /pause, POST /resume%s: bearer token or X-Watcher-Signature-256",
            ", GET /status, GET /metrics" if webhook.status_auth else "",
        )
    else:
        log.warning(
            "POST /pause, POST /resume%s: REFUSED: no API token is configured (set WATCHER_API_TOKEN "
            "or WATCHER_API_TOKEN_FILE)",
            ", GET /status, GET /metrics" if webhook.status_auth else "",
        )
    if not webhook.status_auth:
        log.info(
            "GET /status, GET /metrics: open to anyone who can reach %s ([webhook] status_auth = false)",
            webhook.listen,
        )
    log.info(
        "a client address with %d failed authentications within %d s is refused (429) until they end",
        Guard.MAX_FAILURES,
        Guard.FAILURE_WINDOW,
    )


def create_app(
    host: Host,
    settings: WebhookSettings,
    *,
    ready: Callable[[], None],
    status: Callable[[str], dict[str, Any]],
    metrics: CollectorRegistry,
    public_url: str | None = None,
) -> Flask:
    """The receiver: the hooks, the control API, the probes (and /metrics, here unless `[metrics]
    listen` gives it an address of its own) and the dashboard, each a Blueprint; errors handled
    once, as JSON (the dashboard's pages answer theirs as pages)."""
    app = Flask("watcher")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    guard = Guard(host.memory, host.prefix)
    app.register_blueprint(webhook.blueprint(host, settings, guard))
    app.register_blueprint(control.blueprint(host, settings, guard))
    app.register_blueprint(probes.blueprint(list(host.apps), settings, guard, ready=ready, status=status))
    if not settings.metrics_listen:
        app.register_blueprint(probes.metrics_blueprint(settings, guard, metrics))
    app.register_blueprint(dashboard.blueprint(host, settings, guard, status=status, public_url=public_url))
    handle_errors(app)
    return app


def endpoints() -> list[str]:
    """Every endpoint `serve` answers, read from the receiver's own routes (so `serve --help`
    cannot drift from them): one line per method and path, the dashboard's static files aside."""
    flask_app = create_app(
        SimpleNamespace(apps={}, memory=LocalMemory(), prefix=""),  # type: ignore[arg-type]  # routes only
        WebhookSettings(),
        ready=lambda: None,
        status=lambda name: {},
        metrics=CollectorRegistry(),
    )
    order = list(_OWNERS)
    rules = [rule for rule in flask_app.url_map.iter_rules() if not rule.endpoint.endswith("static")]
    lines = []
    for rule in sorted(rules, key=lambda rule: (_owner_rank(order, rule.endpoint), rule.rule)):
        methods = "/".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
        owner = rule.endpoint.partition(".")[0]
        lines.append(f"{methods:<9}{rule.rule:<40}{_OWNERS.get(owner, owner)}")
    return lines


def _owner_rank(order: list[str], endpoint: str) -> int:
    owner = endpoint.partition(".")[0]
    return order.index(owner) if owner in order else len(order)


#: Who answers each blueprint's endpoints, as `serve --help` says it.
_OWNERS = {
    "hooks": "webhook: enqueues a pushed version",
    "control": "control API (WATCHER_API_TOKEN)",
    "probes": "probe (/status: what `status --json` prints)",
    "metrics": "Prometheus metrics (on [metrics] listen instead, if set)",
    "dashboard": "dashboard",
}


@dataclass
class Service:
    """The receiver and the poller of every app, running in background threads."""

    host: Host
    poller: Poller
    server: BaseWSGIServer | MultiSocketServer
    thread: threading.Thread
    metrics_server: BaseWSGIServer | MultiSocketServer | None = None  # [metrics] listen
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def client(self) -> redis.Redis:
        return self.host.client

    @property
    def port(self) -> int:
        return int(getattr(self.server, "effective_port", self.host.config.webhook.port))

    def wait(self) -> None:
        """Block the main thread until SIGTERM/SIGINT (Interrupted) or `stop()`."""
        try:
            while not self.stopped.wait(1.0):
                pass
        except Interrupted as exc:
            log.info("stopping (%s)", exc)

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.poller.shutdown()
        for server in filter(None, (self.server, self.metrics_server)):
            server.close()
            server.task_dispatcher.shutdown()  # type: ignore[union-attr]
        self.host.close()
        log.info("webhook receiver and poller stopped")


def start(
    config: HostConfig,
    status: Callable[[App], dict[str, Any]],
    *,
    client: redis.Redis | None = None,
    poll: bool = True,
) -> Service:
    """Start the receiver (waitress, in a thread) and the poller (APScheduler, a job per app) for
    every app in `config`; `status(app)` is `status --json`'s data."""
    if client is None and not config.redis.url:
        raise ConfigError(f"{config.source}: the triggers enqueue into Redis: set [redis] url or REDIS_URL")
    host = Host(config, client=client, registry_options=QUICK_REGISTRY)
    metrics = registry_for(list(host.apps.values()))
    flask_app = create_app(
        host,
        config.webhook,
        ready=host.client.ping,
        status=lambda name: status(host.apps[name]),
        metrics=metrics,
        public_url=next(iter(config.apps.values())).dashboard_url,  # [dashboard] url: one for the host
    )
    webhook = config.webhook
    # One cap, `max_body`: waitress stops reading there (a hostile client cannot make it buffer
    # more), and the app answers what waitress refused as it answers any oversize body.
    server = waitress.create_server(
        flask_app,
        host=webhook.host,
        port=webhook.port,
        threads=webhook.threads,
        max_request_body_size=webhook.max_body + 1,  # waitress refuses a body *at* its cap
        channel_timeout=30,
        connection_limit=256,
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
        ident="watcher",
    )
    answer_oversize_in_app(server)
    stopped = threading.Event()
    thread = threading.Thread(
        target=serve_until_stopped, args=(server, stopped, "webhook receiver"), name="webhook", daemon=True
    )
    poller = Poller(host)
    metrics_alone = metrics_server(webhook, Guard(host.memory, host.prefix), metrics)
    service = Service(host, poller, server, thread, metrics_alone, stopped)
    # Say what each endpoint accepts before the first request can be answered.
    announce(config)
    log.info(
        "webhook receiver on http://%s:%d (waitress, %d threads, max body %d bytes); queue in Redis %s",
        webhook.host,
        service.port,
        webhook.threads,
        webhook.max_body,
        describe(host.client),
    )
    if poll:
        poller.start()
    thread.start()
    if service.metrics_server is not None:
        threading.Thread(
            target=serve_until_stopped,
            args=(service.metrics_server, stopped, "metrics listener"),
            name="metrics",
            daemon=True,
        ).start()
    return service


def serve_until_stopped(
    server: BaseWSGIServer | MultiSocketServer, stopped: threading.Event, what: str
) -> None:
    """`server`'s loop (its thread's target). `Service.stop` closes its sockets from the main
    thread while the loop may be between listing them and its select(): that select() then fails
    (EBADF), and the error would end the thread with a traceback. Once stopping, that is the
    expected end of the loop; before, the receiver is down: one line says so, no traceback."""
    try:
        server.run()
    except Exception as exc:
        if stopped.is_set():
            log.debug("%s: its loop ended as it was closed: %s", what, reason(exc))
            return
        log.error("%s stopped answering: %s", what, reason(exc))


class Oversize(WSGITask):
    """A body waitress stopped reading at its cap, handed to the app without it: the app sees
    a Content-Length over `max_body` and answers its JSON 413 (logged with the delivery id),
    the same answer a body just over the limit gets."""

    def __init__(self, channel: HTTPChannel, request: HTTPRequestParser) -> None:
        received = request.body_bytes_received  # chunked: no Content-Length, the bytes read
        request.headers.setdefault("CONTENT_LENGTH", str(received))
        request.body_rcv = None  # an empty body stream: the app reads nothing of it
        super().__init__(channel, request)

    def execute(self) -> None:
        self.set_close_on_finish()  # the rest of the body is still coming: never read it
        super().execute()


class OversizeChannel(HTTPChannel):
    @staticmethod
    def error_task_class(channel: HTTPChannel, request: HTTPRequestParser) -> Task:
        oversize = isinstance(request.error, RequestEntityTooLarge)
        return (Oversize if oversize else ErrorTask)(channel, request)


def answer_oversize_in_app(server: BaseWSGIServer | MultiSocketServer) -> None:
    """Every listening socket of `server` hands a body over its cap to the app (`Oversize`)."""
    listeners = server.map.values() if isinstance(server, MultiSocketServer) else [server]
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = OversizeChannel


def metrics_server(
    webhook: WebhookSettings, guard: Guard, metrics: CollectorRegistry
) -> BaseWSGIServer | MultiSocketServer | None:
    """GET /metrics alone on `[metrics] listen`, if set: two threads (a scrape is one request now
    and then), no body to read."""
    if not webhook.metrics_listen:
        return None
    server = waitress.create_server(
        create_metrics_app(webhook, guard, metrics),
        host=listen_host(webhook.metrics_listen),
        port=listen_port(webhook.metrics_listen),
        threads=2,
        max_request_body_size=0,
        channel_timeout=30,
        connection_limit=32,
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
        ident="watcher",
    )
    log.info("GET /metrics on http://%s (not on the receiver's address)", webhook.metrics_listen)
    return server
