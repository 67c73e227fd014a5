"""The rest of watcher on a real 3-node swarm, as on Compose: the queue and `watcher run` (worker,
receiver, metrics, dashboard), manual promotion with its preview and smoke checks, the bake,
notifications, history, an instant rollback from the dashboard, a deploy the swarm's registry
triggers by its push notification, and the app's Swarm secrets and configs.

The app (tests/swarm/conftest.py `swarm_app`, two replicas) reads a secret and a config in its
healthcheck, so a colour whose tasks lack them never turns healthy. Redis and the notification
receiver run in node 1's network namespace, where the CLI runs (as on a manager).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import pytest

from tests.harness.stack import free_port
from tests.harness.swarm import LoadSummary, Swarm
from tests.harness.waiting import wait_until
from tests.swarm.conftest import APP, COMPOSE, REPOSITORY, SWARM_APP, SwarmApp, swarm_app, total

# Never beside the other suites (the swarm's dockerds took the CPU timing-bound tests need):
# `make test` runs tests/swarm after them, on its own.
pytestmark = pytest.mark.integration

REPLICAS = 2
TOKEN = secrets.token_hex(32)
REGISTRY_TOKEN = secrets.token_hex(32)
#: The test app reading a Swarm secret and config: its healthcheck fails without them.
WITH_SECRETS = (
    COMPOSE.replace(
        '["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]',
        '["CMD-SHELL", "test -s /run/secrets/api_key && test -s /etc/shop.ini'
        ' && wget -q -O /dev/null http://127.0.0.1:8080/healthz"]',
    )
    + """    secrets: [api_key]
    configs:
      - source: settings
        target: /etc/shop.ini
secrets:
  api_key:
    file: ./api_key.txt
configs:
  settings:
    file: ./shop.ini
