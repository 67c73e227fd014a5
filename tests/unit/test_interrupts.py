"""Ctrl-C / SIGTERM: an exception that unwinds every phase, held back while cleanup runs so a
second signal cannot leave a half-switched deployment."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from watcher import interrupts
from watcher.errors import Interrupted


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        interrupts._deferred.clear()
        interrupts._shield_depth = 0


def deliver(signum: int) -> None:
    """Send a signal to ourselves and give the interpreter a few bytecodes to run the handler."""
    os.kill(os.getpid(), signum)
    for _ in range(100):
        time.sleep(0.001)


def test_signal_raises_interrupted() -> None:
    with pytest.raises(Interrupted) as caught:
        deliver(signal.SIGTERM)
    assert caught.value.signum == signal.SIGTERM


def test_interrupted_is_not_an_exception() -> None:
    # `except Exception` in a phase must never swallow Ctrl-C.
    assert not issubclass(Interrupted, Exception)
    with pytest.raises(Interrupted):
        try:
            deliver(signal.SIGINT)
        except Exception:  # noqa: BLE001 - the point of the test
            pytest.fail("Interrupted was caught by `except Exception`")


def test_shielded_defers_sigterm_until_the_block_ends() -> None:
    finished = []
    with pytest.raises(Interrupted) as caught:
        with interrupts.shielded():
            deliver(signal.SIGTERM)
            finished.append("cleanup ran to the end")
    assert finished == ["cleanup ran to the end"]
    assert caught.value.signum == signal.SIGTERM
    assert interrupts._deferred == []
    # Afterwards signals act at once again.
    with pytest.raises(Interrupted):
        deliver(signal.SIGINT)


def test_shielded_reports_the_first_signal() -> None:
    with pytest.raises(Interrupted) as caught:
        with interrupts.shielded():
            deliver(signal.SIGINT)
            deliver(signal.SIGTERM)
    assert caught.value.signum == signal.SIGINT


def test_nested_shields_raise_only_at_the_outermost() -> None:
    steps = []
    with pytest.raises(Interrupted):
        with interrupts.shielded():
            with interrupts.shielded():
                deliver(signal.SIGTERM)
            steps.append("after inner block")
    assert steps == ["after inner block"]


def test_shielded_without_signal_is_transparent() -> None:
    with interrupts.shielded():
        value = 42
    assert value == 42
    with pytest.raises(ValueError):
        with interrupts.shielded():
            raise ValueError("the block's own error passes through")
