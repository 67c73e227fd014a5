"""What a Swarm manager says about a stack's services and tasks (docker SDK), and the two stack
commands the SDK lacks (`docker stack deploy`, `docker stack rm`, as argv, never a shell).

A colour's *instances* are read per replica slot: the slot's newest task, with as restarts the
tasks of the slot that failed or were rejected before it (a crash loop looks `running` between two
replacements), and a service scaled to 0 as one instance `exited` (retained, as a stopped compose
container is). A task still `starting` has not passed its healthcheck (Swarm reports `running`
only then, and only then is it in `tasks.<service>` DNS): it is `created`, health `starting`.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from watcher.backends.containers import DOCKER_DOWN, Containers, _short
from watcher.backends.instance import Instance
from watcher.errors import DockerUnavailable, WatcherError

STACK_LABEL = "com.docker.stack.namespace"
#: Task states on the way to `running`.
STARTING = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
#: Task states of a task that ended while its service wanted it: a replacement follows (a
#: crash, a rejection such as "No such image", or a healthcheck that failed: Swarm stops that
#: container, and one that exits 0 on SIGTERM ends `complete`). Not `shutdown`: a task moved
#: off a drained node, or scaled away, was stopped on purpose.
BROKEN = frozenset({"failed", "rejected", "orphaned", "complete"})
#: Task states of a task whose container is gone (or never ran).
ENDED = BROKEN | {"shutdown", "remove"}


class StackError(WatcherError):
    """`docker stack deploy` or `rm` failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class SwarmService:
    """One service of a stack: its name in the stack, its ID and the replicas it wants."""

    id: str
    name: str  # the stack's key (`web`), not Swarm's `<stack>_web`
    full_name: str
    replicas: int | None  # None: global mode
    image: str


