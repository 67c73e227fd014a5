"""The bake: after the switch, the new colour's answers (from Caddy's access log) are compared
with the old colour's in the minutes before it; a version that fails more, or much slower, is
switched back while the old colour still runs.

Errors are judged as they come: the deploy fails as soon as the new colour's 5xx rate is above
the old colour's plus `max_error_rate` beyond chance (a one-sided binomial test at
`SIGNIFICANCE`, checked every second), so a 5 %-errors version goes back within a second or two
at a few hundred requests per second, while two unlucky errors in the first 50 requests of a
healthy app do not roll it back. Latency is judged once, on the whole bake (a cold start's first
slow answers are not a verdict): the new p99 must stay within `max_latency_ratio` times the old
one (and `LATENCY_FLOOR` above it). Neither judges fewer than `min_requests` requests.
"""

from __future__ import annotations

import math

from watcher.backends.access_log import AccessLog
from watcher.config import AppConfig, BakeSettings
from watcher.engine.receipt import Tally, tally
from watcher.progress import Progress

SIGNIFICANCE = 0.001
LATENCY_FLOOR_MS = 250.0
#: Requests are read this long after they finished: Caddy writes a line as a request ends, so by
#: then every line of that moment is in the file.
LAG = 1.0


def error_verdict(settings: BakeSettings, before: Tally, after: Tally, old: str, new: str) -> str | None:
    """Why the new colour fails too often (None: it does not, or it is too early to say)."""
    if settings.max_error_rate is None or after.requests < settings.min_requests:
        return None
    old_rate = before.failed / before.requests if before.requests else 0.0
    allowed = min(1.0, old_rate + settings.max_error_rate)
    if allowed >= 1.0 or not above(after.failed, after.requests, allowed):
        return None
    return (
        f"{new} answered {after.failed:,} of {after.requests:,} requests with an error "
        f"({after.failed / after.requests:.1%}), above the allowed {allowed:.1%} "
        f"({old}'s {old_rate:.1%} before the switch + {settings.max_error_rate:.1%})"
    )


def latency_verdict(settings: BakeSettings, before: Tally, after: Tally, old: str, new: str) -> str | None:
    """Why the new colour is too slow (None: it is not, or there is too little to compare)."""
    ratio = settings.max_latency_ratio
    if ratio is None or min(before.requests, after.requests) < settings.min_requests:
        return None
    old_p99, new_p99 = before.percentile_ms(99), after.percentile_ms(99)
    if old_p99 is None or new_p99 is None:
        return None
    if new_p99 <= max(old_p99 * ratio, old_p99 + LATENCY_FLOOR_MS):
        return None
    return (
        f"{new}'s p99 latency is {new_p99:,.0f} ms over {after.requests:,} requests, more than "
        f"{ratio:g}x {old}'s {old_p99:,.0f} ms before the switch"
    )


def above(failures: int, trials: int, rate: float) -> bool:
    """True when `failures` of `trials` is more than `rate` beyond chance: P(X >= failures) for
    X ~ Binomial(trials, rate) is below SIGNIFICANCE."""
    if failures == 0 or failures <= trials * rate:
        return False
    if rate <= 0.0:
        return True
    return _upper_tail(failures, trials, rate) < SIGNIFICANCE


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p), summed in log space from k up while the terms matter."""
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(
            math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        )
        total += term
        if term < total * 1e-12:
            break
    return total


class Bake:
    """One bake: the old colour's answers before `moved_at`, the new colour's since, read as they
    come (each line once) from Caddy's access log."""

    def __init__(
        self,
        settings: BakeSettings,
        log: AccessLog,
        app: str,
        old: str | None,
        new: str,
        moved_at: float,
        duration: float,
    ) -> None:
        self.settings, self.log, self.app, self.new, self.duration = settings, log, app, new, duration
        self.old = old or "nothing"
        self.before = tally(log.served(app, moved_at - settings.baseline, moved_at), old) if old else Tally()
        self.after = Tally()
        self.read_until = moved_at

    def check(self, now: float, final: bool = False) -> str | None:
        """Why the new colour must go back (None: it may stay). `final` also judges latency."""
        until = now if final else now - LAG
        if until > self.read_until:
            for served in self.log.served(self.app, self.read_until, until):
                if served.color == self.new and not served.probe:
                    self.after.add(served)
            self.read_until = until
        verdict = error_verdict(self.settings, self.before, self.after, self.old, self.new)
        if verdict is None and final:
            verdict = latency_verdict(self.settings, self.before, self.after, self.old, self.new)
        return f"bake: {verdict}" if verdict else None


def start(
    config: AppConfig,
    log: AccessLog | None,
    kind: str,
    old: str | None,
    new: str,
    moved_at: float,
    progress: Progress,
) -> Bake | None:
    """The bake of a deploy that has a colour to go back to (a rollback is the way back itself,
    and a first deploy has nothing to fall back on), when Caddy logs what it serves."""
    settings = config.bake
    duration = config.verify.window if settings.duration is None else settings.duration
    if kind != "deploy" or old is None or not settings.judges or duration <= 0:
        return None
    if log is None or not log.exists():
        progress.say(
            f"  note: no bake: Caddy writes no access log at {config.caddy.access_log} "
            "(regenerate the Caddyfile with `watcher caddyfile`)"
        )
        return None
    return Bake(settings, log, config.name, old, new, moved_at, duration)
