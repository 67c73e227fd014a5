"""Login with the API token, the session cookie, CSRF, and who may see what.

The token is compared in constant time (hmac.compare_digest), then the browser holds a signed
session cookie: HttpOnly, SameSite=Strict, Secure when the request came over https, valid for
SESSION_LIFETIME. The signing key is derived from the token with HMAC, so sessions outlive a
restart and are shared by every instance with the same token, and changing the token ends
every session at once. Without a token configured logins are refused (fail closed).

CSRF: a random per-session token in a hidden field of every form, compared in constant time
on every POST (login included). Written here (a few lines) rather than with Flask-WTF, which is
not in the project's dependencies: the dashboard has no other use for WTForms.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
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

log = logging.getLogger("watcher.dashboard")

SESSION_LIFETIME = timedelta(hours=12)
MAX_FAILURES = 5  # failed logins from one address within FAILURE_WINDOW, then a wait
FAILURE_WINDOW = 60.0
MAX_CLIENTS = 1024  # addresses remembered before the stale ones are dropped
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


class Throttle:
    """Failed logins per client address: after MAX_FAILURES within FAILURE_WINDOW seconds, the
    next attempt waits until the oldest failure leaves the window. In memory, per process: it
    only slows a guessing loop down (the token itself is what keeps one out)."""

    def __init__(self) -> None:
        self.failures: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds `client` must wait before trying again (0: it may try now)."""
        with self.lock:
            recent = self.failures.get(client)
            if not recent:
                return 0.0
            while recent and recent[0] < time.monotonic() - FAILURE_WINDOW:
                recent.popleft()
            return recent[0] + FAILURE_WINDOW - time.monotonic() if len(recent) >= MAX_FAILURES else 0.0

    def fail(self, client: str) -> None:
        with self.lock:
            now = time.monotonic()
            if len(self.failures) >= MAX_CLIENTS:  # many addresses: forget those past the window
                self.failures = {c: f for c, f in self.failures.items() if f and f[-1] > now - FAILURE_WINDOW}
            self.failures.setdefault(client, deque(maxlen=MAX_FAILURES)).append(now)

    def forget(self, client: str) -> None:
        with self.lock:
            self.failures.pop(client, None)


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


def logged_in() -> bool:
    return session.get("auth") is True


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


def install(bp: Blueprint, settings: WebhookSettings, public_url: str | None) -> None:
    _install_login(bp, settings)

    @bp.record_once
    def configure(state: BlueprintSetupState) -> None:
        app = state.app
        app.secret_key = signing_key(settings.api_token)
        app.session_interface = _Sessions(always_secure=(public_url or "").startswith("https://"))
        app.permanent_session_lifetime = SESSION_LIFETIME  # also the signature's max age
        app.config["SESSION_COOKIE_NAME"] = "watcher_session"

    @bp.app_context_processor
    def template_globals() -> dict[str, Any]:
        return {"csrf_token": csrf_token, "logged_in": logged_in}

    @bp.before_request
    def guard() -> Response | None:
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


def _install_login(bp: Blueprint, settings: WebhookSettings) -> None:
    """The API token for a session; failed logins throttled per client."""
    throttle = Throttle()

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Response | tuple[str, int]:
        target = _local(request.values.get("next"))
        if request.method == "GET":
            return render_template("login.html", configured=bool(settings.api_token), next=target), 200
        if not settings.api_token:
            return render_template("login.html", configured=False, next=target), 403
        client = request.remote_addr or "?"
        wait = throttle.wait(client)
        if wait > 0:
            flash(f"Too many failed logins from {client}: try again in {wait:.0f} s.", "error")
            return render_template("login.html", configured=True, next=target), 429
        if not hmac.compare_digest(
            request.form.get("token", "").strip().encode(), settings.api_token.encode()
        ):
            throttle.fail(client)
            log.warning("dashboard: failed login from %s", client)  # never what was sent
            flash("Wrong token.", "error")
            return render_template("login.html", configured=True, next=target), 401
        throttle.forget(client)
        log.info("dashboard: login from %s", client)
        session.clear()  # a new session, and a new CSRF token, at login
        session["auth"] = True
        return redirect(target or url_for("dashboard.host"), 303)

    @bp.post("/logout")
    def logout() -> Response:
        session.clear()
        flash("Logged out.", "ok")
        return redirect(url_for("dashboard.login"), 303)
