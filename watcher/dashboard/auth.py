"""Login with the API token, the sessions, CSRF, and who may see what.

The token is compared in constant time (hmac.compare_digest); a login starts a session: a random
id in a signed cookie (HttpOnly, SameSite=Strict, Secure when the request came over https) and
its record in the host's memory for SESSION_LIFETIME, in Redis when it is configured, so every
process knows it and logging out ends it at once, everywhere ("log out everywhere" ends every
session); without Redis, in this process (a restart ends them). The cookie's signing key is
derived from the token with HMAC, so changing the token ends every session too (the previous
token's key is still accepted while it is rotated). Without a token configured logins are
refused (fail closed). Failed logins count in the receiver's throttle (http.Guard), shared by
every endpoint that takes a secret.

CSRF: a random per-session token in a hidden field of every form, compared in constant time
on every POST (login included). Written here (a few lines) rather than with Flask-WTF, which is
not in the project's dependencies: the dashboard has no other use for WTForms.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSessionInterface

from watcher.config import WebhookSettings
from watcher.http import Guard

log = logging.getLogger("watcher.dashboard")

SESSION_LIFETIME = timedelta(hours=12)
OPEN_ENDPOINTS = ("dashboard.login", "dashboard.static")
_URL_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/": kept as they are


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie, with the flags decided per request: Secure over https (a plain-http
    loopback dashboard must still work), or always when the public URL is https (behind a TLS
    proxy the request itself is plain http); SameSite=Strict and HttpOnly always."""

    def __init__(self, always_secure: bool) -> None:
        self.always_secure = always_secure

    def get_cookie_secure(self, app: Flask) -> bool:
        return self.always_secure or request.is_secure

    def get_cookie_samesite(self, app: Flask) -> str:
        return "Strict"

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True


def signing_key(token: str | None) -> bytes:
    """The session key: from the token (see the module's docstring), random without one."""
    if not token:
        return secrets.token_bytes(32)
    return hmac.new(token.encode(), b"watcher dashboard session key", hashlib.sha256).digest()


def csrf_token() -> str:
    """The session's CSRF token, made on first use (the login form already carries one)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent:
        abort(400, "the form has no CSRF token: reload the page and try again")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), str(expected).encode()):
        abort(403, "the form's CSRF token is wrong or from an older session: reload the page and try again")


class SessionList:
    """The dashboard's sessions, server side: a record per session id in the host's memory,
    expiring with the session; a request is logged in only while its record exists."""

    def __init__(self, guard: Guard) -> None:
        self.memory = guard.memory
        self.start_of = guard.keys.session  # + a session id

    def start(self, client: str) -> str:
        """A new session's id (its record holds who logged in)."""
        sid = secrets.token_urlsafe(32)
        self.memory.claim(self.start_of + sid, int(SESSION_LIFETIME.total_seconds()), client)
        return sid

    def alive(self, sid: object) -> bool:
        return isinstance(sid, str) and bool(sid) and self.memory.exists(self.start_of + sid)

    def end(self, sid: object) -> None:
        if isinstance(sid, str) and sid:
            self.memory.forget(self.start_of + sid)

    def end_all(self) -> int:
        """End every session (of every process): how many there were."""
        return self.memory.forget_all(self.start_of)


def _local(target: str | None) -> str | None:
    """`next` rebuilt as a path and query on this site, or None. Parsed, not filtered: urlsplit
    drops the tabs and newlines a browser drops (so `/\t/evil` is seen as the `//evil` a browser
    would follow, and refused), and what is kept is percent-encoded, so no backslash, space or
    control character reaches the Location header for a browser to reinterpret."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    path = "/" + quote(parts.path.lstrip("/"), safe=_URL_SAFE)
    return path + ("?" + quote(parts.query, safe=_URL_SAFE + "?") if parts.query else "")


def install(bp: Blueprint, settings: WebhookSettings, guard: Guard, public_url: str | None) -> None:
    sessions = SessionList(guard)

    def logged_in() -> bool:
        return sessions.alive(session.get("sid"))

    _install_login(bp, settings, guard, sessions)

    @bp.record_once
    def configure(state: BlueprintSetupState) -> None:
        app = state.app
        app.secret_key = signing_key(settings.api_token)
        if settings.api_token_previous:  # rotating: cookies signed under the old token still read
            app.config["SECRET_KEY_FALLBACKS"] = [signing_key(settings.api_token_previous)]
        app.session_interface = _Sessions(always_secure=(public_url or "").startswith("https://"))
        app.permanent_session_lifetime = SESSION_LIFETIME  # also the signature's max age
        app.config["SESSION_COOKIE_NAME"] = "watcher_session"

    @bp.app_context_processor
    def template_globals() -> dict[str, Any]:
        return {"csrf_token": csrf_token, "logged_in": logged_in}

    @bp.before_request
    def guard_pages() -> Response | None:
        """Reads need a login unless status_auth = false; every POST needs a login and CSRF."""
        if request.endpoint in OPEN_ENDPOINTS:
            if request.method == "POST":
                check_csrf()
            return None
        if request.method == "POST":
            if not logged_in():
                abort(401, "log in first")
            check_csrf()
            return None
        if logged_in() or not settings.status_auth:
            return None
        if request.path.endswith(".json"):
            return Response('{"error": "log in first"}', status=401, mimetype="application/json")
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))


def _install_login(bp: Blueprint, settings: WebhookSettings, guard: Guard, sessions: SessionList) -> None:
    """The API token (or, while it is rotated, the previous one) for a session; failed logins
    throttled per client with every other failed authentication."""

    def page(code: int, target: str | None) -> tuple[str, int]:
        return render_template("login.html", configured=bool(settings.api_token), next=target), code

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Response | tuple[str, int]:
        target = _local(request.values.get("next"))
        if request.method == "GET":
            return page(200, target)
        if not settings.api_token:
            return page(403, target)
        client = request.remote_addr or "?"
        wait = guard.wait()
        if wait:
            flash(f"Too many failed attempts from {client}: try again in {wait} s.", "error")
            body, code = page(429, target)
            return Response(body, code, headers={"Retry-After": str(wait)})
        sent = request.form.get("token", "").strip().encode()
        if not any([hmac.compare_digest(sent, token.encode()) for token in settings.api_tokens]):
            guard.failed()
            log.warning("dashboard: failed login from %s", client)  # never what was sent
            flash("Wrong token.", "error")
            return page(401, target)
        log.info("dashboard: login from %s", client)
        session.clear()  # a new session, and a new CSRF token, at login
        session["sid"] = sessions.start(client)
        return redirect(target or url_for("dashboard.host"), 303)

    @bp.post("/logout")
    def logout() -> Response:
        sessions.end(session.get("sid"))
        session.clear()
        flash("Logged out.", "ok")
        return redirect(url_for("dashboard.login"), 303)

    @bp.post("/logout/everywhere")
    def logout_everywhere() -> Response:
        ended = sessions.end_all()
        session.clear()
        log.info("dashboard: every session ended (%d) from %s", ended, request.remote_addr or "?")
        flash(f"Logged out everywhere: {ended} session{'s' if ended != 1 else ''} ended.", "ok")
        return redirect(url_for("dashboard.login"), 303)
