"""Issue 21's attacks on authentication, each replayed as it was reported, through Flask's test
client against the real app factory (`create_app`), over the real Redis (db 15, a prefix per
test): the open redirect after login, a captured signed control request replayed elsewhere or
later, a token guessed at full speed, and a dashboard session nobody could end."""

from __future__ import annotations

import pytest

from tests.unit.test_dashboard import TOKEN, Dashboard, dashboard


@pytest.fixture
def board(redis_url: str, app_name: str) -> Dashboard:
    return dashboard(redis_url, app_name)


# -- 1. the open redirect after login -------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example/x",  # the report: /login?next=/%09/evil.example/x
        "/\n/evil.example/x",
        "/\r\n/evil.example",
        "\t//evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "/ /evil.example",
        "javascript:alert(1)",
    ],
)
def test_login_never_redirects_off_site(board: Dashboard, target: str) -> None:
    answer = board.client.post("/login", data={"token": TOKEN, "csrf": board.csrf(), "next": target})
    location = answer.headers["Location"]
    assert answer.status_code == 303 and location.startswith("/"), location
    assert not location.startswith(("//", "/\\")), location
    assert not any(c in location for c in "\t\r\n \\"), location


def test_the_report_replayed_through_the_query_string(board: Dashboard) -> None:
    """`/login?next=/%09/evil.example/x`, then a correct login: it answered `//evil.example/x`."""
    csrf = board.csrf()
    answer = board.client.post("/login?next=/%09/evil.example/x", data={"token": TOKEN, "csrf": csrf})
    assert answer.headers["Location"] in ("/", "/evil.example/x"), answer.headers["Location"]


def test_a_local_target_keeps_its_path_and_query(board: Dashboard) -> None:
    target = f"/apps/{board.name}/jobs/3?tab=phases&x=a%20b"
    answer = board.client.post("/login", data={"token": TOKEN, "csrf": board.csrf(), "next": target})
    assert answer.headers["Location"] == target
