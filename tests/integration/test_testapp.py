"""The offline test images (tests/harness/images.py) against a real Docker daemon.

Skipped when Docker is unreachable, except under CI=true where that fails.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from tests.harness import images

pytestmark = pytest.mark.integration

APP = "watcher-test/testapp"


def _unavailable(what: str, err: Exception) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true: {err}")
    pytest.skip(f"{what} unavailable: {err}")


@pytest.fixture(scope="module")
def dclient() -> docker.DockerClient:
    try:
        c = images.client()
        c.ping()
    except Exception as err:  # noqa: BLE001 - any failure means "no Docker"
        images.client.cache_clear()
        _unavailable("Docker", err)
    return c


@pytest.fixture
def run(dclient: docker.DockerClient) -> Iterator[Callable[..., Any]]:
    """Start containers with unique names; all are removed at teardown."""
    started: list[Any] = []

    def _run(image: str, port: int = 8080, **kwargs: Any) -> tuple[Any, str]:
        name = f"wt-testapp-{uuid.uuid4().hex[:10]}"
        ct = dclient.containers.run(
            image, name=name, detach=True, ports={f"{port}/tcp": ("127.0.0.1", None)}, **kwargs
        )
        started.append(ct)
        ct.reload()
        host_port = ct.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
        return ct, f"127.0.0.1:{host_port}"

    yield _run
    for ct in started:
        try:
            ct.remove(force=True)
        except docker.errors.NotFound:
            pass


def wait_up(url: str, timeout: float = 15) -> float:
    """Poll ``url`` until anything answers over HTTP; return the seconds it took."""
    t0 = time.monotonic()
    while True:
        try:
            httpx.get(url, timeout=2)
            return time.monotonic() - t0
        except httpx.TransportError:
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.1)


def in_background(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``fn`` in a thread; the returned callable joins it and returns its result or exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except Exception as err:  # noqa: BLE001 - handed to the caller
            box["value"] = err

    th = threading.Thread(target=target, daemon=True)
    th.start()

    def join() -> Any:
        th.join(30)
        return box.get("value")

    return join


def test_endpoints(run: Callable[..., Any], dclient: docker.DockerClient) -> None:
    ref = images.build_app_image(f"{APP}:it-ok", "it-ok")
    cfg = dclient.images.get(ref).attrs["Config"]
    assert cfg["Entrypoint"] == ["/bin/app"]
    assert "8080/tcp" in cfg["ExposedPorts"]
    assert cfg["Labels"]["org.opencontainers.image.version"] == "it-ok"
    _, addr = run(ref, init=True)
    wait_up(f"http://{addr}/version")

    r = httpx.get(f"http://{addr}/healthz")
    assert (r.status_code, r.text) == (200, "ok")
    r = httpx.get(f"http://{addr}/version")
    assert (r.status_code, r.text) == (200, "it-ok\n")
    r = httpx.get(f"http://{addr}/cgi-bin/work")
    assert (r.status_code, r.text) == (200, "it-ok\n")
    r = httpx.post(f"http://{addr}/cgi-bin/work", content=b"x" * 300_000, timeout=10)
    assert (r.status_code, r.text) == (200, "it-ok\n")

    t0 = time.monotonic()
    r = httpx.post(f"http://{addr}/cgi-bin/work?sleep=1", content=b"{}", timeout=10)
    took = time.monotonic() - t0
    assert (r.status_code, r.text) == (200, "it-ok\n")
    assert 1.0 <= took < 5, took
    t0 = time.monotonic()
    assert httpx.get(f"http://{addr}/cgi-bin/work?a=b&sleep=0.3&c=d").text == "it-ok\n"
    assert time.monotonic() - t0 >= 0.3


def test_unhealthy_build(run: Callable[..., Any]) -> None:
    ref = images.build_app_image(f"{APP}:it-unhealthy", "it-unhealthy", healthy=False)
    _, addr = run(ref, init=True)
    wait_up(f"http://{addr}/version")
    assert httpx.get(f"http://{addr}/healthz").status_code == 404
    assert httpx.get(f"http://{addr}/version").text == "it-unhealthy\n"


def test_start_delay(run: Callable[..., Any]) -> None:
    ref = images.build_app_image(f"{APP}:it-delay", "it-delay", start_delay=2)
    ct, addr = run(ref, init=True)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{addr}/healthz", timeout=1)
    took = wait_up(f"http://{addr}/healthz")
    assert took >= 0.8, took  # the container start took part of the 2 s
    assert httpx.get(f"http://{addr}/healthz").status_code == 200
    assert "sleeping 2 s" in ct.logs().decode()


def test_unhealthy_after(run: Callable[..., Any]) -> None:
    ref = images.build_app_image(f"{APP}:it-decay", "it-decay", unhealthy_after=2)
    _, addr = run(ref, init=True)
    wait_up(f"http://{addr}/healthz")
    assert httpx.get(f"http://{addr}/healthz").status_code == 200
    deadline = time.monotonic() + 10
    while httpx.get(f"http://{addr}/healthz").status_code == 200:
        assert time.monotonic() < deadline, "never became unhealthy"
        time.sleep(0.2)
    assert httpx.get(f"http://{addr}/healthz").status_code == 404
    assert httpx.get(f"http://{addr}/version").status_code == 200


@pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])
def test_graceful_shutdown_drains(run: Callable[..., Any], init: bool) -> None:
    ref = images.build_app_image(f"{APP}:it-graceful", "it-graceful")
    ct, addr = run(ref, init=init)
    wait_up(f"http://{addr}/healthz")
    slow = in_background(lambda: httpx.post(f"http://{addr}/cgi-bin/work?sleep=2", content=b"x", timeout=20))
    time.sleep(0.7)
    ct.kill(signal="SIGTERM")
    time.sleep(0.5)
    with pytest.raises(httpx.TransportError):  # the listener is closed while draining
        httpx.get(f"http://{addr}/version", timeout=2)
    r = slow()
    assert isinstance(r, httpx.Response), r
    assert (r.status_code, r.text) == (200, "it-graceful\n")
    assert ct.wait(timeout=20)["StatusCode"] == 0
    assert "draining" in ct.logs().decode()


@pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])
def test_abrupt_shutdown_cuts_requests(run: Callable[..., Any], init: bool) -> None:
    ref = images.build_app_image(f"{APP}:it-abrupt", "it-abrupt", shutdown="abrupt")
    ct, addr = run(ref, init=init)
    wait_up(f"http://{addr}/healthz")
    slow = in_background(lambda: httpx.post(f"http://{addr}/cgi-bin/work?sleep=3", content=b"x", timeout=20))
    time.sleep(0.7)
    t0 = time.monotonic()
    ct.stop(timeout=20)
    assert time.monotonic() - t0 < 5
    assert isinstance(slow(), httpx.TransportError)
    assert ct.wait(timeout=5)["StatusCode"] != 0


def test_build_is_idempotent(dclient: docker.DockerClient) -> None:
    ref = f"{APP}:it-idem"
    images.build_app_image(ref, "it-idem-1")
    first = dclient.images.get(ref).id
    images.build_app_image(ref, "it-idem-1")
    assert dclient.images.get(ref).id == first
    images.build_app_image(ref, "it-idem-2")
    assert dclient.images.get(ref).id != first
    assert images.image_exists(ref)
    assert not images.image_exists(f"{APP}:it-never-built")


def test_caddy_image(run: Callable[..., Any], tmp_path: Path) -> None:
    ref = images.build_caddy_image()
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(':8080 {\n\trespond "caddy-it"\n}\n')
    ct, addr = run(ref, volumes={str(caddyfile): {"bind": "/etc/caddy/Caddyfile", "mode": "ro"}})
    wait_up(f"http://{addr}/")
    r = httpx.get(f"http://{addr}/")
    assert (r.status_code, r.text, r.headers["server"]) == (200, "caddy-it", "Caddy")
    code, out = ct.exec_run(["wget", "-qO-", "http://127.0.0.1:8080/"])
    assert (code, out) == (0, b"caddy-it")


@pytest.mark.parametrize(
    "command", [["redis-server", "--appendonly", "yes"], ["--appendonly", "yes"]], ids=["official-style", "flags"]
)
def test_redis_image(run: Callable[..., Any], command: list[str]) -> None:
    import redis  # a dependency of watcher itself: never skipped
    ct, addr = run(images.build_redis_image(), port=6379, command=command)
    host, port = addr.split(":")
    r = redis.Redis(host=host, port=int(port), socket_timeout=2)
    deadline = time.monotonic() + 15
    while True:
        try:
            assert r.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, ct.logs().decode()
            time.sleep(0.2)
    r.set("k", "v")
    assert r.get("k") == b"v"
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    assert ct.exec_run(["redis-cli", "ping"]) == (0, b"PONG\n")


def test_push_to_registry(dclient: docker.DockerClient) -> None:
    try:
        httpx.get(f"http://{images.REGISTRY}/v2/", timeout=2).raise_for_status()
    except httpx.HTTPError as err:
        _unavailable(f"registry {images.REGISTRY} (scripts/services.sh start)", err)
    tag = f"it-{uuid.uuid4().hex[:8]}"  # unique content, so deleting its digest hits nothing else
    repo = f"{images.REGISTRY}/watcher/testapp-it"
    ref = images.build_app_image(f"{repo}:{tag}", tag)
    digest = images.push(ref)
    try:
        tags = httpx.get(f"http://{images.REGISTRY}/v2/watcher/testapp-it/tags/list").json()["tags"]
        assert tag in tags
    finally:
        httpx.delete(f"http://{images.REGISTRY}/v2/watcher/testapp-it/manifests/{digest}")
        dclient.images.remove(ref)
