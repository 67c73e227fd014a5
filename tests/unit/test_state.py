"""The recorded state (state.json, .deployment-color) and the atomic writes under it: a crash
or a full disk leaves the old content or the new one, never a torn file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from watcher import atomic
from watcher.atomic import write_atomic
from watcher.engine.state import UNVERIFIED, DeployState, Pending, Release, StateStore
from watcher.errors import WatcherError
from watcher.platforms.color import Color


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / ".watcher", tmp_path / ".deployment-color")


def test_no_state_file_is_an_empty_state(store: StateStore) -> None:
    assert store.load() == DeployState()


def test_round_trip(store: StateStore) -> None:
    state = DeployState(
        live=Release(Color.GREEN, "2.0", "2024-02-01T00:00:00+00:00", how=UNVERIFIED),
        previous=Release(Color.BLUE, "1.0", "2024-01-01T00:00:00+00:00"),
        pending=Pending(
            "deploy", "2.1", Color.BLUE, "pull", pid=99, host="box", started="2024-03-01T00:00:00+00:00"
        ),
    )
    saved = store.save(state)
    assert saved.updated  # stamped on save
    loaded = store.load()
    assert loaded == saved
    assert (loaded.live, loaded.previous, loaded.pending) == (state.live, state.previous, state.pending)
    raw = json.loads(store.path.read_text())
    assert raw["live"] == {
        "color": "green",
        "version": "2.0",
        "since": "2024-02-01T00:00:00+00:00",
        "digest": None,
        "image": None,
        "how": "left serving unverified",
    }
    assert raw["previous"]["how"] is None  # not recorded: a state written before `how` reads the same
    assert raw["pending"]["phase"] == "pull" and raw["pending"]["color"] == "blue"


def test_deployment_color_follows_the_live_colour(store: StateStore) -> None:
    store.save(DeployState(live=Release(Color.BLUE, "1.0")))
    assert store.deployment_color_file.read_text() == "blue\n"
    store.save(DeployState(live=Release(Color.GREEN, "2.0"), previous=Release(Color.BLUE, "1.0")))
    assert store.deployment_color_file.read_text() == "green\n"
    store.save(DeployState())
    assert not store.deployment_color_file.exists()
    assert store.path.exists()


def test_remove(store: StateStore) -> None:
    store.save(DeployState(live=Release(Color.BLUE, "1.0")))
    store.remove()
    assert not store.path.exists() and not store.deployment_color_file.exists()
    store.remove()  # idempotent
    assert store.load() == DeployState()


@pytest.mark.parametrize("content", ["{not json", "", "\x00\x01"])
def test_unreadable_state_is_a_clear_error(store: StateStore, content: str) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(content)
    with pytest.raises(WatcherError) as caught:
        store.load()
    message = str(caught.value)
    assert str(store.path) in message
    assert "unreadable" in message and "watcher status" in message


def test_state_path_that_is_a_directory_is_a_clear_error(store: StateStore) -> None:
    store.path.mkdir(parents=True)
    with pytest.raises(WatcherError, match="unreadable"):
        store.load()


@pytest.mark.parametrize(
    "content", ["[]", "null", '"blue"', '{"live": "blue"}', '{"pending": {"color": "blue", "pid": "abc"}}']
)
def test_wrong_shape_state_is_a_clear_error(store: StateStore, content: str) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(content)
    with pytest.raises(WatcherError, match="unreadable"):
        store.load()


def test_entries_with_unknown_colour_are_dropped(store: StateStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(
        json.dumps(
            {"live": {"color": "purple", "version": "1"}, "previous": {"color": "blue", "version": ""}}
        )
    )
    assert store.load() == DeployState()


# -- write_atomic ---------------------------------------------------------------------------


def leftovers(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f".{name}."))


def test_write_atomic_writes_and_creates_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file"
    write_atomic(target, "hello")
    assert target.read_text() == "hello"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert leftovers(target.parent, "file") == []


@pytest.mark.parametrize("fails", ["fsync", "replace", "write"])
def test_failed_write_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old content")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if fails == "write":
        real_fdopen = os.fdopen

        class Torn:
            """A handle that writes half the data, then fails (a full disk)."""

            def __init__(self, fd: int, *args: object, **kwargs: object) -> None:
                self.inner = real_fdopen(fd, *args, **kwargs)

            def __enter__(self) -> Torn:
                return self

            def __exit__(self, *exc: object) -> None:
                self.inner.close()

            def write(self, data: str) -> None:
                self.inner.write(data[: len(data) // 2])
                self.inner.flush()
                boom()

        monkeypatch.setattr(atomic.os, "fdopen", Torn)
    else:
        monkeypatch.setattr(atomic.os, fails, boom)

    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new content that is much longer than the old one")
    monkeypatch.undo()
    assert target.read_text() == "old content"
    assert leftovers(tmp_path, "state.json") == []


def test_interrupt_mid_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "live"
    write_atomic(target, "blue")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "green")
    monkeypatch.undo()
    assert target.read_text() == "blue"
    assert leftovers(tmp_path, "live") == []


def test_failed_state_save_keeps_the_previous_state(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.save(DeployState(live=Release(Color.BLUE, "1.0")))

    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        store.save(DeployState(live=Release(Color.GREEN, "2.0"), previous=first.live))
    monkeypatch.undo()
    assert store.load() == first
    assert store.deployment_color_file.read_text() == "blue\n"


def full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


def test_a_prepared_state_is_in_force_only_once_committed(store: StateStore) -> None:
    first = store.save(
        DeployState(live=Release(Color.BLUE, "1.0"), pending=Pending("deploy", "2.0", Color.GREEN, "health"))
    )
    prepared = store.prepare(DeployState(live=Release(Color.GREEN, "2.0"), previous=first.live))
    assert store.load() == first and store.deployment_color_file.read_text() == "blue\n"
    assert store.commit(prepared) == store.load()
    assert store.load().live == Release(Color.GREEN, "2.0", prepared.state.live.since)  # type: ignore[union-attr]
    assert store.load().pending is None and store.deployment_color_file.read_text() == "green\n"
    assert not prepared.path.exists()


def test_committing_needs_no_free_space(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record step of a deploy is a commit: a disk that filled up after the prepare (before
    the switch) cannot refuse it, while it refuses every new write."""
    store.save(DeployState(live=Release(Color.BLUE, "1.0")))
    prepared = store.prepare(DeployState(live=Release(Color.GREEN, "2.0")))
    monkeypatch.setattr(atomic.os, "fdopen", full_disk)  # every new file's write fails
    with pytest.raises(OSError, match="No space left"):
        store.save(DeployState(live=Release(Color.BLUE, "3.0")))
    store.deployment_color_file = None  # (it lives in the project directory, not on this disk)
    store.commit(prepared)
    assert store.load() == prepared.state


