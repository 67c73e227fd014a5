"""Counters of what this process does itself: webhook deliveries, registry polls, registry requests.

These are in-process on purpose: the receiver and the poller run in the process that serves
/metrics, so their counters are always the scraped ones. Labels are bounded sets (endpoint,
outcome, app, registry host): never a delivery id or a tag.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Registered into each receiver's registry (metrics/__init__.py); one per process.
ACTIVITY = CollectorRegistry(auto_describe=True)

WEBHOOK_DELIVERIES = Counter(
    "watcher_webhook_deliveries",
    "Webhook deliveries answered, by endpoint and outcome.",
    ["endpoint", "outcome"],
    registry=ACTIVITY,
)
POLL_RUNS = Counter("watcher_poll_runs", "Registry polls run.", ["app"], registry=ACTIVITY)
POLL_ERRORS = Counter(
    "watcher_poll_errors", "Registry polls that failed (registry or Redis).", ["app"], registry=ACTIVITY
)
REGISTRY_SECONDS = Histogram(
    "watcher_registry_request_duration_seconds",
    "Registry HTTP requests (each attempt), by registry host.",
    ["registry"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=ACTIVITY,
)
REGISTRY_THROTTLED = Counter(
    "watcher_registry_rate_limited",
    "Registry answers 429 Too Many Requests, by registry host.",
    ["registry"],
    registry=ACTIVITY,
)


def delivery(endpoint: str, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(endpoint, outcome).inc()


def poll(app: str, failed: bool) -> None:
    POLL_RUNS.labels(app).inc()
    if failed:
        POLL_ERRORS.labels(app).inc()


def registry_request(host: str, seconds: float, status: int | None) -> None:
    """One attempt's latency; `status` None: no answer (network error, timeout)."""
    REGISTRY_SECONDS.labels(host).observe(seconds)
    if status == 429:
        REGISTRY_THROTTLED.labels(host).inc()
