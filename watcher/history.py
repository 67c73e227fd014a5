"""The audit trail as people read it: `watcher history` (finished jobs of one app or of every
app, newest first, optionally since a time) and `watcher show JOB` (one job whole: who asked, the
digest, each phase and how long it took, the outcome, the versions before and after).

The records themselves are the queue's (watcher/queue/job.py, kept and trimmed by
watcher/queue/queue.py); this module only selects and formats them, for the CLI and anyone else.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from watcher.engine import receipt as receipts
from watcher.engine.receipt import Receipt
from watcher.errors import UsageError
from watcher.queue.job import Job, iso
from watcher.queue.queue import DeployQueue

_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: a span back from now (`90m`, `6h`, `7d`, `2w`) or an ISO date or time (UTC
    unless it says otherwise: `2026-12-01`, `2026-12-01T08:00`, `2026-12-01T08:00+01:00`)."""
    now = time.time() if now is None else now
    value = text.strip()
    ago = _AGO.match(value)
    if ago:
        return now - float(ago.group(1)) * _AGO_UNITS[ago.group(2)]
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since: expected a span like 6h or 7d, or a date like 2026-12-01 or "
            f"2026-12-01T08:00, got {text!r}"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def newest_first(queues: Iterable[DeployQueue], limit: int, since: float | None) -> list[Job]:
    """The finished jobs of every queue merged, newest end first, at most `limit`."""
    jobs = [job for queue in queues for job in queue.history(limit, since=since)]
    return sorted(jobs, key=lambda job: job.finished or 0.0, reverse=True)[:limit]


def find(queues: Iterable[DeployQueue], job_id: str) -> Job:
    """Job `job_id` of the one app that has it (ids count per app: several may)."""
    found = [job for job in (queue.get(job_id) for queue in queues) if job is not None]
    if not found:
        raise UsageError(f"no job {job_id} (it may be older than the history keeps: see `watcher history`)")
    if len(found) > 1:
        raise UsageError(
            f"job {job_id} exists in apps {', '.join(j.app for j in found)}: say which with --app"
        )
    return found[0]


def show(job: Job) -> str:
    """Every recorded fact of one job, then its phases in the order they ran."""
    rows = [
        ("job", f"{job.id} ({job.app})"),
        ("kind", job.kind),
        ("version", job.version),
        ("digest", job.digest or "-"),
        ("asked by", f"{job.source}: {job.requested_by}" if job.requested_by else job.source),
        ("queued", iso(job.created)),
        ("started", iso(job.started) or "-"),
        ("ended", iso(job.finished) or "-"),
        ("duration", f"{job.duration:.1f}s" if job.duration is not None else "-"),
        ("outcome", job.status.value),
        ("reason" if job.reason else "message", job.reason or job.message or "-"),
        ("live before", job.before or "-"),
        ("live after", job.after or "-"),
        (
            "worker",
            f"{job.worker or '-'} (attempt {job.attempts}, fence {job.fence if job.fence is not None else '-'})",
        ),
    ]
    if job.phase and not job.status.final:
        rows.append(("phase now", job.phase))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if job.phases:
        lines.append("phases:")
        lines += [f"  {name:<14} {seconds:8.2f}s" for name, seconds in job.phases.items()]
        lines.append(f"  {'total':<14} {sum(job.phases.values()):8.2f}s")
    if job.receipt:
        lines += receipt_lines(Receipt.from_dict(job.receipt))
    return "\n".join(lines)


def receipt_lines(receipt: Receipt) -> list[str]:
    """The traffic receipt as a table: per colour, what Caddy served from LEAD before the move."""
    lines = [
        f"traffic ({receipt.summary()}; Caddy's access log, {receipts.LEAD:g}s before the move to the end):"
    ]
    for color, tally in receipt.colors.items():
        classes = ", ".join(f"{kind} {count:,}" for kind, count in tally["classes"].items())
        lines.append(
            f"  {color:<9} {tally['requests']:>8,} requests, {tally['failed']:,} failed ({classes}); "
            f"p50 {tally['p50_ms']} ms, p99 {tally['p99_ms']} ms"
        )
    if receipt.probes:
        lines.append(f"  (and {receipt.probes:,} of watcher's own verification requests)")
    return lines
