"""The job page's traffic chart: a receipt's per-second rows as SVG bars, laid out here so the
template only draws rectangles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEIGHT = 60.0
BAR = 8  # px per second (7 drawn, 1 gap)
STACK = ("blue", "green", "fallback", "none")


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    height: float
    color: str
    failed_height: float  # the red part at the bar's top (0: nothing failed)
    title: str


def bars(receipt: dict[str, Any]) -> tuple[list[Bar], int | None, int]:
    """The bars, the x of the second traffic moved in (None: outside the receipt) and the width."""
    rows = receipt.get("seconds") or []
    peak = max((row[c]["requests"] for row in rows for c in STACK if row.get(c)), default=0) or 1
    found: list[Bar] = []
    moved = None
    for i, row in enumerate(rows):
        x, y = i * BAR, HEIGHT + 4
        if row.get("t") == 0:
            moved = x
        for color in STACK:
            tally = row.get(color)
            if not tally:
                continue
            height = HEIGHT * tally["requests"] / peak
            y -= height
            failed = max(HEIGHT * tally["failed"] / peak, 1.5) if tally["failed"] else 0.0
            found.append(
                Bar(
                    x,
                    round(y, 1),
                    round(height, 1),
                    color,
                    round(failed, 1),
                    f"t={row['t']}s {color}: {tally['requests']} requests, {tally['failed']} failed",
                )
            )
    return found, moved, max(len(rows) * BAR, BAR)
