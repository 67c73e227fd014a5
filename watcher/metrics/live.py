"""What serves each app, read at scrape time from the route file and the state beside it (the
one source `watcher status` reads too): `watcher_live_info{app,color,version,digest} 1`; and
whether Caddy serves it at all, as `status` judges it: `watcher_proxy_up{app}` 1 or 0.

The version and digest are labels only here, in an `_info` metric: one series per app at a
time, so a tag never multiplies the series of a counter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from watcher.errors import WatcherError

if TYPE_CHECKING:
    from watcher.host import App


class LiveCollector(Collector):
    def __init__(self, apps: Sequence[App]) -> None:
        self.apps = apps

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "watcher_live_info",
            "1 for the colour, version and digest that serve each app.",
            labels=["app", "color", "version", "digest"],
        )
        for app in self.apps:
            try:
                live = app.live()
            except (OSError, WatcherError):
                continue  # an unreadable state is `watcher status`'s to explain; no guess here
            if live is not None:
                info.add_metric([app.name, live.color.value, live.version, live.digest or ""], 1)
        yield info
        up = GaugeMetricFamily(
            "watcher_proxy_up",
            "1 while Caddy takes connections at the app's site (its verify URL's address); 0: nothing is served.",
            labels=["app"],
        )
        for app in self.apps:
            up.add_metric([app.name], 1 if app.proxy().up else 0)
        yield up
