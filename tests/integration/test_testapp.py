"""The offline test images (tests/harness/images.py) against a real Docker daemon.

Skipped when Docker is unreachable, except under CI=true where that fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
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


@pytest.fixture(params=["app", "busybox"])
def build(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Each knob test runs on the test app and on the minimal busybox app (same knobs)."""
    builder = images.build_app_image if request.param == "app" else images.build_busybox_app_image
    flavor = request.param

    def _build(tag: str, version: str, **options: Any) -> str:
        return builder(f"{APP}:{tag}-{flavor}", version, **options)

    return _build


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


def test_endpoints(run: Callable[..., Any], dclient: docker.DockerClient, build: Callable[..., str]) -> None:
    ref = build("it-ok", "it-ok")
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


def test_unhealthy_build(run: Callable[..., Any], build: Callable[..., str]) -> None:
    ref = build("it-unhealthy", "it-unhealthy", healthy=False)
    _, addr = run(ref, init=True)
    wait_up(f"http://{addr}/version")
    assert httpx.get(f"http://{addr}/healthz").status_code == 404
    assert httpx.get(f"http://{addr}/version").text == "it-unhealthy\n"


def test_start_delay(run: Callable[..., Any], build: Callable[..., str]) -> None:
    ref = build("it-delay", "it-delay", start_delay=2)
    ct, addr = run(ref, init=True)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{addr}/healthz", timeout=1)
    took = wait_up(f"http://{addr}/healthz")
    assert took >= 0.8, took  # the container start took part of the 2 s
    assert httpx.get(f"http://{addr}/healthz").status_code == 200
    assert "sleeping 2 s" in ct.logs().decode()


def test_unhealthy_after(run: Callable[..., Any], build: Callable[..., str]) -> None:
    ref = build("it-decay", "it-decay", unhealthy_after=2)
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
def test_graceful_shutdown_drains(run: Callable[..., Any], init: bool, build: Callable[..., str]) -> None:
    ref = build("it-graceful", "it-graceful")
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
def test_abrupt_shutdown_cuts_requests(
    run: Callable[..., Any], init: bool, build: Callable[..., str]
) -> None:
    ref = build("it-abrupt", "it-abrupt", shutdown="abrupt")
    ct, addr = run(ref, init=init)
    wait_up(f"http://{addr}/healthz")
    slow = in_background(lambda: httpx.post(f"http://{addr}/cgi-bin/work?sleep=3", content=b"x", timeout=20))
    time.sleep(0.7)
    t0 = time.monotonic()
    ct.stop(timeout=20)
    assert time.monotonic() - t0 < 5
    assert isinstance(slow(), httpx.TransportError)
    assert ct.wait(timeout=5)["StatusCode"] != 0


def _raw(addr: str, data: bytes, *, until: bytes = b"", timeout: float = 5) -> bytes:
    """Send raw bytes on one connection; read until `until` is seen or the server closes."""
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while not (until and until in got):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_keep_alive_and_pipelining(run: Callable[..., Any]) -> None:
    _, addr = run(images.build_app_image(f"{APP}:it-pipe", "it-pipe"), init=True)
    wait_up(f"http://{addr}/version")
    request = b"POST /cgi-bin/work HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    got = _raw(addr, request * 3 + b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.count(b"HTTP/1.1 200 OK") == 4, got
    assert got.count(b"Connection: keep-alive") == 3 and got.endswith(
        b"Connection: close\r\n\r\nit-pipe\n"
    ), got


def test_a_burst_of_600_connections_is_accepted(run: Callable[..., Any]) -> None:
    """The listen backlog (1024) holds a burst that busybox httpd's (9) would reset."""
    _, addr = run(images.build_app_image(f"{APP}:it-burst", "it-burst"), init=True)
    wait_up(f"http://{addr}/version")
    host, port = addr.split(":")
    socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(600)]
    try:
        for sock in socks:
            sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = [sock.recv(4096) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers)


def test_error_rate(run: Callable[..., Any]) -> None:
    _, addr = run(images.build_app_image(f"{APP}:it-err", "it-err", error_rate=0.25), init=True)
    wait_up(f"http://{addr}/version")
    with httpx.Client(timeout=5) as c:
        codes = [c.post(f"http://{addr}/cgi-bin/work", content=b"x").status_code for _ in range(400)]
        assert all(c.get(f"http://{addr}/healthz").status_code == 200 for _ in range(20)), (
            "health is not affected"
        )
    assert set(codes) == {200, 500} and 60 <= codes.count(500) <= 140, codes.count(500)


