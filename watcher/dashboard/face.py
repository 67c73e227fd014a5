"""What the dashboard's pages and actions reach: the functions `watcher serve` already holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort

from watcher.queue.queue import DeployQueue
from watcher.triggers.dispatch import App, Triggers
from watcher.triggers.sink import Suspension


@dataclass(frozen=True)
class Face:
    triggers: Triggers
    suspension: Suspension
    status: Callable[[str], dict[str, Any]]
    queue: Callable[[str], DeployQueue]

    def app(self, name: str) -> App:
        """The configured app, or a 404 page (a URL names it)."""
        app = self.triggers.app(name)
        if app is None:
            abort(404, f"no app {name!r} is configured")
        return app
