"""`[promote]`: whether a deploy switches by itself or waits, healthy and previewable, for
`watcher promote` (and how long it may wait before it is removed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromoteSettings:
    manual: bool = False
    timeout: float = 3600.0  # seconds an unpromoted deploy waits before its colour is removed
