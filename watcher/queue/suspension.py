"""Pause and resume the deploy queue of one app.

While paused, workers finish the job in flight (and take over one whose worker died) but start
no new one; new requests keep arriving and coalescing, so resume runs only the newest. The
pause is a Redis hash (`watcher:<app>:paused`: by, since, reason), persisted like the queue,
so it survives worker and Redis restarts. The CLI and, later, the HTTP endpoints call these.
"""

from __future__ import annotations

from typing import Any

import redis

from watcher.engine.state import now_iso
from watcher.queue.connection import key


class Suspension:
    def __init__(self, client: redis.Redis, app: str, prefix: str = "") -> None:
        self.client = client
        self.app = app
        self.key = key(app, "paused", prefix=prefix)
        self.wake = key(app, "wake", prefix=prefix)

    def pause(self, *, by: str, reason: str = "") -> dict[str, Any]:
        """Pause (again: the newest reason and author win); returns the pause."""
        info = {"by": by, "since": now_iso(), "reason": reason}
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key).hset(self.key, mapping=info).execute()
        return info

    def resume(self) -> dict[str, Any] | None:
        """Lift the pause and wake an idle worker; returns the pause lifted (None if none)."""
        with self.client.pipeline(transaction=True) as pipe:
            info, _, _, _ = (pipe.hgetall(self.key).delete(self.key)
                             .lpush(self.wake, "resume").ltrim(self.wake, 0, 0).execute())
        return info or None

    def paused(self) -> dict[str, Any] | None:
        """The pause in force (by, since, reason), or None."""
        return self.client.hgetall(self.key) or None
