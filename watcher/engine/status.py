"""`status`: the live colour (the route file's) with its health, the rollback target that can
really be reached, each colour's containers, and what differs from the record."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from watcher.backends.caddy import Front, probe
from watcher.engine.deployment import Deployment
from watcher.engine.promotion import expired
from watcher.engine.reconcile import View
from watcher.engine.rollback import RollbackTarget
from watcher.engine.state import AWAITING, Pending, awaiting
from watcher.platforms.color import Color


def status(engine: Deployment, lock_holder: dict[str, Any] | None) -> dict[str, Any]:
    """`lock_holder`: the host lock's, so that the run it holds it for reads as running."""
    view = engine.view(lock_holder)
    live, previous = view.live, view.previous
    target = engine.rollback_target(view)
    pending = view.recorded.pending
    waiting = pending if awaiting(pending) else None
    colors: dict[str, Any] = {}
    for color in Color:
        stack, containers = engine.platform.color(color), view.observed.of(color)
        colors[color.value] = {
            "role": _role(color, view, target, waiting) if containers else "absent",
            "version": stack.version(containers),
            "health": stack.health(containers).state,
            "containers": [{**c.to_dict(), "one_shot": c.service in stack.one_shots} for c in containers],
        }
    front = probe(engine.config.caddy.admin, engine.config.verify.url)
    # Docker's word on Caddy's container, only when its port says it is down: why, and where
    caddies = [] if front.up else engine.platform.proxy_containers(engine.config.caddy.route_file.parent)
    warnings = (
        proxy_faults(engine, front, live is not None, caddies) + view.warnings + upstream_faults(engine)
    )
    return {
        "app": engine.config.name,
        "live_color": live.color.value if live else None,
        "live_version": live.version if live else None,
        "live_since": live.since if live else None,
        "live_digest": live.digest if live else None,
        "live_health": view.live_health.state,
        "live_how": live.how if live else None,
        "proxy": {**front.to_dict(), "containers": caddies},
        "previous_color": previous.color.value if previous else None,
        "previous_version": previous.version if previous else None,
        "rollback": target.to_dict() if target else None,
        "rollback_description": target.describe() if target else None,
        "route": view.route.value if view.route else None,
        "awaiting": None
        if waiting is None
        else {
            "version": waiting.version,
            "color": waiting.color.value,
            "since": waiting.started,
            "until": waiting.until,
            "expired": expired(waiting),
            "digest": waiting.digest,
        },
        "colors": colors,
        "recorded": view.recorded.to_dict(),
        "in_sync": view.in_sync,
        "warnings": warnings,
        "lock": lock_holder,
    }


def _role(color: Color, view: View, target: RollbackTarget | None, waiting: Pending | None) -> str:
    if view.live and view.live.color == color:
        return "live"
    if waiting and waiting.color == color:
        return AWAITING
    if target and target.way == "instant" and target.release.color == color:
        return "rollback target"
    return "idle"


#: What Caddy logs when an app broke HTTP/1.1 (no Content-Length, a keep-alive connection closed
#: under a request): failures that are the app's, with or without a swap.
BROKEN_HTTP = ("aborting with incomplete response", "connection reset by peer", "unexpected EOF")
FAULT_WINDOW = 600.0


def upstream_faults(engine: Deployment) -> list[str]:
    """A warning when Caddy's log of the last ten minutes shows this app's upstreams breaking
    responses off: the zero-failed-requests promise assumes a correct HTTP/1.1 upstream."""
    aliases = [
        service.alias(engine.config.name, color.value)
        for service in engine.config.services
        if service.port is not None
        for color in Color
    ]
    hits = [
        line
        for line in engine.platform.proxy_log(time.time() - FAULT_WINDOW)
        if any(fault in line for fault in BROKEN_HTTP) and any(alias in line for alias in aliases)
    ]
    if not hits:
        return []
    return [
        f"Caddy logged {len(hits)} response(s) of {engine.config.name} broken off by the app in the last "
        f'{FAULT_WINDOW / 60:g} min (e.g. "aborting with incomplete response": a body without '
        "Content-Length, or a keep-alive connection the app closed): such requests fail with or without "
        "a swap; fix the app's HTTP/1.1 (see README, The stack)"
    ]


def proxy_faults(engine: Deployment, front: Front, live: bool, caddies: Sequence[str] = ()) -> list[str]:
    """While a colour is live: Caddy down first (nothing is served, so every other line matters
    less); else its admin API gone: drains cannot count the old colour's requests in flight
    then, and each waits the whole DRAIN_TIMEOUT. Before the first deploy starts Caddy, neither."""
    if not live:
        return []
    if not front.up:
        admin = "; its admin API does not answer either" if not front.admin else ""
        named = f"; Docker: {', '.join(caddies)}" if caddies else ""
        return [
            f"Caddy is down: nothing takes connections at {front.site} ({front.site_problem}){admin}{named}, "
            f"so nothing of {engine.config.name} is served whatever its colours' health; start Caddy "
            "again (its container, or the compose project that runs it)"
        ]
    if not front.admin:
        return [
            f"{front.admin_problem}: drains cannot count requests in flight, so each waits the whole "
            f"DRAIN_TIMEOUT ({engine.config.drain.timeout:g}s); restart Caddy to recreate its admin socket"
        ]
    return []


