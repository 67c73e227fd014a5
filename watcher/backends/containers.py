"""What Docker says about containers: state, health, version, logs (docker SDK)."""

from __future__ import annotations

import getpass
import os
import time
from datetime import datetime

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from requests import RequestException

from watcher.backends.container_events import HEALTH_ACTIONS, ContainerEvents
from watcher.backends.instance import Instance
from watcher.errors import DockerUnavailable, PullFailed

#: What the Docker SDK raises when the engine is away: its own errors, and requests' (a
#: connection refused or reset while dockerd restarts is not wrapped into a DockerException).
DOCKER_DOWN = (DockerException, RequestException)


DEFAULT_SOCKET = "/var/run/docker.sock"  # the SDK's, when DOCKER_HOST is unset
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class Containers:
    """A thin, typed view over the Docker engine."""

    _engine_info: dict | None = None

    def __init__(self) -> None:
        try:
            self.client = docker.from_env(timeout=30)
            self.client.ping()
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(unreachable(exc, os.environ.get("DOCKER_HOST"))) from exc

    def of_project(self, project: str) -> list[Instance]:
        try:
            found = self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc
        return sorted((self._info(c.attrs) for c in found), key=lambda c: c.name)

    def of_projects(self, projects: list[str]) -> dict[str, list[Instance]]:
        """The containers of several projects, in one listing of the engine (of IDs and labels
        only): only the projects' own containers are inspected."""
        found: dict[str, list[Instance]] = {project: [] for project in projects}
        try:
            for listed in self.client.api.containers(all=True, filters={"label": PROJECT_LABEL}):
                project = (listed.get("Labels") or {}).get(PROJECT_LABEL)
                if project in found:
                    try:
                        found[project].append(self._info(self.client.api.inspect_container(listed["Id"])))
                    except NotFound:  # removed since the listing
                        continue
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc
        return {project: sorted(containers, key=lambda c: c.name) for project, containers in found.items()}

    def _info_of_engine(self) -> dict:
        """`docker info`, asked once per engine object (a deploy asks it for the ID and the platform)."""
        if self._engine_info is None:
            try:
                self._engine_info = self.client.info()
            except DOCKER_DOWN as exc:
                raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc
        return self._engine_info

    def engine_id(self) -> str:
        """The Docker engine's ID: which host a colour's containers really live on."""
        return str(self._info_of_engine().get("ID") or "")

    def platform(self) -> tuple[str, str]:
        """The engine's OSType and Architecture (`linux`, `x86_64`): what its images must be built for."""
        info = self._info_of_engine()
        return str(info.get("OSType") or ""), str(info.get("Architecture") or "")

    @staticmethod
    def answers() -> bool:
        """Asked on a new connection: a daemon that is shutting down has closed its socket but
        still answers on the connections it has."""
        try:
            Containers().client.close()
        except DockerUnavailable:
            return False
        return True

    def mounting(self, path: str) -> list[str]:
        """`name: status` of every container, running or not, that mounts `path` (Caddy mounts
        the run directory of the route files): best effort, [] when Docker cannot say."""
        try:
            found = self.client.api.containers(all=True)
        except DOCKER_DOWN:
            return []
        return [
            f"{(c.get('Names') or ['?'])[0].lstrip('/')}: {c.get('Status') or c.get('State')}"
            for c in found
            if any(m.get("Source") == path for m in c.get("Mounts") or [])
        ]

    def caddy_log(self, since: float) -> list[str]:
        """The log lines since `since` of every running Caddy container on this engine (an image
        named caddy): where an upstream's broken HTTP shows. Each line is read from Docker once
        per process (`status` runs on every dashboard refresh). Best effort: Docker trouble gives none."""
        try:
            running = self.client.api.containers(filters={"status": "running"})
            caddies = [c["Id"] for c in running if "caddy" in str(c.get("Image", "")).split("/")[-1]]
            for gone in set(_CADDY_LOGS) - set(caddies):
                del _CADDY_LOGS[gone]
            return [line for cid in caddies for stamp, line in self._caddy_tail(cid, since) if stamp >= since]
        except DOCKER_DOWN:
            return []

    def _caddy_tail(self, container_id: str, since: float) -> list[tuple[float, str]]:
        kept = [(stamp, line) for stamp, line in _CADDY_LOGS.get(container_id, []) if stamp >= since]
        after = kept[-1][0] if kept else since
        text = self.client.api.logs(container_id, stdout=True, stderr=True, timestamps=True, since=after)
        for raw in text.decode(errors="replace").splitlines():
            stamp, _, line = raw.partition(" ")
            moment = _epoch(stamp)
            if moment > after or not kept:
                kept.append((moment, line))
        _CADDY_LOGS[container_id] = kept
        return kept

    def image_present(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_id(self, ref: str) -> str | None:
        try:
            return self.client.images.get(ref).id
        except ImageNotFound:
            return None

    def tag(self, image_id: str, ref: str) -> None:
        """Point the local tag `ref` at `image_id` (a rollback to an earlier digest of one tag)."""
        repository, _, tag = ref.rpartition(":")
        try:
            self.client.images.get(image_id).tag(repository, tag)
        except DockerException as exc:
            raise DockerUnavailable(f"cannot tag {image_id[:19]} as {ref} ({_short(exc)})") from exc

    def repo_digests(self, ref: str) -> list[str]:
        """The registry digests the local image `ref` was pulled at (`repo@sha256:...`)."""
        try:
            return list(self.client.images.get(ref).attrs.get("RepoDigests") or [])
        except ImageNotFound:
            return []
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc

    def pull_digest(self, ref: str, digest: str) -> None:
        """Pull `ref`'s repository at `digest` and point the local tag `ref` at it: the image a
        job was queued at, whatever the tag points at in the registry by now."""
        repository, _, tag = ref.rpartition(":")
        try:
            self.client.images.pull(repository, tag=digest).tag(repository, tag)
        except APIError as exc:
            raise PullFailed(f"cannot pull {repository}@{digest}: {exc.explanation or exc}") from exc
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc

    def events(self, project: str, *, until: float) -> ContainerEvents:
        """Health and life-cycle events of `project`'s containers, from a second before now (Docker
        answers before it subscribes; the replay closes that gap) until `until` (epoch seconds) at
        the latest, so the daemon ends a stream even if it cannot be closed. Refused or
        unreachable: a source without events that says why."""
        try:
            stream = self.client.events(
                since=int(time.time()) - 1,
                until=int(until) + 1,
                decode=True,
                filters={
                    "type": "container",
                    "label": f"{PROJECT_LABEL}={project}",
                    "event": list(HEALTH_ACTIONS),
                },
            )
        except (DockerException, RequestException) as exc:
            return ContainerEvents(None, f"cannot subscribe to Docker's events: {_short(exc)}")
        return ContainerEvents(stream)

    def last_health_output(self, container_id: str) -> str:
        try:
            attrs = self.client.api.inspect_container(container_id)
        except NotFound:
            return ""
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc
        log = ((attrs.get("State") or {}).get("Health") or {}).get("Log") or []
        return log[-1].get("Output", "").strip() if log else ""

    def logs(self, container_id: str, tail: int = 20) -> str:
        try:
            return self.client.api.logs(container_id, tail=tail).decode(errors="replace").strip()
        except NotFound:
            return ""
        except DOCKER_DOWN as exc:  # dockerd restarting while a failed health wait reports
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc

    def remove_image(self, ref: str) -> bool:
        try:
            self.client.images.remove(ref)
            return True
        except (ImageNotFound, DockerException):
            return False

    def remove_volume(self, name: str) -> None:
        """Remove a volume; one already gone is fine, one another container still uses is left
        (Docker refuses; nothing is lost)."""
        try:
            self.client.volumes.get(name).remove()
        except (NotFound, APIError):
            return
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"cannot remove volume {name} ({_short(exc)})") from exc

    def exists(self, kind: str, name: str) -> bool:
        """Whether Docker has the network or volume `name` (kind: "network" or "volume")."""
        collection = self.client.networks if kind == "network" else self.client.volumes
        try:
            collection.get(name)
        except NotFound:
            return False
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"cannot ask Docker for {kind} {name} ({_short(exc)})") from exc
        return True

    def images_of(self, repository: str) -> list[str]:
        """Local tags of one repository, as full references."""
        refs = []
        for image in self.client.images.list(name=repository):
            refs += [t for t in image.tags if t.rsplit(":", 1)[0] == repository]
        return sorted(refs)

    @staticmethod
    def _info(attrs: dict) -> Instance:
        state = attrs.get("State") or {}
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        # Docker keeps the last health status of a stopped container; it means nothing then.
        health = (state.get("Health") or {}).get("Status") if state.get("Status") == "running" else None
        return Instance(
            id=attrs["Id"],
            name=attrs["Name"].lstrip("/"),
            service=labels.get(SERVICE_LABEL, ""),
            image=(attrs.get("Config") or {}).get("Image", ""),
            image_id=attrs.get("Image", ""),
            state=state.get("Status", "unknown"),
            health=health,
            exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(attrs.get("RestartCount") or 0),
            addresses=_addresses(attrs),
            up_for=_up_for(state),
        )


