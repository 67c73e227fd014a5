"""Health by watcher's own HTTP GET (platforms/http_health.py, backends/http_probe.py): what a
look at a shell-less container makes of each answer, which address it uses, and what `judge`,
the health wait and `status` make of it."""

from __future__ import annotations

import errno
import http.server
import io
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.backends import http_probe
from watcher.backends.http_probe import Answer, get, nearest_first
from watcher.backends.instance import Instance
from watcher.config.settings import Service
from watcher.platforms.health import judge
from watcher.platforms.health_check import HealthCheckFailed, wait_on_events
from watcher.platforms.http_health import WRONG_FOR, HttpHealth
from watcher.progress import Progress

WEB = Service("web", 8080, health_path="/up")


def box(state: str = "running", *, addresses: tuple[str, ...] = ("10.0.0.2",), cid: str = "c1") -> Instance:
    return Instance(cid, f"app-blue-web-{cid}", "web", "r/app:1", "sha", state, None, 0, 0, addresses)


class Server:
    """A scripted network: per address, the answers of its GETs in turn (the last one repeats)."""

    def __init__(self, **script: list[int | str]) -> None:
        self.script = {address.replace("_", "."): answers for address, answers in script.items()}
        self.asked: list[tuple[str, int, str]] = []

    def __call__(self, address: str, port: int, path: str) -> Answer:
        self.asked.append((address, port, path))
        answers = self.script[address]
        step = answers.pop(0) if len(answers) > 1 else answers[0]
        url = f"http://{address}:{port}{path}"
        return Answer(url, status=step) if isinstance(step, int) else Answer(url, problem=step)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def look(http: HttpHealth, container: Instance) -> Instance:
    return http.judged([container])[0]


@pytest.mark.parametrize(
    "answer, health",
    [(200, "healthy"), (204, "healthy"), (302, "healthy"), (500, "starting"), (404, "starting")],
)
def test_one_look(answer: int, health: str) -> None:
    checked = look(HttpHealth([WEB], Server(**{"10_0_0_2": [answer]})), box())
    assert checked.health == health and f"GET http://10.0.0.2:8080/up: {answer}" in checked.probe


def test_connection_refused_is_still_starting_for_as_long_as_it_lasts() -> None:
    clock = Clock()
    http = HttpHealth([WEB], Server(**{"10_0_0_2": ["connection refused"]}), clock)
    for _ in range(5):
        clock.now += 10
        checked = look(http, box())
        assert checked.health == "starting" and "connection refused" in checked.probe


def test_wrong_answers_make_it_unhealthy_once_they_last() -> None:
    clock = Clock()
    http = HttpHealth([WEB], Server(**{"10_0_0_2": [500]}), clock)
    assert look(http, box()).health == "starting"
    assert look(http, box()).health == "starting"  # many looks in a row do not count: time does
    clock.now += WRONG_FOR
    sick = look(http, box())
    assert sick.health == "unhealthy" and "500 for 3s" in sick.probe
    assert judge([sick], ["web"]).failed and "500" in judge([sick], ["web"]).reason


def test_a_right_answer_forgets_the_wrong_ones() -> None:
    clock = Clock()
    http = HttpHealth([WEB], Server(**{"10_0_0_2": [503, 200, 503]}), clock)
    assert look(http, box()).health == "starting"
    clock.now += WRONG_FOR
    assert look(http, box()).health == "healthy"
    clock.now += 1
    assert look(http, box()).health == "starting"


def test_a_restart_in_between_forgets_the_wrong_ones() -> None:
    clock = Clock()
    http = HttpHealth([WEB], Server(**{"10_0_0_2": [500, "connection refused", 500]}), clock)
    look(http, box())
    clock.now += WRONG_FOR
    assert look(http, box()).health == "starting"
    assert look(http, box()).health == "starting"


