"""`X-Watcher-Signature-256`: a control request signed with the API token, so the token itself
need not travel. Written once, here, for whoever signs (scripts, the tests, benchmarks) and for
the receiver that checks (watcher/triggers/control.py).

The signature covers the method, the path, a timestamp and a nonce as well as the body, as
Stripe's and Slack's do: a captured request cannot be sent to another endpoint (`/resume`'s
body to `/pause`), later than TOLERANCE seconds, or twice (the receiver remembers each nonce for
as long as its timestamp is acceptable). The signed text is these five, each followed by a
newline but the body:

    POST\\n/pause\\n1765100000\\n7f3c0a9e5b1d4c2f8a6e\\n{"app":"shop"}

keyed by the API token: `X-Watcher-Signature-256: sha256=<hex of its HMAC-SHA256>`, with the
timestamp (Unix seconds) in `X-Watcher-Timestamp` and the nonce (16 to 64 of `A-Za-z0-9_-`,
random per request) in `X-Watcher-Nonce`. The path is the one the receiver serves, without the
query string (no control endpoint reads one).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping

SIGNATURE = "X-Watcher-Signature-256"
TIMESTAMP = "X-Watcher-Timestamp"
NONCE = "X-Watcher-Nonce"
TOLERANCE = 300  # seconds a timestamp may be off the receiver's clock, either way
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def signature(token: str, method: str, path: str, timestamp: int, nonce: str, body: bytes) -> str:
    """The header's value: `sha256=` and the hex HMAC-SHA256 of the signed text."""
    text = f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n".encode() + body
    return "sha256=" + hmac.new(token.encode(), text, hashlib.sha256).hexdigest()


def sign(
    token: str,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The three headers of a signed request (now, a fresh nonce, unless given)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = secrets.token_hex(16) if nonce is None else nonce
    return {
        TIMESTAMP: str(timestamp),
        NONCE: nonce,
        SIGNATURE: signature(token, method, path, timestamp, nonce, body),
    }


def refusal(
    tokens: Iterable[str], headers: Mapping[str, str], method: str, path: str, body: bytes, now: float
) -> str | None:
    """Why the signed request is refused, or None when its signature holds under one of `tokens`
    (the current API token and, while it is rotated, the previous one) and its timestamp is within
    TOLERANCE. Whether its nonce is new is the caller's to check, afterwards: only a request
    signed with the token may make the receiver remember anything."""
    sent = headers.get(SIGNATURE, "").strip().lower()
    stamp, nonce = headers.get(TIMESTAMP, "").strip(), headers.get(NONCE, "").strip()
    if not (_TIMESTAMP.fullmatch(stamp) and _NONCE.fullmatch(nonce)):
        return f"a signed request needs {TIMESTAMP} (Unix seconds) and {NONCE} (16 to 64 of A-Za-z0-9_-)"
    if abs(now - int(stamp)) > TOLERANCE:
        return f"{TIMESTAMP} is more than {TOLERANCE} s from the receiver's clock"
    matches = [
        hmac.compare_digest(signature(token, method, path, int(stamp), nonce, body).encode(), sent.encode())
        for token in tokens
    ]  # every token compared, so the time taken does not tell which one matched
    return None if any(matches) else f"wrong {SIGNATURE}"
