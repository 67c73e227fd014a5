"""The dashboard in Debian's Chromium (Playwright, headless) over a real two-app host: log in,
see both apps, deploy from the page and watch the job's phases change in place until it
succeeded, roll back, pause and resume, cancel a waiting job; on a phone, the history table says
it scrolls and the job's raw record is folded; a page without login redirects, a login never
leaves the site, and a POST without the CSRF token is refused; Caddy stopped shows as down.
Screenshots go to tests/artifacts/ (and docs/ with WATCHER_SCREENSHOTS=docs).

The tests share one host and run in file order (see conftest.py).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.browser.conftest import API_TOKEN, Host, screenshot
from tests.harness.waiting import wait_until
from watcher.queue import Suspension

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.integration

WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def page(browser: Browser, host: Host) -> Iterator[Page]:
    """One logged-in tab for the whole module, as a user keeps one open."""
    context = browser.new_context(viewport=WIDE, base_url=host.url)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.goto("/login")
    tab.get_by_label("API token").fill(API_TOKEN)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url(f"{host.url}/")
    yield tab
    context.close()


def serves(host: Host, app: str) -> str | None:
    try:
        return httpx.get(f"{host.stack.url}{host.paths[app]}/version", timeout=5).text.strip()
    except httpx.HTTPError:
        return None


def test_a_page_without_login_redirects_to_the_login(browser: Browser, host: Host) -> None:
    context = browser.new_context(viewport=WIDE, base_url=host.url)
    tab = context.new_page()
    first = next(iter(host.apps))
    tab.goto(f"/apps/{first}")
    assert re.search(r"/login\?next=", tab.url), tab.url
    tab.get_by_label("API token").fill("wrong")
    tab.get_by_role("button", name="Log in").click()
    assert "Wrong token" in tab.content()
    context.close()


def test_login_never_sends_the_browser_off_site(browser: Browser, host: Host) -> None:
    """Issue 21's open redirect: `/login?next=/%09/evil.example/x`, then a correct login, sent
    Chromium to http://evil.example/x (it strips the tab from `/\t/evil...`, leaving `//evil...`)."""
    context = browser.new_context(viewport=WIDE, base_url=host.url)
    context.route(re.compile(r"^https?://evil\.example"), lambda route: route.abort())  # never out
    tab = context.new_page()
    tab.goto("/login?next=/%09/evil.example/x")
    tab.get_by_label("API token").fill(API_TOKEN)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_load_state()
    assert tab.url.startswith(f"{host.url}/"), tab.url
    context.close()


def test_the_host_page_shows_both_apps(page: Page, host: Host) -> None:
    page.goto("/")
    for name in host.apps:
        card = page.locator(f"[data-app-card='{name}']")
        assert "v1" in card.inner_text() and card.locator(".badge.s-healthy").count() >= 1, card.inner_text()
    screenshot(page, "host")


def test_a_deploy_started_from_the_page_shows_its_phases_live(page: Page, host: Host) -> None:
    app = next(iter(host.apps))
    page.goto(f"/apps/{app}")
    page.get_by_label("Deploy version").select_option("v2")
    page.get_by_role("button", name="Deploy").click()
    page.wait_for_url(re.compile(rf"/apps/{app}/jobs/\d+$"))
    page.evaluate("window.stillThisPage = true")  # a reload would drop it: updates are in place
    page.wait_for_function(
        "document.querySelector('.job-live [data-state]').dataset.state === 'running'", timeout=60_000
    )
    page.wait_for_function(
        "document.querySelector('[data-field=phase]').textContent === 'health'", timeout=60_000
    )
    screenshot(page, "job-running")
    page.wait_for_function(
        "document.querySelector('.job-live [data-state]').dataset.state === 'succeeded'", timeout=120_000
    )
    assert page.evaluate("window.stillThisPage") is True
    recorded = [item.rsplit(" ", 2)[0] for item in page.locator(".phases li.done").all_inner_texts()]
    assert recorded.index("pull") < recorded.index("health") < recorded.index("switch"), (
        recorded
    )  # as they ran
    assert serves(host, app) == "v2"
    screenshot(page, "job-succeeded")
    page.goto(f"/apps/{app}")
    history = page.locator("table.history tbody tr").first.inner_text()
    assert "v2" in history and "succeeded" in history and "dashboard" in history, history


def test_rollback_from_the_page(page: Page, host: Host) -> None:
    app = next(iter(host.apps))
    page.goto(f"/apps/{app}")
    assert "Roll back to v1" in page.inner_text("body")
    page.get_by_role("button", name="Roll back").click()
    page.wait_for_url(re.compile(rf"/apps/{app}/jobs/\d+$"))
    page.wait_for_function(
        "document.querySelector('.job-live [data-state]').dataset.state === 'succeeded'", timeout=120_000
    )
    assert serves(host, app) == "v1"
    assert "rollback" in page.inner_text("[data-field=kind]")


NO_SIDEWAYS = "document.documentElement.scrollWidth <= window.innerWidth"