def _up_for(state: dict) -> float | None:
    """Seconds since the container last started (None: not running, or Docker did not say)."""
    try:
        started = datetime.fromisoformat(state["StartedAt"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, time.time() - started) if state.get("Status") == "running" else None


def _addresses(attrs: dict) -> tuple[str, ...]:
    """The container's IPv4 then IPv6 addresses on its networks, in Docker's order of networks."""
    networks = ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).values()
    found = [n.get(key) for key in ("IPAddress", "GlobalIPv6Address") for n in networks]
    return tuple(address for address in found if address)


#: Caddy's log lines already read, per container ID: (epoch seconds, line).
_CADDY_LOGS: dict[str, list[tuple[float, str]]] = {}


def _epoch(stamp: str) -> float:
    """Docker's RFC 3339 timestamp (nanoseconds) in epoch seconds; 0 when unreadable."""
    try:
        return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0


def unreachable(exc: Exception, docker_host: str | None) -> str:
    """Why the engine did not answer, and what to do: a socket this user may not open is not a
    stopped dockerd."""
    socket = (docker_host or DEFAULT_SOCKET).removeprefix("unix://")
    if "PermissionError" in str(exc) or "Permission denied" in str(exc):
        return (
            f"permission denied on the Docker socket {socket}: the user running watcher "
            f"({_user()}) is not in the socket's group (`docker`), or the socket's mode keeps that "
            "group out. Add the user to it (`sudo usermod -aG docker USER`, then log in again) or "
            f"check the socket (`ls -l {socket}`: srw-rw---- root docker)"
        )
    return f"cannot reach the Docker engine at {socket} ({_short(exc)}); is dockerd running?"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