def test_a_discarded_prepare_is_never_seen(store: StateStore) -> None:
    first = store.save(DeployState(live=Release(Color.BLUE, "1.0")))
    store.prepare(DeployState(live=Release(Color.GREEN, "2.0")))
    store.discard()
    store.discard()  # idempotent
    assert store.load() == first and not store.prepared_path.exists()


def test_a_writer_waits_for_another_between_its_check_and_its_write(store: StateStore) -> None:
    """`writing()` spans a guard check and the write it allows: a second writer (here another
    thread; in life another process) can only write after the first one's write landed."""
    import threading
    import time

    order: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with store.writing():
            inside.set()
            time.sleep(0.3)  # e.g. stopped (SIGSTOP) between its check and its write
            store.save(DeployState(Release(Color.BLUE, "old")))
            order.append("first")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(5)
    with store.writing():
        store.save(DeployState(Release(Color.GREEN, "new")))
        order.append("second")
    thread.join()
    assert order == ["first", "second"]
    assert store.load().live == Release(Color.GREEN, "new", store.load().live.since)  # type: ignore[union-attr]


def test_a_writer_that_never_finishes_is_reported_not_waited_for_forever(store: StateStore) -> None:
    import threading

    held, done = threading.Event(), threading.Event()

    def stuck() -> None:
        with store.writing():
            held.set()
            done.wait(10)

    thread = threading.Thread(target=stuck)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(WatcherError, match="stayed locked for 0.2s"):
            with store.writing(timeout=0.2):
                pytest.fail("entered while another writer held the lock")
    finally:
        done.set()
        thread.join()
