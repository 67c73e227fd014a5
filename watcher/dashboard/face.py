"""What the dashboard's pages and actions reach: the Host `watcher serve` already holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort

from watcher.host import App, Host


@dataclass(frozen=True)
class Face:
    host: Host
    status: Callable[[str], dict[str, Any]]

    def app(self, name: str) -> App:
        """The configured app, or a 404 page (a URL names it)."""
        app = self.host.apps.get(name)
        if app is None:
            abort(404, f"no app {name!r} is configured")
        return app