class SwarmEngine(Containers):
    """The Docker engine of a Swarm manager: the containers view, and services and tasks."""

    def cluster_id(self) -> str:
        """The swarm's ID: a colour's tasks live on the cluster, not on the engine asked."""
        swarm = self._info_of_engine().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise DockerUnavailable(
                'platform = "swarm" needs this Docker engine to be a swarm manager '
                f"(state {swarm.get('LocalNodeState') or 'inactive'}, manager: {bool(swarm.get('ControlAvailable'))}): "
                "run watcher on a manager node, or point DOCKER_HOST at one"
            )
        return str((swarm.get("Cluster") or {}).get("ID") or "")

    def services(self, stack: str) -> list[SwarmService]:
        try:
            found = self.client.api.services(filters={"label": f"{STACK_LABEL}={stack}"})
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc
        out = []
        for spec in found:
            full = spec["Spec"]["Name"]
            mode = spec["Spec"].get("Mode") or {}
            replicated = mode.get("Replicated")
            image = ((spec["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
            out.append(
                SwarmService(
                    id=spec["ID"],
                    name=full.removeprefix(f"{stack}_"),
                    full_name=full,
                    replicas=int(replicated.get("Replicas", 1)) if replicated is not None else None,
                    image=image,
                )
            )
        return sorted(out, key=lambda s: s.name)

    def instances(self, stack: str, services: list[SwarmService] | None = None) -> list[Instance]:
        """The stack's instances: one per replica slot (per node in global mode)."""
        services = self.services(stack) if services is None else services
        if not services:
            return []
        try:
            tasks = self.client.api.tasks(filters={"service": [s.id for s in services]})
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc
        nodes = self.node_names()
        found: list[Instance] = []
        for service in services:
            mine = [t for t in tasks if t.get("ServiceID") == service.id]
            if service.replicas == 0:
                found.append(_scaled_to_zero(service))
                continue
            slots: dict[str, list[dict]] = {}
            for task in mine:
                slots.setdefault(str(task.get("Slot") or task.get("NodeID") or ""), []).append(task)
            for slot, history in sorted(slots.items()):
                history.sort(key=lambda t: t.get("CreatedAt", ""))
                current = [t for t in history if t.get("DesiredState") == "running"]
                if service.replicas is not None and not current and int(slot or 0) > service.replicas:
                    continue  # a slot scaled away
                newest = (current or history)[-1]
                failed = sum(1 for t in history if _state(t) in BROKEN and t is not newest)
                found.append(
                    replace(
                        _instance(service, slot, newest, failed), node=nodes.get(newest.get("NodeID"), "")
                    )
                )
            wanted = service.replicas or 0
            for slot in range(1, wanted + 1):
                if str(slot) not in slots:
                    found.append(_placeholder(service, str(slot)))
        return sorted(found, key=lambda i: i.name)

    def live_tasks(self, stack: str) -> int:
        """How many of the stack's tasks have not ended (a task being stopped still runs its
        container, on the edge network and in its service's DNS, until it has)."""
        services = self.services(stack)
        if not services:
            return 0
        try:
            tasks = self.client.api.tasks(filters={"service": [s.id for s in services]})
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc
        return sum(1 for t in tasks if _state(t) not in ENDED)

    def node_names(self) -> dict[str, str]:
        """Node ID -> hostname, for `status` (tasks per node)."""
        try:
            return {
                n["ID"]: (n.get("Description") or {}).get("Hostname", n["ID"][:12])
                for n in self.client.api.nodes()
            }
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc

    def scale(self, service: SwarmService, replicas: int) -> None:
        try:
            self.client.services.get(service.id).scale(replicas)
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc

    def networks(self, stack: str) -> list[str]:
        try:
            return [n["Name"] for n in self.client.api.networks(filters={"label": f"{STACK_LABEL}={stack}"})]
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc

    def ensure_network(self, name: str) -> None:
        """The edge network: an attachable overlay the edge Caddy joins too."""
        try:
            if not self.client.api.networks(names=[name]):
                self.client.api.create_network(name, driver="overlay", attachable=True)
        except DOCKER_DOWN as exc:
            raise DockerUnavailable(f"Docker stopped answering ({_short(exc)})") from exc

    def task_errors(self, stack: str) -> list[str]:
        """`<task>: <state>: <error>` of the stack's tasks that failed or were rejected, newest first."""
        services = self.services(stack)
        if not services:
            return []
        tasks = self.client.api.tasks(filters={"service": [s.id for s in services]})
        names = {s.id: s.full_name for s in services}
        broken = sorted(
            (t for t in tasks if _state(t) in BROKEN), key=lambda t: t.get("CreatedAt", ""), reverse=True
        )
        return [f"{names.get(t.get('ServiceID'), '?')}.{t.get('Slot', '')}: {_why(t)}" for t in broken]


def stack_command(args: list[str], env: dict[str, str], *, cwd: Path, timeout: float = 300.0) -> str:
    """`docker stack <args>` against the manager DOCKER_HOST names."""
    argv = ["docker", "stack", *args]
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise DockerUnavailable("the docker CLI is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"docker stack {' '.join(args)} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip().splitlines()
        raise StackError(
            f"docker stack {' '.join(args)} failed: {' | '.join(line.strip() for line in output[-6:])}"
        )
    return proc.stdout


def _why(task: dict) -> str:
    """What ended a task Swarm replaces, in its words."""
    status = task.get("Status") or {}
    if _state(task) == "complete":
        return "stopped while wanted (its healthcheck failed, or it exited 0)"
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return f"{_state(task)}: {status.get('Err') or status.get('Message', '')}" + (
        f" (exit {code})" if code else ""
    )


def _state(task: dict) -> str:
    return str((task.get("Status") or {}).get("State") or "unknown")


def _split(image: str) -> tuple[str, str]:
    """`repo:tag@sha256:...` -> (`repo:tag`, `sha256:...`)."""
    ref, _, digest = image.partition("@")
    return ref, digest


def _instance(service: SwarmService, slot: str, task: dict, failed: int) -> Instance:
    status = task.get("Status") or {}
    state = _state(task)
    image, digest = _split(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image", ""))
    checked = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Healthcheck") or {}
    has_check = bool(checked) and checked.get("Test") != ["NONE"]
    if state == "running":  # with a healthcheck, Swarm says so once it passed
        shown, health = "running", ("healthy" if has_check else None)
    elif state in STARTING:
        shown, health = "created", "starting"
    else:  # failed, rejected, shutdown, complete...
        shown, health = "exited", None
    addresses = tuple(
        address.split("/", 1)[0]
        for attachment in task.get("NetworksAttachments") or []
        for address in attachment.get("Addresses") or []
    )
    exit_code = int((status.get("ContainerStatus") or {}).get("ExitCode") or 0)
    if state in ("rejected", "failed") and not exit_code:
        exit_code = 1
    return Instance(
        id=f"{service.full_name}.{slot}",
        name=f"{service.full_name}.{slot}",
        service=service.name,
        image=image,
        image_id=digest,
        state=shown,
        health=health,
        exit_code=exit_code,
        restart_count=failed,
        addresses=addresses,
        up_for=_since(status.get("Timestamp", "")) if shown == "running" else None,
        probe=f"{state}: {status.get('Err')}" if status.get("Err") else "",
    )


def _scaled_to_zero(service: SwarmService) -> Instance:
    image, digest = _split(service.image)
    return Instance(
        id=service.id,
        name=f"{service.full_name} (scaled to 0)",
        service=service.name,
        image=image,
        image_id=digest,
        state="exited",
        health=None,
        exit_code=0,
    )


def _placeholder(service: SwarmService, slot: str) -> Instance:
    image, digest = _split(service.image)
    return Instance(
        id=f"{service.full_name}.{slot}",
        name=f"{service.full_name}.{slot} (no task yet)",
        service=service.name,
        image=image,
        image_id=digest,
        state="created",
        health="starting",
        exit_code=0,
    )


def _since(stamp: str) -> float | None:
    try:
        return max(0.0, time.time() - datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp())
    except ValueError:
        return None
