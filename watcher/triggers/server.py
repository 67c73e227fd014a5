"""`watcher serve` (webhook receiver + poller) and the trigger half of `watcher run`.

The WSGI server is waitress, not gunicorn: waitress is a production server (Pylons project,
pure Python, no C extension to build in the image) that runs *inside* our process in a thread,
so `watcher run` can hold the receiver, the APScheduler poller and the queue worker in one
process with one SIGTERM handler, and the worker keeps the main thread the engine's interrupt
handling needs. Gunicorn is a pre-fork master that owns the process and its signals and would
fork the poller along with each worker. waitress also reads each request whole in its I/O
thread before an application thread sees it (a slow client ties up no worker thread) and caps
bodies itself (`max_request_body_size`) before buffering more than the limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import waitress
from prometheus_client import CollectorRegistry
from waitress.server import BaseWSGIServer, MultiSocketServer

from watcher import dashboard
from watcher.config import Config, HostConfig, WebhookSettings, listen_host, listen_port
from watcher.errors import Interrupted
from watcher.freeze import FreezeSchedule
from watcher.metrics import registry_for
from watcher.notify import notifier_for
from watcher.notify.suspension import NotifyingSuspension
from watcher.queue.connection import connect, describe
from watcher.queue.queue import DeployQueue
from watcher.triggers.dispatch import App, Memory, Triggers
from watcher.triggers.poller import Poller
from watcher.triggers.sink import RedisSink, live_reader
from watcher.triggers.webhook import create_app, create_metrics_app

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


@dataclass
class Service:
    """The receiver and the poller of every app, running in background threads."""

    host: HostConfig
    client: redis.Redis
    triggers: Triggers
    poller: Poller
    server: BaseWSGIServer | MultiSocketServer
    thread: threading.Thread
    metrics_server: BaseWSGIServer | MultiSocketServer | None = None  # [metrics] listen
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(getattr(self.server, "effective_port", self.host.webhook.port))

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
        for app in self.triggers.apps:
            app.registry.close()
        if self.triggers.notifier is not None:
            self.triggers.notifier.close()
        log.info("webhook receiver and poller stopped")


def start(
    host: HostConfig,
    status: Callable[[Config], dict[str, Any]],
    *,
    client: redis.Redis | None = None,
    poll: bool = True,
) -> Service:
    """Start the receiver (waitress, in a thread) and the poller (APScheduler, a job per app) for
    every app in `host`."""
    if client is None:
        if not host.redis_url:
            from watcher.errors import ConfigError

            raise ConfigError(f"{host.source}: the triggers enqueue into Redis: set [redis] url or REDIS_URL")
        client = connect(host.redis_url, host.redis_password)
    apps = list(host.apps.values())
    sink = RedisSink(client, live_reader(*apps), host.redis_prefix, host.history)
    notifier = notifier_for(apps)
    triggers = Triggers(
        [App.from_config(config) for config in apps],
        sink,
        Memory(client, host.redis_prefix),
        notifier=notifier,
    )
    suspension = NotifyingSuspension(sink, notifier) if notifier else sink  # /pause, /resume, the dashboard
    metrics = registry_for(
        client,
        list(host.apps),
        sink.live_of,
        host.redis_prefix,
        {config.app: FreezeSchedule(config.freezes) for config in apps},
    )
    flask_app = create_app(
        triggers,
        suspension,
        host.webhook,
        ready=client.ping,
        status=lambda name: status(host.apps[name]),
        metrics=metrics,
    )
    flask_app.register_blueprint(
        dashboard.blueprint(
            triggers,
            suspension,
            host.webhook,
            status=lambda name: status(host.apps[name]),
            queue=lambda name: DeployQueue(client, name, prefix=host.redis_prefix, retention=host.history),
            public_url=apps[0].dashboard_url,
        )
    )  # [dashboard] url: one for the host, kept on each app
    webhook = host.webhook
    # The body cap is enforced twice: by the app on Content-Length (a 413 that names the limit,
    # logged with the delivery id), and by waitress before buffering, at twice the limit: waitress
    # answers a body over *its* cap itself, unlogged, so the app must see the usual oversize
    # delivery, and a hostile client still cannot make waitress buffer more than 2 x max_body.
    server = waitress.create_server(
        flask_app,
        host=webhook.host,
        port=webhook.port,
        threads=webhook.threads,
        max_request_body_size=2 * webhook.max_body,
        channel_timeout=30,
        connection_limit=256,
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
        ident="watcher",
    )
    thread = threading.Thread(target=server.run, name="webhook", daemon=True)
    poller = Poller(triggers)
    service = Service(host, client, triggers, poller, server, thread, metrics_server(webhook, metrics))
    # Say what each endpoint accepts before the first request can be answered.
    announce(host)
    log.info(
        "webhook receiver on http://%s:%d (waitress, %d threads, max body %d bytes); queue in Redis %s",
        webhook.host,
        service.port,
        webhook.threads,
        webhook.max_body,
        describe(client),
    )
    if poll:
        poller.start()
    thread.start()
    if service.metrics_server is not None:
        threading.Thread(target=service.metrics_server.run, name="metrics", daemon=True).start()
    return service


def metrics_server(
    webhook: WebhookSettings, metrics: CollectorRegistry
) -> BaseWSGIServer | MultiSocketServer | None:
    """GET /metrics alone on `[metrics] listen`, if set: two threads (a scrape is one request now
    and then), no body to read."""
    if not webhook.metrics_listen:
        return None
    server = waitress.create_server(
        create_metrics_app(webhook, metrics),
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
