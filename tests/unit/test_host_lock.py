"""The host lock: one deploy/rollback/cleanup/reset at a time, released however its holder exits.

flock(2) belongs to an open file description, so the competing holder runs in a subprocess, as a
second `watcher` would.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.errors import LockBusy
from watcher.host_lock import HostLock

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from watcher.host_lock import HostLock
    lock = HostLock(Path(sys.argv[1])).acquire(sys.argv[2])
    print("held", flush=True)
    hold = float(sys.argv[3])
    time.sleep(hold)
    lock.release()
    print("released", flush=True)
    time.sleep(60)  # stay alive: the release, not the exit, must free the lock
""")


class Holder:
    def __init__(self, path: Path, purpose: str, hold: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), purpose, str(hold)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        line = self.proc.stdout.readline()
        assert line == "held\n", f"holder did not take the lock: {line!r}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "lock"


def test_acquire_and_release(lock_path: Path) -> None:
    lock = HostLock(lock_path).acquire("deploy 1.0")
    lock.check()
    lock.release()
    with pytest.raises(LockBusy, match="not held"):
        lock.check()
    lock.release()  # idempotent
    assert HostLock(lock_path).holder() is None


def test_context_manager_releases(lock_path: Path) -> None:
    with HostLock(lock_path).acquire("cleanup") as lock:
        lock.check()
    assert HostLock(lock_path).holder() is None


def test_holder_is_none_when_free(lock_path: Path) -> None:
    assert HostLock(lock_path).holder() is None  # no file at all
    HostLock(lock_path).acquire("deploy 1.0").release()
    assert lock_path.exists()
    assert HostLock(lock_path).holder() is None  # file left behind, nobody holds it


def test_second_acquire_fails_naming_the_holder(lock_path: Path, holders: list[Holder]) -> None:
    holder = Holder(lock_path, "deploy 2.0", hold=60)
    holders.append(holder)
    info = HostLock(lock_path).holder()
    assert info is not None
    assert info["pid"] == holder.pid and info["purpose"] == "deploy 2.0"

    started = time.monotonic()
    with pytest.raises(LockBusy) as caught:
        HostLock(lock_path).acquire("rollback")
    assert time.monotonic() - started < 2  # no wait asked: fail at once
    message = str(caught.value)
    assert "deploy 2.0" in message
    assert f"pid {holder.pid}" in message
    assert "--wait-lock" in message
    assert caught.value.exit_code == 3


def test_failed_acquire_does_not_clobber_the_holder_record(lock_path: Path, holders: list[Holder]) -> None:
    holder = Holder(lock_path, "deploy 2.0", hold=60)
    holders.append(holder)
    with pytest.raises(LockBusy):
        HostLock(lock_path).acquire("reset")
    assert HostLock(lock_path).holder()["purpose"] == "deploy 2.0"


def test_lock_released_when_holder_is_killed(lock_path: Path, holders: list[Holder]) -> None:
    holder = Holder(lock_path, "deploy 3.0", hold=60)
    holders.append(holder)
    with pytest.raises(LockBusy):
        HostLock(lock_path).acquire("deploy 4.0")
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(timeout=10)
    assert HostLock(lock_path).holder() is None  # the stale record does not count
    lock = HostLock(lock_path).acquire("deploy 4.0")
    try:
        assert HostLock(lock_path).holder()["purpose"] == "deploy 4.0"
    finally:
        lock.release()


def test_wait_succeeds_when_the_holder_releases_in_time(lock_path: Path, holders: list[Holder]) -> None:
    holder = Holder(lock_path, "deploy 5.0", hold=1.0)
    holders.append(holder)
    started = time.monotonic()
    lock = HostLock(lock_path).acquire("deploy 6.0", wait=15)
    waited = time.monotonic() - started
    try:
        assert 0.3 < waited < 10
        assert holder.proc.poll() is None  # released, not exited
        info = HostLock(lock_path).holder()
        assert info["purpose"] == "deploy 6.0" and info["pid"] == os.getpid()
    finally:
        lock.release()


def test_wait_gives_up_after_the_wait(lock_path: Path, holders: list[Holder]) -> None:
    holder = Holder(lock_path, "deploy 7.0", hold=60)
    holders.append(holder)
    started = time.monotonic()
    with pytest.raises(LockBusy, match="deploy 7.0"):
        HostLock(lock_path).acquire("deploy 8.0", wait=1.0)
    assert 0.9 < time.monotonic() - started < 5


def test_a_full_disk_leaves_the_holder_unnamed_but_the_lock_held(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("watcher.host_lock.os.write", full)
    lock = HostLock(lock_path).acquire("deploy v2")
    try:
        assert lock.holder() == {"pid": "?"}  # held, by somebody it cannot name
        with pytest.raises(LockBusy):
            HostLock(lock_path).acquire("deploy v3")
    finally:
        lock.release()
    assert lock.holder() is None
