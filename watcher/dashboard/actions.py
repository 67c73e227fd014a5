"""The POST handlers: each calls the function the CLI or the HTTP API calls for the same thing,
says what came of it (a flash message), and redirects (303) to the page to watch it on.

    deploy    the sink's enqueue (RedisSink -> DeployQueue.enqueue), after the checks
              `watcher enqueue` makes: the policy accepts the tag, the registry has it
    rollback  a `rollback` job of the rollback target, as `watcher enqueue --rollback`
    pause     the suspension /pause uses; resume likewise
    cancel    DeployQueue.cancel of a waiting job, as `watcher cancel`
    promote   a promote (or abort) job of the deploy awaiting promotion, as `watcher promote`

auth.py has already checked the login and the CSRF token of every POST.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, flash, redirect, request, url_for

from watcher.backends.registry import NotFound, RegistryError
from watcher.dashboard.face import Face
from watcher.dashboard.views import app_status
from watcher.errors import UsageError
from watcher.freeze import FreezeSchedule, moment
from watcher.queue.suspension import parse_until
from watcher.triggers.webhook import _clean

log = logging.getLogger("watcher.dashboard")


def requester() -> str:
    """Who asked, as the job and the pause record it."""
    return f"dashboard ({request.remote_addr})"


def install(bp: Blueprint, face: Face) -> None:
    def back(name: str) -> Response:
        return redirect(url_for("dashboard.app_page", name=name), 303)

    def queued(name: str, version: str, *, source: str, digest: str | None) -> Response:
        try:
            done = face.triggers.sink.enqueue(
                name, version, source=source, requested_by=requester(), digest=digest
            )
        except UsageError as exc:
            flash(str(exc), "error")
            return back(name)
        log.info(
            "dashboard: %s %s of %s from %s: %s", source, version, name, request.remote_addr, done.reason
        )
        hold = FreezeSchedule(face.app(name).config.freezes).hold() if source != "rollback" else None
        flash(
            done.reason + (f"; it waits: {name} is {hold.describe()}" if hold and done.created else ""),
            "ok" if done.created else "info",
        )
        return redirect(url_for("dashboard.job_page", name=name, job_id=int(done.job_id)), 303)

    @bp.post("/apps/<name>/deploy")
    def deploy(name: str) -> Response:
        app = face.app(name)
        version = request.form.get("version", "").strip()
        refusal = app.policy.refusal(version)
        if refusal:
            flash(f"{version or 'no version'}: {refusal} ({app.policy.describe()}); nothing queued", "error")
            return back(name)
        try:
            digest = app.registry.manifest_digest(app.ref, version)
        except NotFound:
            flash(f"{app.ref}:{version} does not exist in the registry: nothing queued", "error")
            return back(name)
        except RegistryError as exc:
            flash(f"cannot check {app.ref}:{version} in the registry ({exc}): nothing queued", "error")
            return back(name)
        return queued(name, version, source="dashboard", digest=digest)

    @bp.post("/apps/<name>/rollback")
    def rollback(name: str) -> Response:
        face.app(name)
        target = (app_status(face, name).get("rollback") or {}).get("version")
        asked = request.form.get("version", "")
        if not target or target != asked:
            flash(
                f"The rollback target is now {target or 'none'}, not {asked or 'none'}: nothing queued; "
                "check the page and try again.",
                "error",
            )
            return back(name)
        return queued(name, target, source="rollback", digest=None)

    @bp.post("/apps/<name>/pause")
    def pause(name: str) -> Response:
        face.app(name)
        reason = _clean(request.form.get("reason"), 500)
        text = request.form.get("until", "").strip()
        try:
            until = parse_until(text) if text else None
        except ValueError as exc:
            flash(f"until: {exc}; not paused", "error")
            return back(name)
        face.suspension.pause(name, by=requester(), reason=reason, until=until)
        log.info("dashboard: %s paused from %s", name, request.remote_addr)
        ends = f"{moment(until)} or resumed" if until is not None else "resumed"
        flash(f"{name} paused: workers finish the job in flight and start no new one until {ends}.", "ok")
        return back(name)

    @bp.post("/apps/<name>/resume")
    def resume(name: str) -> Response:
        face.app(name)
        lifted = face.suspension.resume(name, by=requester())
        log.info("dashboard: %s resumed from %s", name, request.remote_addr)
        flash(f"{name} resumed." if lifted else f"{name} was not paused.", "ok" if lifted else "info")
        return back(name)

    def act(name: str, action: str) -> Response:
        face.app(name)
        try:
            done = face.triggers.sink.act(name, action, requested_by=requester())
        except UsageError as exc:
            flash(str(exc), "error")
            return back(name)
        log.info("dashboard: %s of %s from %s: %s", action, name, request.remote_addr, done.reason)
        flash(done.reason, "ok" if done.created else "info")
        return redirect(url_for("dashboard.job_page", name=name, job_id=int(done.job_id)), 303)

    @bp.post("/apps/<name>/promote")
    def promote(name: str) -> Response:
        return act(name, "promote")

    @bp.post("/apps/<name>/abort")
    def abort(name: str) -> Response:
        return act(name, "abort")

    @bp.post("/apps/<name>/jobs/<int:job_id>/cancel")
    def cancel(name: str, job_id: int) -> Response:
        face.app(name)
        try:
            job = face.queue(name).cancel(str(job_id), by=requester())
        except UsageError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Job {job.id} ({job.kind} {job.version}) cancelled.", "ok")
        return back(name)
