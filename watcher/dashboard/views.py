"""The pages: the host (every app), one app, one job; and the small JSON the pages poll."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from watcher.backends.registry import RegistryError
from watcher.dashboard import chart
from watcher.dashboard.face import Face
from watcher.errors import RedisUnavailable, WatcherError
from watcher.freeze import moment
from watcher.host import App
from watcher.queue.connection import REDIS_DOWN
from watcher.queue.job import Job

log = logging.getLogger("watcher.dashboard")

HISTORY = 50  # finished jobs on an app's page


def deployable(app: App) -> tuple[list[str], str | None]:
    """The registry's tags the app's policy accepts, highest first (what the poller would choose
    from), or the reason they cannot be listed."""
    try:
        tags = app.registry.list_tags(app.ref, page_size=app.config.poll.page_size)
    except RegistryError as exc:
        return [], f"cannot list the tags of {app.ref}: {exc}"
    accepted = [v.tag for v in app.policy.decide(tags).verdicts if v.accepted]
    return accepted, None if accepted else f"no tag of {app.ref} qualifies under {app.policy.describe()}"


def queue_state(face: Face, name: str) -> dict[str, Any]:
    """What the live view polls: paused, frozen (the scheduled freeze in force), the running and
    waiting jobs, the last finished one."""
    app = face.app(name)
    queue = app.queue
    history = queue.history(1)
    hold = app.freezes.hold()
    return {
        "app": name,
        "paused": app.paused(),
        "frozen": hold.to_dict() if hold else None,
        "running": [job.to_dict() for job in queue.running()],
        "waiting": [job.to_dict() for job in queue.waiting()],
        "last": history[0].to_dict() if history else None,
    }


def app_status(face: Face, name: str) -> dict[str, Any]:
    """`status --json`'s data, or {"error": why} (a page still shows the queue then)."""
    try:
        return face.status(name)
    except WatcherError as exc:
        return {"app": name, "error": str(exc)}


def ago(stamp: float | str | None) -> str:
    """`3 min ago`: how long since a Unix time or an ISO time."""
    if stamp in (None, ""):
        return "-"
    try:
        seconds = time.time() - (
            float(stamp)
            if isinstance(stamp, (int, float))
            else datetime.fromisoformat(str(stamp)).timestamp()
        )
    except ValueError:
        return str(stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def when(stamp: float | str | None) -> str:
    """`2026-12-04 08:00 UTC`: a Unix time or an ISO time, as the CLI shows it."""
    if stamp in (None, ""):
        return "-"
    try:
        return moment(
            float(stamp)
            if isinstance(stamp, (int, float))
            else datetime.fromisoformat(str(stamp)).timestamp()
        )
    except ValueError:
        return str(stamp)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def shown(value: Any) -> str:
    """Any field of a job record, as text: JSON for structures, `-` for nothing."""
    if value is None or value == "":
        return "-"
    return json.dumps(value, indent=2) if isinstance(value, (dict, list)) else str(value)


def ordered_json(data: Any) -> Response:
    """JSON in the record's own order (jsonify sorts keys: the phases would lose theirs)."""
    return Response(json.dumps(data), mimetype="application/json")


def install(bp: Blueprint, face: Face) -> None:
    bp.add_app_template_filter(ago)
    bp.add_app_template_filter(when)
    bp.add_app_template_filter(seconds)
    bp.add_app_template_filter(shown)
    bp.add_app_template_global(chart.bars, "receipt_bars")
    install_errors(bp)

    @bp.get("/")
    def host() -> str:
        apps = [
            {
                "name": app.name,
                "policy": app.policy.describe(),
                "status": app_status(face, app.name),
                "queue": queue_state(face, app.name),
            }
            for app in face.host.apps.values()
        ]
        return render_template("host.html", apps=apps)

    @bp.get("/apps/<name>")
    def app_page(name: str) -> str:
        app = face.app(name)
        tags, tags_error = deployable(app)
        return render_template(
            "app.html",
            name=name,
            app=app,
            policy=app.policy.describe(),
            status=app_status(face, name),
            queue=queue_state(face, name),
            history=[job.to_dict() for job in app.queue.history(HISTORY)],
            tags=tags,
            tags_error=tags_error,
        )

    def job_or_404(name: str, job_id: int) -> Job:
        job = face.app(name).queue.get(str(job_id))
        if job is None:
            abort(404, f"{name} has no job {job_id} (finished jobs are kept up to the history limit)")
        return job

    @bp.get("/apps/<name>/jobs/<int:job_id>")
    def job_page(name: str, job_id: int) -> str:
        return render_template("job.html", name=name, job=job_or_404(name, job_id).to_dict())

    @bp.get("/apps/<name>/jobs/<int:job_id>.json")
    def job_json(name: str, job_id: int) -> Response:
        return ordered_json(job_or_404(name, job_id).to_dict())

    @bp.get("/apps/<name>/live.json")
    def live_json(name: str) -> Response:
        face.app(name)
        return ordered_json(queue_state(face, name))


def install_errors(bp: Blueprint) -> None:
    """The dashboard's errors as pages (its .json as JSON), never a 500."""

    @bp.errorhandler(HTTPException)
    def refused(exc: HTTPException) -> tuple[Response | str, int]:
        code = exc.code or 400
        if request.path.endswith(".json"):
            return jsonify({"error": exc.description or exc.name}), code
        return render_template("error.html", code=code, title=exc.name, detail=exc.description), code

    @bp.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[str, int]:
        if isinstance(exc, (*REDIS_DOWN, RedisUnavailable)):
            log.warning(
                "%s %s: Redis unreachable: %s", request.method, request.path, str(exc).splitlines()[0]
            )
            return render_template(
                "error.html",
                code=503,
                title="Redis is unreachable",
                detail="The queue cannot be read or changed now; nothing was done.",
            ), 503
        log.exception("%s %s: unexpected error", request.method, request.path)
        return render_template(
            "error.html",
            code=503,
            title="Unexpected error",
            detail="Nothing was done; the watcher's log says why.",
        ), 503