def test_server_sent_events_end_at_a_graceful_stop(run: Callable[..., Any]) -> None:
    ct, addr = run(images.build_app_image(f"{APP}:it-sse", "it-sse"), init=True)
    wait_up(f"http://{addr}/version")
    with httpx.stream("GET", f"http://{addr}/events?every=0.2", timeout=10) as r:
        assert r.headers["content-type"] == "text/event-stream"
        lines = r.iter_lines()
        events = [line for line in (next(lines) for _ in range(6)) if line]
        assert events == ["data: it-sse"] * 3
        t0 = time.monotonic()
        ct.kill(signal="SIGTERM")
        for _ in lines:
            pass  # ends when the app closes the stream
    assert time.monotonic() - t0 < 5
    assert ct.wait(timeout=10)["StatusCode"] == 0


def test_websocket_greets_and_echoes(run: Callable[..., Any]) -> None:
    _, addr = run(images.build_app_image(f"{APP}:it-ws", "it-ws"), init=True)
    wait_up(f"http://{addr}/version")
    key = base64.b64encode(os.urandom(16)).decode()
    mask = os.urandom(4)
    frame = bytes([0x81, 0x80 | 5]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hello"))
    got = _raw(
        addr,
        f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        + frame,
        until=b"hello",
    )
    accept = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert got.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Accept: " + accept in got, got
    assert got.endswith(bytes([0x81, 5]) + b"it-ws" + bytes([0x81, 5]) + b"hello"), got


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
    "command",
    [["redis-server", "--appendonly", "yes"], ["--appendonly", "yes"]],
    ids=["official-style", "flags"],
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


def test_shellless_image_answers_http_but_has_no_shell_or_http_client(
    run: Callable[..., Any], dclient: docker.DockerClient
) -> None:
    """The stand-in for distroless/scratch images: only an HTTP probe from outside can judge it."""
    wget = ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/up"]
    check = {"test": wget, "interval": 300_000_000, "timeout": 1_000_000_000, "retries": 1}
    ref = images.build_shellless_app_image(f"{APP}:shellless-v1", "v1")
    ct, addr = run(ref, healthcheck=check)
    wait_up(f"http://{addr}/up")
    assert httpx.get(f"http://{addr}/up").status_code == 200
    assert httpx.get(f"http://{addr}/version").text == "v1\n"
    assert httpx.get(f"http://{addr}/cgi-bin/work").text == "v1\n"
    for command in (["sh", "-c", "true"], ["/bin/sh", "-c", "true"], ["wget", "--help"], ["curl", "-V"]):
        code, out = ct.exec_run(command)
        assert code == 126, (command, code, out)  # exec failed (its message is not always relayed)
    deadline = time.monotonic() + 15
    while (state := dclient.api.inspect_container(ct.id)["State"]["Health"]["Status"]) != "unhealthy":
        assert time.monotonic() < deadline, f"the wget healthcheck did not fail: {state}"
        time.sleep(0.2)
    assert (
        "executable file not found"
        in dclient.api.inspect_container(ct.id)["State"]["Health"]["Log"][-1]["Output"]
    )


def test_shellless_image_knobs(run: Callable[..., Any], dclient: docker.DockerClient) -> None:
    down = images.build_shellless_app_image(f"{APP}:shellless-down", "down", up_status=500)
    _, addr = run(down)
    wait_up(f"http://{addr}/up")
    assert httpx.get(f"http://{addr}/up").status_code == 500
    assert httpx.get(f"http://{addr}/version").text == "down\n"
    crash = images.build_shellless_app_image(f"{APP}:shellless-crash", "crash", exit_at_start=True)
    ct = dclient.containers.run(crash, name=f"wt-testapp-{uuid.uuid4().hex[:10]}", detach=True)
    try:  # it exits at once: no port to look up
        assert ct.wait(timeout=15)["StatusCode"] == 1
    finally:
        ct.remove(force=True)


def test_shellless_image_is_versioned_and_pushable(dclient: docker.DockerClient) -> None:
    try:
        httpx.get(f"http://{images.REGISTRY}/v2/", timeout=2).raise_for_status()
    except httpx.HTTPError as err:
        _unavailable(f"registry {images.REGISTRY} (scripts/services.sh start)", err)
    repo = f"{images.REGISTRY}/watcher/shellless-it"
    v1 = images.build_shellless_app_image(f"{repo}:v1", "v1")
    v2 = images.build_shellless_app_image(f"{repo}:v2", "v2")
    assert images.push(v1) != images.push(v2)
    assert dclient.images.get(v2).labels["org.opencontainers.image.version"] == "v2"
    dclient.images.remove(v1)
    dclient.images.remove(v2)
