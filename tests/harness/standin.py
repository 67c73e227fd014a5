#!/usr/local/bin/python3
"""The corpus's stand-in for every image of a real stack (tests/fixtures/corpus): one program that
plays the role a compose file's `command` asks of it, so the stacks' published shapes run offline.

It runs inside the images tests/harness/corpus_images.py builds, beside the test app's server
(tests/harness/app_server.py, imported as /app/server.py), and is linked under the names real
commands use (`bundle`, `node`, `listmonk`, `pg_isready`, `curl`, ...). The role comes from the
words of its command line, else from the image's STANDIN_ROLE; as an entrypoint it runs a
command that names a program (`sh -c ...`) in its place, as real entrypoint scripts do:

    serve    the test app's HTTP server (keep-alive, graceful drain) on $PORT and every port of
             $STANDIN_PORTS, under the prefix $STANDIN_PREFIX when set (a server that routes on
             its full path: a stripped request is a 404); GET /up is its health
    worker   asks the URL in the variable $STANDIN_PEER_VAR names for /version twice a second
             and logs "peer <url> answered <body>": who a colour's worker reaches by name
    migrate  a one-shot: tells the database stand-in "migration <version>" and exits with the
             image's "migrate_exit" (0 unless the version is built broken)
    db       a database stand-in: the HTTP server on $PORT; logs each migration it is told of
    ping     a healthcheck command (pg_isready, curl, `... healthcheck`): prints OK and exits 0
             when 127.0.0.1:$PORT answers /up; a worker is healthy while it runs
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, "/app")
import server  # noqa: E402  (tests/harness/app_server.py, copied into the image)

MIGRATE_WORDS = ("migrate", "createdb", "--install", "--upgrade", "prepare")
WORKER_WORDS = ("worker", "sidekiq")
PING_NAMES = ("pg_isready", "curl")
DB_URL = re.compile(r"^[a-z]+://(?:[^@/]*@)?([A-Za-z0-9_.-]+)(?::(\d+))?")


def role(argv: list[str]) -> str:
    name = os.path.basename(argv[0])
    words = [w.lower() for w in argv[1:]]
    if name in PING_NAMES or "healthcheck" in words or "-healthcheck" in words:
        return "ping"
    if any(w in WORKER_WORDS for w in words):
        return "worker"
    if any(m in w for w in words for m in MIGRATE_WORDS):
        return "migrate"
    return os.environ.get("STANDIN_ROLE", "serve")


def settings() -> dict:
    with open(server.CONFIG, encoding="utf-8") as f:
        return json.load(f)


class PrefixedConnection(server.Connection):
    """Routes on the full path: answers only under the prefix (which it strips itself), and the
    database role's POST /migrate."""

    async def _route(self, method: str, target: str, headers: dict[str, str], keep: bool) -> None:
        prefix = os.environ.get("STANDIN_PREFIX", "")
        path = urlsplit(target).path
        if path == "/migrate" and os.environ.get("STANDIN_ROLE") == "db":
            print(f"db: migration {urlsplit(target).query}", flush=True)
            self._reply(200, b"migrated\n", keep=keep)
            return
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            self._reply(404, f"not under {prefix}\n".encode(), keep=keep)
            return
        rest = target[len(prefix) :] or "/"
        if urlsplit(rest).path in ("/up", "/ping", "/health", "/healthcheck", "/api/heartbeat"):
            rest = "/healthz"
        await super()._route(method, rest, headers, keep)


async def serve(config: dict) -> int:
    """app_server.serve on every port this role listens on."""
    with open(server.HEALTH_FILE, "w", encoding="utf-8") as f:
        f.write("ok")
    app = server.App(config)
    loop = asyncio.get_running_loop()
    ports = {int(os.environ.get("PORT", "8080"))}
    ports.update(int(p) for p in os.environ.get("STANDIN_PORTS", "").split())
    listeners = [
        await loop.create_server(lambda: PrefixedConnection(app), "0.0.0.0", port, backlog=server.BACKLOG)
        for port in sorted(ports)
    ]

    def on_term() -> None:
        server.log(config, f"SIGTERM: draining {app.inflight} in-flight requests")
        for listener in listeners:
            listener.close()
        app.begin_drain()
        loop.call_later(server.DRAIN_LIMIT, app.stopped.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)
    server.log(config, f"{os.environ.get('STANDIN_ROLE', 'serve')} listening on {sorted(ports)}")
    await app.stopped.wait()
    return 0


