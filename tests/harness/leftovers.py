"""Docker objects of test stacks: a stack's own at its end, and those runs before this one left.

Docker hands out 31 bridge networks by default, and a CI machine keeps its engine between runs:
a run killed mid-test, or a stack whose app projects its cleanup missed, would use them up a few
at a time until `docker compose up` fails with "could not find an available, non-overlapping
IPv4 address pool". So every stack removes everything of every compose project named after it
(its colours, its shared services, the projects of the other apps it hosts), and each run first
removes the stacks whose creator is no longer running.

A stack's owner is the process that created it: `owner` in its root holds that process's pid and
start time (so a reused pid is not mistaken for it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker

PROJECT = "com.docker.compose.project"
STACK_NAME = re.compile(
    r"w[at][0-9a-f]{8}"
)  # Stack.create's and the adoption test's; apps and colours add suffixes
OWNER = "owner"


@contextlib.contextmanager
def machine_lock(path: Path) -> Iterator[None]:
    """One process of this machine at a time (xdist workers, other runs) inside the block: a
    flock on ``path``, which a killed holder frees."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def claim(root: Path) -> None:
    """Mark `root` as this process's stack."""
    (root / OWNER).write_text(f"{os.getpid()} {process_started(os.getpid())}\n")


def _owned(name: str) -> bool:
    """Whether some running process still owns the stack `name`."""
    for root in Path(tempfile.gettempdir()).glob(f"watcher-{name}-*"):
        try:
            pid, started = (root / OWNER).read_text().split()
        except (OSError, ValueError):
            continue
        if process_started(int(pid)) == started:
            return True
    return False


def remove_projects(match: Callable[[str], bool]) -> list[str]:
    """Force-remove the containers, then the networks and volumes, of every compose project whose
    name `match`es; return those projects' names."""
    api = docker.from_env(timeout=120)
    removed: set[str] = set()
    labelled = {"label": PROJECT}
    try:
        listings = (  # containers first: a network or volume in use cannot go
            (
                # another run's (another xdist worker's) container may be gone once listed
                api.containers.list(all=True, filters=labelled, ignore_removed=True),
                lambda c: c.labels,
                lambda c: c.remove(force=True, v=True),
            ),
            (
                api.networks.list(filters=labelled),
                lambda n: n.attrs.get("Labels") or {},
                lambda n: n.remove(),
            ),
            (
                api.volumes.list(filters=labelled),
                lambda v: v.attrs.get("Labels") or {},
                lambda v: v.remove(force=True),
            ),
        )
        for found_all, labels_of, remove in listings:
            for found in found_all:
                project = labels_of(found).get(PROJECT, "")
                if match(project):
                    try:
                        remove(found)
                    except docker.errors.NotFound:
                        pass
                    removed.add(project)
    finally:
        api.close()
    return sorted(removed)


def remove_stack(name: str) -> None:
    """Everything of the compose projects named after the stack `name`."""
    remove_projects(lambda project: project.startswith(name))


def sweep() -> list[str]:
    """Remove the stacks of earlier runs (their creator is gone); return their projects' names.
    One process of the machine at a time: xdist workers all sweep as they start, and two removing
    the same container get "removal already in progress", then a network still in use."""

    def left_over(project: str) -> bool:
        found = STACK_NAME.match(project)
        return found is not None and not _owned(found.group())

    with machine_lock(Path(tempfile.gettempdir()) / "watcher-test-sweep.lock"):
        return remove_projects(left_over)
