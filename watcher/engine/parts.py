"""The engine as the phases that act on a whole run (promotion, unwind) see it: its parts and the
second half of a deploy. A Protocol, so those phases sit below engine/deployment.py, which calls
them, instead of importing it back.
"""

from __future__ import annotations

from typing import Protocol

from watcher.backends.access_log import AccessLog
from watcher.backends.caddy import CaddyAdmin
from watcher.config import AppConfig
from watcher.engine.ledger import Ledger
from watcher.engine.reconcile import View
from watcher.engine.run import DeployResult, Run
from watcher.engine.state import StateStore
from watcher.engine.switch import TrafficSwitch
from watcher.platforms.base import ColorStack, Platform
from watcher.progress import Progress


class Engine(Protocol):
    config: AppConfig
    progress: Progress
    platform: Platform
    switch: TrafficSwitch
    store: StateStore
    ledger: Ledger
    caddy: CaddyAdmin
    access_log: AccessLog | None

    def view(self) -> View: ...

    def go_live(self, run: Run, view: View) -> DeployResult:
        """Switch to the run's planned target, verify, finish (engine/deployment.py)."""
        ...

    def retire(self, old: ColorStack, new: ColorStack) -> bool:
        """Drain `old`, then stop or remove it unless `new` is no longer healthy (deployment.py)."""
        ...
