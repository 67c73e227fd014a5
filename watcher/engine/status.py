"""`status`: the reconciled truth, what differs from the record, and each colour's containers."""

from __future__ import annotations

from typing import Any

from watcher.engine.color import Color
from watcher.engine.deployment import Deployment


def status(engine: Deployment, lock_holder: dict[str, Any] | None) -> dict[str, Any]:
    view = engine.view()
    live, previous = view.live, view.previous
    colors: dict[str, Any] = {}
    for color in Color:
        containers = view.observed.containers.get(color, [])
        role = "live" if live and live.color == color else (
            "rollback target" if previous and previous.color == color else "idle")
        colors[color.value] = {
            "role": role if containers else "absent",
            "version": engine.stacks.version(color, containers),
            "containers": [c.to_dict() for c in containers],
        }
    return {
        "app": engine.config.app,
        "live_color": live.color.value if live else None,
        "live_version": live.version if live else None,
        "live_since": live.since if live else None,
        "previous_color": previous.color.value if previous else None,
        "previous_version": previous.version if previous else None,
        "route": view.observed.route.value if view.observed.route else None,
        "colors": colors,
        "recorded": view.recorded.to_dict(),
        "in_sync": view.in_sync,
        "warnings": view.warnings,
        "lock": lock_holder,
    }


def format_status(data: dict[str, Any]) -> str:
    lines = [f"app: {data['app']}"]
    if data["live_color"]:
        lines.append(f"live: {data['live_color']} {data['live_version']} (since {data['live_since']})")
    else:
        lines.append("live: nothing")
    if data["previous_version"]:
        lines.append(f"previous: {data['previous_color']} {data['previous_version']} (rollback target)")
    for color, info in data["colors"].items():
        lines.append(f"{color}: {info['role']}" + (f", {info['version']}" if info["version"] else ""))
        for c in info["containers"]:
            lines.append(f"  {c['name']}: {c['state']}" + (f", {c['health']}" if c["health"] else ""))
    if data["lock"]:
        holder = data["lock"]
        where = f"pid {holder.get('pid')}" + (f" on {holder['host']}" if holder.get("host") else "")
        fence = f", fence {holder['fence']}" if holder.get("fence") is not None else ""
        lines.append(f"lock: held by {holder.get('purpose', '?')} ({where}{fence}, since {holder.get('since')})")
    for warning in data["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
