"""The signature of control requests (watcher/signing.py; issue 21, item 2): a captured signed
request must be worth nothing anywhere but where and when it was signed. Property tests: any
change of the method, the path, the timestamp, the nonce, the body or the key is refused; and the
worked example README and docs/http-api.md show verifies, so a script written from them works."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_dashboard import TOKEN
from watcher import signing


def test_the_worked_example_of_the_readme() -> None:
    """README and docs/http-api.md show these numbers; `openssl dgst -sha256 -hmac` agrees."""
    headers = signing.sign(
        "3b0f6c1e9d2a47f58e6b1c0d9a8f7e6d5c4b3a29180706f5e4d3c2b1a0998877",
        "POST",
        "/pause",
        b'{"app":"shop"}',
        timestamp=1765100000,
        nonce="7f3c0a9e5b1d4c2f8a6e1b0d9c8f7a6e",
    )
    assert headers == {
        "X-Watcher-Timestamp": "1765100000",
        "X-Watcher-Nonce": "7f3c0a9e5b1d4c2f8a6e1b0d9c8f7a6e",
        "X-Watcher-Signature-256": "sha256=a22dd440456c2bec29a4b511850053b34f76468ae5713537ba6db29a6fc8f9af",
    }


NONCES = st.text("abcdefABCDEF0123456789_-", min_size=16, max_size=64)


@given(
    method=st.sampled_from(["POST", "GET", "PUT"]),
    path=st.sampled_from(["/pause", "/resume", "/promote", "/abort", "/pause/"]),
    body=st.binary(max_size=64),
    nonce=NONCES,
    change=st.sampled_from(["method", "path", "timestamp", "nonce", "body", "token"]),
    data=st.data(),
)
def test_any_change_of_what_was_signed_is_refused(
    method: str, path: str, body: bytes, nonce: str, change: str, data: st.DataObject
) -> None:
    now = 1765100000
    stamp = data.draw(st.integers(now - signing.TOLERANCE, now + signing.TOLERANCE))
    headers = signing.sign(TOKEN, method, path, body, timestamp=stamp, nonce=nonce)
    sent = {"method": method, "path": path, "body": body, "token": TOKEN}
    assert signing.refusal([TOKEN], headers, method, path, body, now) is None
    if change == "timestamp":
        other = data.draw(
            st.integers(now - signing.TOLERANCE, now + signing.TOLERANCE).filter(lambda t: t != stamp)
        )
        headers = {**headers, signing.TIMESTAMP: str(other)}
    elif change == "nonce":
        headers = {**headers, signing.NONCE: data.draw(NONCES.filter(lambda n: n != nonce))}
    else:
        sent[change] = data.draw(
            {
                "method": st.sampled_from(["POST", "GET", "PUT", "DELETE"]),
                "path": st.sampled_from(["/pause", "/resume", "/promote", "/abort", "/status"]),
                "body": st.binary(max_size=64),
                "token": st.text(min_size=32, max_size=40),
            }[change].filter(lambda value: value != sent[change])
        )
    assert signing.refusal([sent["token"]], headers, sent["method"], sent["path"], sent["body"], now)


def test_the_worked_example_verifies_and_is_refused_later_or_elsewhere() -> None:
    """What a receiver does with README's example: accepted at its time, refused five minutes
    and a second after, or at another endpoint."""
    key = "3b0f6c1e9d2a47f58e6b1c0d9a8f7e6d5c4b3a29180706f5e4d3c2b1a0998877"
    headers = signing.sign(
        key,
        "POST",
        "/pause",
        b'{"app":"shop"}',
        timestamp=1765100000,
        nonce="7f3c0a9e5b1d4c2f8a6e1b0d9c8f7a6e",
    )
    assert signing.refusal([key], headers, "POST", "/pause", b'{"app":"shop"}', 1765100000) is None
    assert signing.refusal([key], headers, "POST", "/pause", b'{"app":"shop"}', 1765100000 + 301)
    assert signing.refusal([key], headers, "POST", "/resume", b'{"app":"shop"}', 1765100000)


@given(
    skew=st.integers(signing.TOLERANCE + 1, 10**9) | st.integers(-(10**9), -signing.TOLERANCE - 1),
    body=st.binary(max_size=64),
    nonce=NONCES,
)
def test_any_timestamp_more_than_five_minutes_off_is_refused(skew: int, body: bytes, nonce: str) -> None:
    """A correct signature, kept and sent later (or dated ahead), is refused by its timestamp alone."""
    now = 1765100000
    headers = signing.sign(TOKEN, "POST", "/pause", body, timestamp=now + skew, nonce=nonce)
    assert "X-Watcher-Timestamp" in (signing.refusal([TOKEN], headers, "POST", "/pause", body, now) or "")


@given(
    headers=st.dictionaries(st.sampled_from([signing.SIGNATURE, signing.TIMESTAMP, signing.NONCE]), st.text())
)
def test_headers_not_made_with_the_key_are_refused(headers: dict[str, str]) -> None:
    """Whatever an attacker writes in the three headers without the key, nothing is accepted."""
    assert signing.refusal([TOKEN], headers, "POST", "/pause", b"{}", 1765100000)