def test_on_a_phone_the_history_shows_it_scrolls_and_every_field_is_folded(page: Page, host: Host) -> None:
    """390 x 844: the history table is wider than the screen and says so (a fade on the side with
    more, a hint under it) while the page itself never scrolls sideways; the job page's raw record
    stays folded until asked for."""
    app = next(iter(host.apps))
    page.goto(f"/apps/{app}")
    hint = page.get_by_text("Swipe the table for more columns")
    assert not hint.is_visible()  # a wide screen shows the whole table: no cue
    page.set_viewport_size(PHONE)
    try:
        page.goto(f"/apps/{app}")
        cue = page.locator("[data-scroll-cue]")
        wrap = cue.locator(".table-wrap")
        assert wrap.evaluate("w => w.scrollWidth > w.clientWidth + 50")
        assert hint.is_visible() and cue.evaluate("el => getComputedStyle(el, '::after').opacity") == "1"
        assert cue.evaluate("el => getComputedStyle(el, '::before').opacity") == "0"  # nothing to the left
        assert page.evaluate(NO_SIDEWAYS)
        screenshot(page, "app-phone")
        wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
        page.wait_for_function(
            "!document.querySelector('[data-scroll-cue]').classList.contains('more-right')"
        )
        assert not hint.is_visible() and cue.evaluate("el => getComputedStyle(el, '::before').opacity") == "1"

        page.locator("table.history tbody tr a").first.click()
        page.wait_for_url(re.compile(rf"/apps/{app}/jobs/\d+$"))
        fields = page.locator("details.every-field")
        folded = fields.bounding_box()
        assert folded and fields.evaluate("d => d.open") is False and folded["height"] < 120, folded
        assert page.evaluate(NO_SIDEWAYS)
        page.get_by_text("Every field").click()
        unfolded = fields.bounding_box()
        assert (
            fields.evaluate("d => d.open") is True and unfolded and unfolded["height"] > 3 * folded["height"]
        )
        assert page.evaluate(NO_SIDEWAYS)
        print(
            f"every field: {folded['height']:.0f} px folded, {unfolded['height']:.0f} px open at 390 px wide"
        )
    finally:
        page.set_viewport_size(WIDE)


def test_pause_with_a_reason_and_resume(page: Page, host: Host) -> None:
    app = list(host.apps)[1]
    page.goto(f"/apps/{app}")
    page.get_by_label("Pause reason").fill("release freeze")
    page.get_by_role("button", name="Pause").click()
    page.wait_for_url(f"{host.url}/apps/{app}")
    assert "release freeze" in page.inner_text("body")
    paused = Suspension(host.client, app).paused()
    assert paused and paused["reason"] == "release freeze" and paused["by"].startswith("dashboard (")
    page.goto("/")
    assert "release freeze" in page.locator(f"[data-app-card='{app}']").inner_text()
    screenshot(page, "host-paused", docs="dashboard.png")
    page.set_viewport_size(PHONE)
    screenshot(page, "host-phone", docs="dashboard-phone.png")
    page.set_viewport_size(WIDE)
    page.goto(f"/apps/{app}")
    page.get_by_role("button", name="Resume").click()
    page.wait_for_url(f"{host.url}/apps/{app}")
    assert Suspension(host.client, app).paused() is None
    assert page.get_by_role("button", name="Pause").is_visible()


def test_a_waiting_job_is_cancelled_from_the_page(page: Page, host: Host) -> None:
    app = list(host.apps)[1]
    page.goto("about:blank")  # a page left open by an earlier test would reload on the pause
    Suspension(host.client, app).pause(by="test", reason="hold the queue")  # so the job waits
    try:
        page.goto(f"/apps/{app}")
        page.get_by_label("Deploy version").select_option("v2")
        page.get_by_role("button", name="Deploy").click()
        page.wait_for_url(re.compile(rf"/apps/{app}/jobs/\d+$"))
        job_id = page.url.rsplit("/", 1)[1]
        assert page.locator(".job-live [data-state]").get_attribute("data-state") == "queued"
        page.goto(f"/apps/{app}")
        page.get_by_role("button", name=f"Cancel #{job_id}").click()
        page.wait_for_url(f"{host.url}/apps/{app}")
        assert f"Job {job_id} (deploy v2) cancelled" in page.inner_text("body")
        assert "cancelled" in page.locator("table.history tbody tr").first.inner_text()
    finally:
        Suspension(host.client, app).resume()
    assert serves(host, app) == "v1"


def test_a_post_without_the_csrf_token_is_refused(page: Page, host: Host) -> None:
    app = list(host.apps)[1]
    missing = page.request.post(f"/apps/{app}/pause", form={"reason": "forged"})
    forged = page.request.post(f"/apps/{app}/pause", form={"reason": "forged", "csrf": "not-the-token"})
    assert (missing.status, forged.status) == (400, 403)
    assert Suspension(host.client, app).paused() is None
    wait_until(lambda: serves(host, app) == "v1", 5, f"{app} still serves v1")


def test_caddy_stopped_shows_down_on_the_overview_and_the_app_page(page: Page, host: Host) -> None:
    """Caddy is the one front door: stopped, every app's card and page say nothing is served."""
    caddy = f"{next(iter(host.apps))}-caddy-1"  # the first app's project runs the one Caddy
    # The module's page was left open on an app page by an earlier test, whose queue changes
    # (a pause, a job) make live.js reload it at its next poll: a reload racing a goto aborts
    # the goto (ERR_ABORTED). A blank page runs no script.
    page.goto("about:blank")
    subprocess.run(["docker", "stop", "-t", "5", caddy], check=True, capture_output=True)
    try:
        for path in ("/", f"/apps/{next(iter(host.apps))}"):
            page.goto("about:blank")
            page.goto(path)
            down = page.locator("[data-proxy='down']")
            assert down.count() >= 1 and "nothing is served" in down.first.inner_text(), page.content()
            assert "Caddy is down" in page.content()
    finally:
        subprocess.run(["docker", "start", caddy], check=True, capture_output=True)
        wait_until(lambda: all(serves(host, app) == "v1" for app in host.apps), 30, "both apps serve again")
    page.goto("about:blank")
    page.goto("/")
    assert page.locator("[data-proxy='up']").count() == len(host.apps)
