"""Issue 21's attack on the real Caddy (its binary, with the generated Caddyfile; no Docker): a
request sent with `X-Watcher-Probe: 1`, or any value but the probe file's secret, is logged as a
user's request, and neither the probe nor the preview secret reaches Caddy's access log or its
own log (where an error writes a failed request's headers)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.harness.images import caddy_binary
from tests.harness.stack import free_port
from tests.unit.test_config import make_project
from watcher.backends.access_log import AccessLog
from watcher.caddyfile import render
from watcher.config import load_host
from watcher.engine.verification import PROBE_SECRET, mark_probes

pytestmark = pytest.mark.integration

PREVIEW = "p" * 43  # a preview-like token: no preview is open


def test_only_the_probe_secret_marks_a_request_and_no_secret_is_logged(tmp_path: Path) -> None:
    port, run = free_port(), tmp_path / "run"
    path = make_project(
        tmp_path,
        f"""[apps.shop]
image = "ghcr.io/acme/shop"
[apps.shop.services.web]
port = 8080
[apps.shop.verify]
url = "http://127.0.0.1:{port}/version"
[caddy]
run_dir = "{run}"
mount = "{run}"
site = ":{port}"
admin = "unix://{run}/caddy-admin.sock"
""",
    )
    host = load_host(path, {})
    config = host.apps["shop"]
    run.mkdir()
    (tmp_path / "Caddyfile").write_text(render(host, [config]))
    config.caddy.route_file.write_text("none\n")  # Caddy answers 503 itself: no upstream needed
    mark_probes(config)
    own_log = tmp_path / "caddy.log"
    with own_log.open("w") as out:
        caddy = subprocess.Popen(
            [caddy_binary(), "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/version"
        with httpx.Client(trust_env=False, timeout=10) as client:
            for _ in range(100):
                try:
                    client.get(url)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            started = time.time()
            for value in (PROBE_SECRET, "1", PROBE_SECRET[:-1] + "x", "x" * 43):
                assert client.get(url, headers={"X-Watcher-Probe": value}).status_code == 503
            # No route file: the fallback dials the colours, which do not exist: a 502 Caddy logs
            # as an error, with the request's headers.
            config.caddy.route_file.unlink()
            failed = client.get(url, headers={"X-Watcher-Probe": PROBE_SECRET, "X-Watcher-Preview": PREVIEW})
            assert failed.status_code == 502
        time.sleep(0.5)
    finally:
        caddy.terminate()
        caddy.wait(timeout=10)
    served = AccessLog(run / "access.log").served("shop", started, time.time())
    assert [s.probe for s in served] == [True, False, False, False, True]
    for log in (run / "access.log", own_log):
        text = log.read_text()
        assert PROBE_SECRET not in text and PREVIEW not in text
    assert '"X-Watcher-Probe"' not in own_log.read_text() and "http.log.error" in own_log.read_text()
