"""The web dashboard: server-rendered pages over the same functions the CLI and the HTTP API
call (each app's owner, watcher/host.py, and `status --json`'s data), served by the webhook
receiver's Flask app. It adds no deploy logic of its own: a button enqueues a job as
`watcher enqueue` would, and a worker runs it.

Routes (auth.py, views.py, actions.py):

    GET  /login, POST /login, POST /logout    the API token (WATCHER_API_TOKEN) -> a session
    POST /logout/everywhere                   ends every session, of every process
    GET  /                                    every app: live colour, health, rollback, queue
    GET  /apps/<app>                          one app: actions, running job live, history
    GET  /apps/<app>/jobs/<id>                one job: every field, its phases with durations
    GET  /apps/<app>/live.json                the queue, polled by static/live.js
    GET  /apps/<app>/jobs/<id>.json           one job (Job.to_dict()), polled while it runs
    POST /apps/<app>/deploy|rollback|pause|resume, /apps/<app>/jobs/<id>/cancel

Everything needs a login unless `[webhook] status_auth = false`, which opens the read pages
(as it opens GET /status); actions always need a login and the form's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint

from watcher.config import WebhookSettings
from watcher.dashboard import actions, auth, views
from watcher.dashboard.face import Face
from watcher.host import Host
from watcher.http import Guard

__all__ = ["blueprint"]


def blueprint(
    host: Host,
    settings: WebhookSettings,
    guard: Guard,
    *,
    status: Callable[[str], dict[str, Any]],
    public_url: str | None = None,
) -> Blueprint:
    """The dashboard for the host's apps; `status(app)` is `status --json`'s data; `public_url` is
    `[dashboard] url` (an https one makes the session cookie Secure on every answer)."""
    face = Face(host, status)
    bp = Blueprint(
        "dashboard",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/dashboard/static",
    )
    auth.install(bp, settings, guard, public_url)
    views.install(bp, face)
    actions.install(bp, face)
    return bp