async def fetch(host: str, port: int, target: str, timeout: float = 2) -> str:
    """GET target from host:port (HTTP/1.0, one connection): the body of a 200, else what went wrong."""
    try:
        # Resolved here, blocking, as bytes: the image has no thread pool for asyncio's resolver, no idna.
        address = socket.getaddrinfo(host.encode(), port, type=socket.SOCK_STREAM)[0][4][0]
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        writer.write(f"GET {target} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (TimeoutError, OSError) as exc:
        return f"error {type(exc).__name__}"
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    status = head.split("\r\n")[0].split(" ")
    return body.strip() if status[1:2] == ["200"] else f"status {' '.join(status[1:2])}"


async def version_of(url: str) -> str:
    """What the service at url answers on its /version."""
    parts = urlsplit(url)
    return await fetch(parts.hostname or "", parts.port or 80, parts.path.rstrip("/") + "/version")


async def work(config: dict) -> int:
    """Ask the peer twice a second until SIGTERM."""
    url = os.environ.get(os.environ.get("STANDIN_PEER_VAR", ""), "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server.log(config, f"worker up, peer {url or 'none'}")
    while not stop.is_set():
        if url:
            print(f"peer {url} answered {await version_of(url)}", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    return 0


def database() -> tuple[str, int] | None:
    """Where the stack's database is, as its own variables say (a URL, or a host variable)."""
    for value in sorted(os.environ.values()):
        found = DB_URL.match(value) if value.startswith(("postgres", "postgresql")) else None
        if found:
            return found.group(1), int(found.group(2) or 5432)
    for name in ("POSTGRES_HOST", "DB_HOST", "DATABASE_HOST", "LISTMONK_db__host"):
        if os.environ.get(name):
            port = os.environ.get(name.replace("HOST", "PORT").replace("host", "port"), "5432")
            return os.environ[name], int(port)
    return None


async def migrate(config: dict) -> int:
    code = int(config.get("migrate_exit") or 0)
    target = database()
    told = "no database"
    if target:
        query = f"version={config['version']}&exit={code}"
        told = await fetch(target[0], target[1], f"/migrate?{query}")
    print(f"migrate {config['version']}: database says {told}; exit {code}", flush=True)
    return code


def ping() -> int:
    """A worker (PID 1 runs the worker role) is healthy while it runs; a server when it answers."""
    with open("/proc/1/cmdline", "rb") as f:
        if role([w.decode() for w in f.read().split(b"\0") if w][1:]) == "worker":
            return 0
    up = os.environ.get("STANDIN_PREFIX", "") + "/up"
    answer = asyncio.run(fetch("127.0.0.1", int(os.environ.get("PORT", "8080")), up))
    print("OK" if answer == "ok" else answer)  # what healthchecks grep for (mastodon's `grep -q 'OK'`)
    return 0 if answer == "ok" else 1


ENTRYPOINTS = ("standin.py", "entrypoint.sh", "rails.sh")


def delegate(argv: list[str]) -> None:
    """As the entrypoint scripts of real images do (`exec "$@"`): a command that names a program
    (`sh -c ...`, `bundle exec ...`, `./listmonk ...`) is run in its place."""
    if os.path.basename(argv[0]) not in ENTRYPOINTS or len(argv) < 2:
        return
    program = argv[1]
    places = [program] if "/" in program else [f"{d}/{program}" for d in os.environ["PATH"].split(":")]
    if any(os.path.isfile(p) and os.access(p, os.X_OK) for p in places):
        os.execvp(program, argv[1:])


def main(argv: list[str]) -> int:
    delegate(argv)
    config = settings()
    acting = role(argv)
    if acting == "ping":
        return ping()
    if acting == "worker":
        return asyncio.run(work(config))
    if acting == "migrate":
        time.sleep(float(config.get("migrate_seconds") or 0))
        return asyncio.run(migrate(config))
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