"""
)


class Queued(SwarmApp):
    """The app with Redis, `watcher run` and a notification receiver in node 1's namespace."""

    events_file: Path
    serve_url: str

    def events(self) -> list[dict]:
        if not self.events_file.exists():
            return []
        return [json.loads(line)["body"] for line in self.events_file.read_text().splitlines()]

    def job(self, job_id: str) -> dict:
        shown = self.watcher("show", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def wait_job(self, job_id: str, statuses: tuple[str, ...], timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"
            time.sleep(0.5)

    def curl(self, url: str, *headers: str, options: tuple[str, ...] = ()) -> str:
        """``curl URL`` in node 1's namespace, with ``headers`` and further curl ``options``."""
        argv = ["curl", "-sS", "--max-time", "10", *options, url]
        for header in headers:
            argv += ["-H", header]
        done = self.swarm.manager.exec(argv, check=True)
        return done.stdout


class Dashboard:
    """A browser's session on the dashboard of `watcher run`, by curl in node 1's namespace:
    logged in with the API token (read from a file, never on a command line), its cookie in a jar."""

    def __init__(self, shop: Queued) -> None:
        self.shop = shop
        self.jar = shop.root / "dashboard.cookies"
        token = shop.root / "api-token"
        token.write_text(TOKEN)
        login = self.post("/login", csrf=csrf(self.get("/login")), token=f"@{token}")
        assert login.startswith("303 "), login

    def get(self, path: str) -> str:
        return self.shop.curl(f"{self.shop.serve_url}{path}", options=self.session)

    @property
    def session(self) -> tuple[str, ...]:
        return ("-b", str(self.jar), "-c", str(self.jar))

    def job_of(self, version: str) -> dict | None:
        """A job of ``version`` the app's live view (as the page polls it) shows, if any."""
        live = json.loads(self.get(f"/apps/{APP}/live.json"))
        jobs = [*live["running"], *live["waiting"], *([live["last"]] if live["last"] else [])]
        return next((job for job in jobs if job["version"] == version), None)

    def post(self, path: str, **form: str) -> str:
        """The form posted; "<status> <redirect location>". A value "@file" is read from the file."""
        fields = [
            arg
            for key, value in form.items()
            for arg in ("--data-urlencode", f"{key}{value}" if value.startswith("@") else f"{key}={value}")
        ]
        written = ("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}")
        return self.shop.curl(f"{self.shop.serve_url}{path}", options=(*self.session, *written, *fields))


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


@pytest.fixture(scope="module")
def shop(swarm3: Swarm, swarm_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Queued:
    root = tmp_path_factory.mktemp("swarm-queue")
    (root / "api_key.txt").write_text("s3cret\n")
    (root / "shop.ini").write_text("[shop]\ncurrency = EUR\n")
    redis_port, receiver_port, serve_port = free_port(), free_port(), free_port()
    config = f"""
[redis]
url = "redis://127.0.0.1:{redis_port}/0"

[webhook]
listen = "127.0.0.1:{serve_port}"

[notify]
urls = ["json://127.0.0.1:{receiver_port}/hook"]

[apps.{APP}.promote]
mode = "manual"

[apps.{APP}.bake]
duration = "4s"
min_requests = 20

[apps.{APP}.policy]
kind = "regex"
include = '^v(\\d+)$'  # a TOML literal string: no escapes

[[apps.{APP}.smoke]]
path = "/version"
"""
    app = swarm_app(swarm3, swarm_images, root, replicas=REPLICAS, compose=WITH_SECRETS, config=config)
    shop = Queued(app.swarm, app.root, {"WATCHER_API_TOKEN": TOKEN, "WEBHOOK_REGISTRY_TOKEN": REGISTRY_TOKEN})
    shop.events_file = root / "events.jsonl"
    shop.serve_url = f"http://127.0.0.1:{serve_port}"
    swarm3.start_process(
        "redis",
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    )
    swarm3.start_process(
        "receiver", ["python3", "-m", "tests.harness.receiver", str(receiver_port), str(shop.events_file)]
    )
    return shop


def loaded(app: SwarmApp, seconds: float) -> list:
    return [
        app.swarm.start_load("/cgi-bin/work", rate=60, duration=seconds, connections=8, answered=True),
        app.swarm.start_load("/cgi-bin/work?sleep=1", rate=4, duration=seconds, connections=8, answered=True),
    ]


def summed(loads: list) -> LoadSummary:
    """Stop the loads (what is in flight is answered first) and add up what they were answered."""
    for load in loads:
        load.stop()
    return total(loads)


def test_a_queued_deploy_waits_previewable_is_promoted_baked_and_rolled_back(shop: Queued) -> None:
    first = shop.watcher("deploy", "v1")
    assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
    if shop.status().get("live_version") != "v1":  # the first deploy waits for promotion too
        shop.deploy("promote")
    run = shop.spawn("run", "--no-poll")
    try:
        _the_journey(shop)
    finally:
        run.terminate()
        out, _ = run.communicate(timeout=60)
        print(f"\nwatcher run exited {run.returncode}; its last lines:\n" + "\n".join(out.splitlines()[-15:]))


def _the_journey(shop: Queued) -> None:
    status = shop.status()
    assert status["live_version"] == "v1", status
    loads = loaded(shop, 60)
    enqueued = shop.watcher("enqueue", "v2", "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = str(json.loads(enqueued.stdout)["job_id"])
    waiting = shop.wait_job(job_id, ("awaiting promotion", "failed", "succeeded"))
    assert waiting["status"] == "awaiting promotion", waiting
    status = shop.status()
    print(f"\nawaiting: {json.dumps(status.get('awaiting'))}")
    idle = "green" if status["live_color"] == "blue" else "blue"
    assert status["live_version"] == "v1", status
    preview = (shop.swarm.edge_run_dir / f"{APP}.preview").read_text().split()
    assert preview[0] == idle, preview
    assert shop.curl(f"{shop.swarm.edge_url}/version").strip() == "v1"
    assert shop.curl(f"{shop.swarm.edge_url}/version", f"X-Watcher-Preview: {preview[1]}").strip() == "v2"
    promoted = shop.watcher("promote", "--json")
    assert promoted.returncode == 0, f"{promoted.stdout}\n{promoted.stderr}"
    done = shop.wait_job(job_id, ("succeeded", "failed"))
    print(f"deploy job: {json.dumps(done)}")
    assert done["status"] == "succeeded", done
    dashboard = Dashboard(shop)
    rollback = _rollback_from_the_dashboard(shop, dashboard)
    load = summed(loads)
    print(
        f"queued deploy, promote, rollback under load: sent {load.sent} failed {load.failed}; {load.versions}"
    )
    assert rollback["status"] == "succeeded", rollback
    assert load.sent > 0 and load.failed == 0, load.errors
    assert set(load.versions) == {"v1", "v2"}, load.versions
    status = shop.status()
    assert status["live_version"] == "v1" and status["in_sync"], status
    history = json.loads(shop.watcher("history", "--json").stdout)
    print(f"history: {json.dumps(history)[:2000]}")
    jobs = {job["id"]: job for job in history["jobs"]}
    promote = jobs[str(int(job_id) + 1)]
    assert promote["kind"] == "promote" and promote["status"] == "succeeded", promote
    assert "smoke" in done["phases"] and promote["phases"]["verify"] >= 4, (done, promote)  # the bake's 4 s
    assert promote["receipt"]["requests"] > 0 and promote["receipt"]["failed"] == 0, promote["receipt"]
    metrics = shop.curl(f"{shop.serve_url}/metrics", f"Authorization: Bearer {TOKEN}")
    assert f'app="{APP}"' in metrics, metrics[:2000]
    events = shop.events()
    print(f"notifications: {[e.get('title') for e in events]}")
    titles = [e.get("title") for e in events]
    assert f"{APP}: deploying v2" in titles and f"{APP}: v2 is live" in titles, titles
    _a_push_deploys_a_changed_secret(shop, dashboard)


def _rollback_from_the_dashboard(shop: Queued, dashboard: Dashboard) -> dict:
    """The app's page shows each running task with its node; its rollback button queues a
    rollback job, which the worker runs."""
    page = dashboard.get(f"/apps/{APP}")
    nodes = {
        c["node"]
        for info in shop.status()["colors"].values()
        for c in info["containers"]
        if c["state"] == "running"
    }
    assert len(nodes) >= REPLICAS and all(f"on {node}" in page for node in nodes), (nodes, page[:3000])
    form = page[page.index(f'action="/apps/{APP}/rollback"') :]
    target = re.search(r'name="version" value="([^"]+)"', form)
    assert target and target.group(1) == "v1", form[:1000]
    queued = dashboard.post(f"/apps/{APP}/rollback", csrf=csrf(form), version="v1")
    found = re.fullmatch(rf"303 \S*/apps/{APP}/jobs/(\d+)", queued)
    assert found, queued
    return shop.wait_job(found.group(1), ("succeeded", "failed"))


def _a_push_deploys_a_changed_secret(shop: Queued, dashboard: Dashboard) -> None:
    """The swarm's registry, told to notify `watcher run`, gets v4 pushed: the notification
    queues the deploy, which waits for promotion; the dashboard's button promotes it. The
    secret's file changed before: Swarm never updates a secret in place (\"only updates to
    Labels are allowed\"), so the new content is a new secret, which the new colour gets."""
    from tests.harness import images

    (shop.root / "api_key.txt").write_text("rotated\n")
    token = shop.root / "registry-token"
    token.write_text(REGISTRY_TOKEN)
    shop.swarm.notify_from_registry(f"{shop.serve_url}/hooks/registry", token)
    with images.exclusive():
        v4 = images.build_app_image(f"{SWARM_APP}:v4", "v4")
    loads = loaded(shop, 60)
    shop.swarm.push(v4, REPOSITORY, "v4")
    job = wait_until(
        lambda: dashboard.job_of("v4"), 60, "a job of v4 from the registry's notification", poll=0.5
    )
    assert job["source"] == "webhook" and job["requested_by"].startswith("registry notification"), job
    waiting = shop.wait_job(str(job["id"]), ("awaiting promotion", "failed", "succeeded"))
    assert waiting["status"] == "awaiting promotion", waiting
    page = dashboard.get(f"/apps/{APP}")
    form = page[page.index(f'action="/apps/{APP}/promote"') :]
    promoted = dashboard.post(f"/apps/{APP}/promote", csrf=csrf(form))
    assert promoted.startswith("303 "), promoted
    deployed = shop.wait_job(str(job["id"]), ("succeeded", "failed"))
    load = summed(loads)
    print(
        f"push of v4 with a rotated secret, promoted on the dashboard: {deployed['status']}; "
        f"sent {load.sent} failed {load.failed}"
    )
    assert deployed["status"] == "succeeded", deployed
    assert load.sent > 0 and load.failed == 0, load.errors
    assert shop.status()["live_version"] == "v4"
    live = shop.status()["live_color"]
    seen = {
        node.name: node.docker("exec", container, "cat", "/run/secrets/api_key").stdout.strip()
        for node in shop.swarm.nodes
        for container in node.docker(
            "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={APP}-{live}_web"
        ).stdout.split()
    }
    assert len(seen) == REPLICAS and set(seen.values()) == {"rotated"}, seen
