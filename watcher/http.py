"""What every HTTP endpoint of `watcher serve` (triggers/, dashboard/) shares: reading a body
within the limit, the token checks (each compared in constant time), JSON answers, and the
errors, handled once.

Never a 500: anything unexpected is logged and answered 503 (nothing was enqueued).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, TooManyRequests

from watcher.config import WebhookSettings
from watcher.errors import RedisUnavailable
from watcher.memory import AuthKeys, Memory
from watcher.queue.connection import REDIS_DOWN
from watcher.signing import TOLERANCE

log = logging.getLogger("watcher.webhook")

#: Redis unreachable, however it shows: a 503 and "nothing was enqueued".
UNAVAILABLE = (*REDIS_DOWN, RedisUnavailable)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_DEPTH = 32  # JSON nesting; GitHub's package events nest 6 deep, registry envelopes 5


def clean(value: Any, limit: int) -> str:
    """A caller-supplied string (reason, by) fit to store and log: no control characters, cut."""
    return _CONTROL.sub(" ", value)[:limit].strip() if isinstance(value, str) else ""


def bearer_ok(header: str | None, *tokens: str | None) -> bool:
    """Whether `header` is `Bearer <one of tokens>`; every token is compared, in constant time."""
    scheme, _, value = (header or "").partition(" ")
    sent = value.strip().encode()
    matches = [hmac.compare_digest(sent, token.encode()) for token in tokens if token]
    return scheme.lower() == "bearer" and any(matches)


class Guard:
    """Failed authentications per client address, on every endpoint that takes a secret and,
    through the host's memory (Redis), in every process: after MAX_FAILURES within FAILURE_WINDOW
    seconds the address is answered 429 with Retry-After, whatever it sends, until the window
    ends (a guess is not even checked, so none goes faster than MAX_FAILURES a window); said in
    the log once per window. A request that sends no credential is not a guess and is not counted.
    Also the nonces of signed control requests, each accepted once."""

    MAX_FAILURES = 10
    FAILURE_WINDOW = 60

    def __init__(self, memory: Memory, prefix: str = "") -> None:
        self.memory = memory
        self.keys = AuthKeys(prefix)

    def wait(self) -> int:
        """Seconds the request's address must wait before it may try again (0: it may now)."""
        count, left = self.memory.tally(self.keys.failed + _client(), 0, self.FAILURE_WINDOW)
        return math.ceil(left) if count >= self.MAX_FAILURES else 0

    def admit(self) -> None:
        """Raise a 429 (TooManyRequests, with Retry-After) while the request's address waits."""
        wait = self.wait()
        if wait:
            raise TooManyRequests(
                f"too many failed authentications from {_client()}: try again in {wait} s", retry_after=wait
            )

    def failed(self) -> None:
        client = _client()
        count, left = self.memory.tally(self.keys.failed + client, 1, self.FAILURE_WINDOW)
        if count == self.MAX_FAILURES:
            log.warning(
                "%d failed authentications from %s within %d s: every request from it is refused "
                "(429) for %d s",
                count,
                client,
                self.FAILURE_WINDOW,
                math.ceil(left),
            )

    def bearer(self, *tokens: str | None) -> bool:
        """Whether the request's `Authorization` is a bearer of one of `tokens`; a wrong one is
        counted; 429 (raised) while the address waits."""
        self.admit()
        header = request.headers.get("Authorization")
        if bearer_ok(header, *tokens):
            return True
        if header:
            self.failed()
        return False

    def fresh(self, nonce: str) -> bool:
        """Whether a signed request's nonce is new: remembered as long as a timestamp the signature
        accepts could carry it (2 x TOLERANCE), so a second use is refused."""
        return self.memory.claim(self.keys.nonce + nonce, 2 * TOLERANCE)


def _client() -> str:
    return request.remote_addr or "?"


def loads(body: bytes) -> Any:
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


def level(code: int) -> int:
    """Refusals an operator must see (a lost delivery, a sender set up wrong, Redis down) warn."""
    return logging.WARNING if code in (401, 403, 413, 503) else logging.INFO


def size(limit: int) -> str:
    """`1 MiB (1048576 bytes)`: the limit as it was likely configured, and to the byte."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if limit % factor == 0:
            return f"{limit // factor} {unit} ({limit} bytes)"
    return f"{limit} bytes"


def reply(code: int, outcome: str, reason: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"outcome": outcome, "reason": reason, **extra}), code


def body_or_none(max_body: int) -> bytes | None:
    """The request's body, or None when it is over the limit (a 413)."""
    if request.content_length is not None and request.content_length > max_body:
        return None
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        return None


def too_large(max_body: int) -> str:
    """The 413 reason: the limit as configured (`1MiB`), and the body's size when it was sent."""
    sent = f" ({request.content_length} bytes)" if request.content_length is not None else ""
    return f"the body{sent} exceeds the {size(max_body)} limit ([webhook] max_body)"


def read_refused(settings: WebhookSettings, guard: Guard, what: str) -> tuple[Response, int] | None:
    """The refusal of a read endpoint (/status, /metrics) without the API token, unless
    `status_auth = false`: both tell what is deployed where, and when."""
    if not settings.status_auth:
        return None
    if not settings.api_token:
        return reply(
            403,
            "refused",
            f"{what} needs the API token, and none is configured "
            "(WATCHER_API_TOKEN; or [webhook] status_auth = false)",
        )
    if not guard.bearer(*settings.api_tokens):
        return reply(401, "refused", "missing or wrong bearer token")
    return None


def redis_down(exc: BaseException) -> str:
    return f"Redis is unreachable ({str(exc).splitlines()[0]}); nothing was enqueued"


def handle_errors(app: Flask) -> None:
    """JSON, and never a 500."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        response, code = reply(exc.code or 400, "refused", exc.description or exc.name)
        response.headers.extend((name, value) for name, value in exc.get_headers() if name != "Content-Type")
        return response, code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        if isinstance(exc, UNAVAILABLE):
            log.warning(
                "%s %s: Redis unreachable: %s", request.method, request.path, str(exc).splitlines()[0]
            )
            return reply(503, "unavailable", "Redis is unreachable; nothing was enqueued: retry or redeliver")
        log.exception("%s %s: unexpected error", request.method, request.path)
        return reply(
            503,
            "unavailable",
            "unexpected error: retry or redeliver (a request already queued is "
            "recognized and not queued twice)",
        )
