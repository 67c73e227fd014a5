"""Fixtures of the end-to-end tests that run the real engine behind the real Caddy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.stack import Stack
from watcher.queue.connection import connect


@pytest.fixture
def queued(stack: Stack, redis_url: str) -> Iterator[Stack]:
    """The stack configured with Redis (so `watcher deploy` takes the Redis lock too, and a
    `watcher worker` can run its jobs); the app's keys are removed afterwards."""
    stack.write_config(extra=f'[redis]\nurl = "{redis_url}"\n')
    client = connect(redis_url)
    try:
        yield stack
    finally:
        for found in client.scan_iter(f"watcher:{stack.name}:*"):
            client.delete(found)