def test_the_first_reachable_address_is_used_and_remembered() -> None:
    net = Server(**{"198_51_100_5": ["unreachable: no connection within 1s"], "198_51_100_9": [200]})
    http = HttpHealth([WEB], net)
    container = box(addresses=("198.51.100.5", "198.51.100.9"))  # TEST-NET-2: on no network here
    assert look(http, container).health == "healthy"
    assert look(http, container).health == "healthy"
    assert [a for a, _, _ in net.asked] == ["198.51.100.5", "198.51.100.9", "198.51.100.9"]


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the routing table sample is little-endian")
def test_addresses_on_a_network_watcher_is_on_come_first(tmp_path: Path) -> None:
    """In its own container watcher is on the shared network alone (here 172.18.0.0/16): that
    address is tried first, not the per-colour network's, which would cost a connect timeout."""
    routes = tmp_path / "route"
    routes.write_text(ROUTES)
    addresses = ("172.30.0.5", "172.18.0.5", "fd00::5")
    assert nearest_first(addresses, routes) == ["172.18.0.5", "172.30.0.5", "fd00::5"]
    assert nearest_first(addresses, tmp_path / "missing") == list(addresses)


def test_no_reachable_address_says_where_watcher_must_run() -> None:
    net = Server(**{"172_30_0_5": ["unreachable: no connection within 1s"]})
    checked = look(HttpHealth([WEB], net), box(addresses=("172.30.0.5",)))
    assert checked.health == "starting"
    assert "172.30.0.5" in checked.probe and "Docker Desktop" in checked.probe
    health = judge([checked], ["web"])
    assert not health.healthy and not health.failed and "cannot reach" in health.reason


def test_only_running_containers_of_checked_services_are_asked() -> None:
    net = Server(**{"10_0_0_2": [200]})
    http = HttpHealth([WEB, Service("worker", None)], net)
    stopped = box("exited")
    worker = Instance("w", "w", "worker", "r/app:1", "sha", "running", None, 0, 0, ("10.0.0.2",))
    assert http.judged([stopped, worker]) == [stopped, worker]
    assert net.asked == []


def test_health_port_defaults_to_the_service_port() -> None:
    net = Server(**{"10_0_0_2": [200]})
    look(HttpHealth([Service("web", 3000, health_path="/healthz", health_port=9000)], net), box())
    look(HttpHealth([Service("web", 3000, health_path="/healthz")], net), box())
    assert [(p, path) for _, p, path in net.asked] == [(9000, "/healthz"), (3000, "/healthz")]


def test_the_health_wait_asks_every_second_at_most_when_a_service_is_checked_by_http() -> None:
    assert HttpHealth([WEB]).wait_interval(3.0) == 1.0
    assert HttpHealth([WEB]).wait_interval(0.5) == 0.5
    assert HttpHealth([Service("web", 8080)]).wait_interval(3.0) == 3.0


def test_the_probe_shows_in_the_instance_dict() -> None:
    checked = look(HttpHealth([WEB], Server(**{"10_0_0_2": [200]})), box())
    assert checked.to_dict()["probe"] == "GET http://10.0.0.2:8080/up: 200"
    assert box().to_dict()["probe"] is None


# -- the GET itself, on real sockets ------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response({"/up": 200, "/moved": 302}.get(self.path, 500))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_get_answers(server: tuple[str, int]) -> None:
    host, port = server
    assert get(host, port, "/up").ok and get(host, port, "/moved").status == 302
    broken = get(host, port, "/other")
    assert broken.status == 500 and not broken.ok and broken.reached


def test_get_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    answer = get("127.0.0.1", port, "/up")
    assert answer.problem == "connection refused" and answer.reached and not answer.ok


