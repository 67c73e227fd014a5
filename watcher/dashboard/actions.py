"""The POST handlers: each calls the App (watcher/host.py) as the CLI or the HTTP API does for
the same thing, says what came of it (a flash message), and redirects (303) to the page to watch
it on.

    deploy    App.request(source="dashboard"): the policy accepts the tag, the registry has it
    rollback  a `rollback` job of the rollback target, as `watcher enqueue --rollback`
    pause     App.pause, as /pause; resume likewise
    cancel    the queue's cancel of a waiting job, as `watcher cancel`
    promote   a promote (or abort) job of the deploy awaiting promotion, as `watcher promote`

auth.py has already checked the login and the CSRF token of every POST.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, flash, redirect, request, url_for

from watcher.dashboard.face import Face
from watcher.dashboard.views import app_status
from watcher.errors import UsageError
from watcher.freeze import moment
from watcher.host import App
from watcher.http import clean
from watcher.queue.suspension import parse_until

log = logging.getLogger("watcher.dashboard")


def requester() -> str:
    """Who asked, as the job and the pause record it."""
    return f"dashboard ({request.remote_addr})"


def back(name: str) -> Response:
    return redirect(url_for("dashboard.app_page", name=name), 303)


def queued(app: App, version: str, *, source: str) -> Response:
    """Request `version` of `app` and go to its job's page (or back, saying why not)."""
    name = app.name
    try:
        done = app.request(version, source=source, by=requester())
    except UsageError as exc:
        flash(str(exc), "error")
        return back(name)
    if done.job_id is None:  # refused: the policy, the registry
        flash(done.reason, "error")
        return back(name)
    log.info("dashboard: %s %s of %s from %s: %s", source, version, name, request.remote_addr, done.reason)
    hold = app.freezes.hold() if source != "rollback" else None
    flash(
        done.reason + (f"; it waits: {name} is {hold.describe()}" if hold and done.created else ""),
        "ok" if done.created else "info",
    )
    return redirect(url_for("dashboard.job_page", name=name, job_id=int(done.job_id)), 303)


def install(bp: Blueprint, face: Face) -> None:
    _install_requests(bp, face)
    _install_controls(bp, face)


def _install_requests(bp: Blueprint, face: Face) -> None:
    """Deploy, rollback, cancel: the queue's jobs."""

    @bp.post("/apps/<name>/deploy")
    def deploy(name: str) -> Response:
        return queued(face.app(name), request.form.get("version", "").strip(), source="dashboard")

    @bp.post("/apps/<name>/rollback")
    def rollback(name: str) -> Response:
        app = face.app(name)
        target = (app_status(face, name).get("rollback") or {}).get("version")
        asked = request.form.get("version", "")
        if not target or target != asked:
            flash(
                f"The rollback target is now {target or 'none'}, not {asked or 'none'}: nothing queued; "
                "check the page and try again.",
                "error",
            )
            return back(name)
        return queued(app, target, source="rollback")

    @bp.post("/apps/<name>/jobs/<int:job_id>/cancel")
    def cancel(name: str, job_id: int) -> Response:
        try:
            job = face.app(name).queue.cancel(str(job_id), by=requester())
        except UsageError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Job {job.id} ({job.kind} {job.version}) cancelled.", "ok")
        return back(name)


def _install_controls(bp: Blueprint, face: Face) -> None:
    """Pause, resume, promote, abort."""

    @bp.post("/apps/<name>/pause")
    def pause(name: str) -> Response:
        app = face.app(name)
        reason = clean(request.form.get("reason"), 500)
        text = request.form.get("until", "").strip()
        try:
            until = parse_until(text) if text else None
        except ValueError as exc:
            flash(f"until: {exc}; not paused", "error")
            return back(name)
        app.pause(by=requester(), reason=reason, until=until)
        log.info("dashboard: %s paused from %s", name, request.remote_addr)
        ends = f"{moment(until)} or resumed" if until is not None else "resumed"
        flash(f"{name} paused: workers finish the job in flight and start no new one until {ends}.", "ok")
        return back(name)

    @bp.post("/apps/<name>/resume")
    def resume(name: str) -> Response:
        lifted = face.app(name).resume(by=requester())
        log.info("dashboard: %s resumed from %s", name, request.remote_addr)
        flash(f"{name} resumed." if lifted else f"{name} was not paused.", "ok" if lifted else "info")
        return back(name)

    def act(name: str, action: str) -> Response:
        try:
            done = face.app(name).act(action, by=requester())
        except UsageError as exc:
            flash(str(exc), "error")
            return back(name)
        log.info("dashboard: %s of %s from %s: %s", action, name, request.remote_addr, done.reason)
        flash(done.reason, "ok" if done.created else "info")
        return redirect(url_for("dashboard.job_page", name=name, job_id=int(done.job_id or 0)), 303)

    @bp.post("/apps/<name>/promote")
    def promote(name: str) -> Response:
        return act(name, "promote")

    @bp.post("/apps/<name>/abort")
    def abort(name: str) -> Response:
        return act(name, "abort")