def format_status(data: dict[str, Any]) -> str:
    lines = [f"app: {data['app']}"]
    if data["live_color"]:
        how = f", {data['live_how']}" if data.get("live_how") else ""
        lines.append(
            f"live: {data['live_color']} {data['live_version']} ({data['live_health']}, "
            f"since {data['live_since'] or '?'}{how})"
        )
    else:
        lines.append("live: nothing")
    if _proxy_down(data):
        proxy = data["proxy"]
        lines.append(f"caddy: DOWN at {proxy['site']} ({proxy['site_problem']}): nothing is served")
    if data.get("awaiting"):
        wait = data["awaiting"]
        lines.append(
            f"awaiting promotion: {wait['version']} on {wait['color']} (since {wait['since']}, "
            + ("expired " if wait["expired"] else "until ")
            + f"{wait['until']}): `watcher promote` "
            "switches to it, `watcher abort` removes it"
        )
    if data["rollback"]:
        lines.append(f"rollback target: {data['rollback_description']}")
    elif data["previous_version"]:
        lines.append(f"rollback target: none ({data['previous_version']} is no longer on this host)")
    for held in (data.get("recorded") or {}).get("rolled_back") or []:
        digest = f"@{held['digest'][:19]}" if held["digest"] else ""
        lines.append(
            f"rolled back from: {held['version']}{digest} at {held['at']} (no trigger deploys it again "
            "until its tag names a new digest)"
        )
    for color, info in data["colors"].items():
        lines.append(
            f"{color}: {info['role']}"
            + (f", {info['version']}" if info["version"] else "")
            + (f", {info['health']}" if info["role"] != "absent" else "")
        )
        lines += [_container_line(c, info["version"]) for c in info["containers"]]
    if data["lock"]:
        holder = data["lock"]
        where = f"pid {holder.get('pid')}" + (f" on {holder['host']}" if holder.get("host") else "")
        fence = f", fence {holder['fence']}" if holder.get("fence") is not None else ""
        lines.append(
            f"lock: held by {holder.get('purpose', '?')} ({where}{fence}, since {holder.get('since')})"
        )
    for warning in data["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def format_summary(apps: list[dict[str, Any]]) -> str:
    """`status` for several apps: one line each (colour, version, since, health, queue, paused
    or frozen by a scheduled freeze)."""
    rows = [("APP", "LIVE", "VERSION", "SINCE", "HEALTH", "QUEUE", "PAUSED")]
    for data in apps:
        queue = data.get("queue")
        waiting = "?" if queue is None else str(queue["length"]) + (" +running" if queue["running"] else "")
        paused = (
            "?"
            if "paused" not in data
            else ("yes" if data["paused"] else "frozen" if data.get("frozen") else "no")
        )
        rows.append(
            (
                data["app"],
                data["live_color"] or "-",
                data["live_version"] or "-",
                data["live_since"] or "-",
                data["live_health"] + (", caddy down" if _proxy_down(data) else ""),
                waiting if data.get("queue") is not None or "redis_error" in data else "-",
                paused if "paused" in data or "redis_error" in data else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines += [f"warning: {data['app']}: {w}" for data in apps for w in data["warnings"]]
    lines += [f"warning: {data['redis_error']}" for data in apps[:1] if "redis_error" in data]
    lines += [f"warning: {data['redis_lost']['description']}" for data in apps if data.get("redis_lost")]
    return "\n".join(lines)


def _proxy_down(data: dict[str, Any]) -> bool:
    """Caddy takes no connection while a colour is live: nothing is served."""
    proxy = data.get("proxy")
    return bool(data["live_color"] and proxy and not proxy["up"])


def _container_line(c: dict, version: str | None) -> str:
    """One container of a colour; a one-shot that exited 0 is done, not down."""
    exited = c["state"] == "exited"
    shot = ", one-shot" + ((": done" if c["exit_code"] == 0 else ": failed") if exited else "")
    return (
        f"  {c['name']}: {c['state']}"
        + (f" (code {c['exit_code']})" if exited else "")
        + (shot if c.get("one_shot") else "")
        + (f", {c['health']}" if c["health"] else "")
        + (f", on {c['node']}" if c.get("node") else "")
        + (f" [{c['probe']}]" if c.get("probe") else "")
        + (f" ({c['image']})" if c.get("image") and c["version"] != version else "")
    )