def test_get_silent_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(http_probe, "ANSWER_TIMEOUT", 0.2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        answer = get("127.0.0.1", listener.getsockname()[1], "/up")
    assert answer.problem.startswith("no answer within") and answer.reached


@pytest.mark.parametrize(
    "error, problem",
    [
        (TimeoutError(), "unreachable: no connection within 1s"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable: No route to host"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable: Network is unreachable"),
    ],
)
def test_get_unreachable(monkeypatch: pytest.MonkeyPatch, error: OSError, problem: str) -> None:
    """What connecting to a container address this host cannot route to raises (a container on a
    network watcher's own container is not on; any container address under Docker Desktop)."""

    def connect(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(http_probe.socket, "create_connection", connect)
    answer = get("172.30.0.5", 8080, "/up")
    assert not answer.reached and answer.problem == problem


# -- the health wait (health_check.wait_on_events) on a colour judged by HTTP ------------------


class HttpColor:
    """A colour of one shell-less container, its looks judged by `HttpHealth` on a scripted network."""

    def __init__(self, net: Server, *states: str) -> None:
        self.http, self.states = HttpHealth([WEB], net), list(states) or ["running"]
        self.services, self.color, self.name = ["web"], "green", "app-green"
        self.one_shots: set[str] = set()
        self.docker = self

    def instances(self) -> list[Instance]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return self.http.judged([box(state)])

    def last_health_output(self, container_id: str) -> str:
        return ""

    def logs(self, container_id: str, tail: int = 20) -> str:
        return "app: started"


class NoEvents:
    problem = ""

    def wait(self, timeout: float) -> list[object]:
        time.sleep(timeout)
        return []


def wait_http(color: HttpColor, *, timeout: float = 30, interval: float = 0.01) -> str:
    out = io.StringIO()
    wait_on_events(color, NoEvents(), timeout=timeout, interval=interval, progress=Progress(out))  # type: ignore[arg-type]
    return out.getvalue()


def test_the_wait_ends_when_the_first_right_answer_comes() -> None:
    said = wait_http(HttpColor(Server(**{"10_0_0_2": ["connection refused"] * 3 + [200]})))
    assert "healthy, seen on the poll" in said and "no healthcheck" not in said


def test_the_wait_fails_on_wrong_answers_that_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("watcher.platforms.http_health.WRONG_FOR", 0.05)
    with pytest.raises(HealthCheckFailed) as failed:
        wait_http(HttpColor(Server(**{"10_0_0_2": [500]})))
    assert "failed its health check" in str(failed.value)
    assert "GET http://10.0.0.2:8080/up: 500" in str(failed.value)
    assert "last log lines" in failed.value.details


def test_the_wait_fails_at_once_when_the_container_exits() -> None:
    color = HttpColor(Server(**{"10_0_0_2": ["connection refused"]}), "running", "exited")
    t0 = time.monotonic()
    with pytest.raises(HealthCheckFailed, match="stopped"):
        wait_http(color, timeout=30)
    assert time.monotonic() - t0 < 5


def test_the_wait_for_a_server_that_never_listens_ends_at_the_timeout() -> None:
    with pytest.raises(HealthCheckFailed, match="HEALTH_CHECK_TIMEOUT.*connection refused"):
        wait_http(HttpColor(Server(**{"10_0_0_2": ["connection refused"]})), timeout=0.1)


def test_the_wait_for_an_unreachable_container_says_where_watcher_must_run() -> None:
    with pytest.raises(HealthCheckFailed, match="cannot reach the container"):
        wait_http(HttpColor(Server(**{"10_0_0_2": ["unreachable: no connection within 1s"]})), timeout=0.1)


def test_status_shows_the_http_result_per_container() -> None:
    from watcher.engine.status import format_status

    checked = look(HttpHealth([WEB], Server(**{"10_0_0_2": [200]})), box())
    blue = {"role": "live", "version": "1", "health": "healthy", "containers": [checked.to_dict()]}
    data = {
        "app": "shop",
        "live_color": "blue",
        "live_version": "1",
        "live_health": "healthy",
        "live_since": "now",
        "rollback": None,
        "previous_version": None,
        "colors": {"blue": blue},
        "lock": None,
        "warnings": [],
    }
    assert "app-blue-web-c1: running, healthy [GET http://10.0.0.2:8080/up: 200]" in format_status(data)


def test_the_failure_names_the_answer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("watcher.platforms.http_health.WRONG_FOR", 0.05)
    with pytest.raises(HealthCheckFailed) as failed:
        wait_http(HttpColor(Server(**{"10_0_0_2": [500]})))
    assert str(failed.value).count("GET http://10.0.0.2:8080/up: 500") == 1, str(failed.value)


def test_a_containers_addresses_are_read_from_every_network() -> None:
    from watcher.backends.containers import _addresses

    attrs = {
        "NetworkSettings": {
            "Networks": {
                "shop-blue_default": {"IPAddress": "172.30.0.5", "GlobalIPv6Address": ""},
                "shop_web": {"IPAddress": "172.18.0.5", "GlobalIPv6Address": "fd00::5"},
                "none": {"IPAddress": ""},
            }
        }
    }
    assert _addresses(attrs) == ("172.30.0.5", "172.18.0.5", "fd00::5")
    assert _addresses({}) == ()


def test_get_on_ipv6_loopback_brackets_the_address() -> None:
    answer = get("::1", 9, "/up")
    assert answer.url == "http://[::1]:9/up"
