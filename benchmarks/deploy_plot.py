"""Benchmark: one picture of what clients see while watcher deploys, rolls back by itself and is
rolled back by hand: requests answered per second, stacked by the colour that answered, and
failed requests per second, with each operation's phases marked. A table of zeros says that
nothing failed; the plot also shows *when* traffic moved and that it never dipped.

    .venv/bin/python benchmarks/deploy_plot.py [--verify-window 15] [--unhealthy-after 5]
                                               [--gap 5] [--png docs/deploy-timeline.png]
                                               [--json benchmarks/results/deploy_plot.json]

One throw-away stack (tests/harness/stack.py), v1 deployed before the load starts, then under
constant load (tests/harness/traffic.py Loads: fast keep-alive POSTs 200/s on 16 connections and
1 s POSTs 40/s on 64, never retried) and with --gap seconds before, between and after:

  deploy v2        `watcher deploy v2`: a healthy version; traffic moves to the other colour
  deploy v3        `watcher deploy v3`: healthy at first, its health check fails --unhealthy-after
                   seconds after it starts (inside the verification window, --verify-window):
                   watcher switches traffic back to v2 by itself and the deploy fails
  rollback         `watcher rollback`: back to the previous version, v1

Each response is counted in the second it completed (LoadResult's per-second counters), under
its X-Watcher-Color header. The phases come from each command's own progress lines
(`[  12.3s] health done in 2.1s`: it ended then and began 2.1 s earlier), read as they come
(tests/harness/traffic.py Output) and placed on the load's clock (see `read_phases`); the switch
back is the line `switching traffic back to ...`. Writes the PNG (docs/, committed,
for the README) and the raw series as JSON (benchmarks/results/ is git-ignored). Not a test;
needs the services (`make services`). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tests.harness import images  # noqa: E402
from tests.harness.load import LoadResult  # noqa: E402
from tests.harness.stack import CADDY_IMAGE, REDIS_IMAGE, REGISTRY, Stack  # noqa: E402
from tests.harness.traffic import Loads, Output, spawn  # noqa: E402

REPO_REF = f"{REGISTRY}/watcher-bench/plot"
STAMPED = re.compile(r"\s*\[\s*([0-9.]+)s\] (.*)")
PHASE_END = re.compile(r"(.+?) (?:done|FAILED) in ([0-9.]+)s$")
#: Phases worth a band on the plot (the others take a few hundredths of a second), and their shade.
BANDS = {"start": "#d9d9d9", "health": "#bdbdbd", "verify": "#fff2a8", "drain": "#e0c8f0"}
COLORS = {"blue": "#3b75c4", "green": "#3fa34d", "": "#999999"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Operation:
    """One watcher command of the run, its phases and switches, in seconds since the load began."""

    label: str
    argv: list[str]
    started: float = 0.0
    ended: float = 0.0
    exit_code: int | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)  # {"name", "start", "end"}
    switches: list[dict[str, Any]] = field(default_factory=list)  # {"at", "what"}
    output: str = ""


def run(stack: Stack, operation: Operation, origin: float) -> None:
    """Run the command to its end (on Ctrl-C: interrupt it, so it unwinds to the live colour)."""
    out = spawn(stack, *operation.argv)
    operation.started = out.started - origin
    try:
        operation.exit_code = out.wait(timeout=600)
    except BaseException:
        out.proc.send_signal(signal.SIGINT)
        out.wait(timeout=120)
        raise
    operation.ended = time.monotonic() - origin
    operation.output = out.text
    read_phases(operation, out, origin)


def under_load(
    stack: Stack,
    loads: Loads,
    operations: list[Operation],
    origin: float,
    gap: float,
    load_averages: list[float],
) -> None:
    """The operations one after the other, `gap` seconds of steady load before, between and after;
    the host's 1-minute load average before each and at the end, into `load_averages`."""
    loads.fast.start()
    loads.slow.start()
    try:
        for operation in operations:
            time.sleep(gap)
            load_averages.append(os.getloadavg()[0])
            log(f"{operation.label}: watcher {' '.join(operation.argv)}")
            run(stack, operation, origin)
            log(
                f"{operation.label}: exit {operation.exit_code} after {operation.ended - operation.started:.1f} s"
            )
        time.sleep(gap)
        load_averages.append(os.getloadavg()[0])
    finally:
        loads.results = [loads.fast.stop(), loads.slow.stop()]


def read_phases(operation: Operation, out: Output, origin: float) -> None:
    """Phases from their end lines (end stamp and duration); switches from the switch lines.

    A stamp counts from when the command's engine started its clock, seconds after the spawn
    on a busy host (imports); each line is read a moment after it was printed. So the clock's
    start is the earliest (read time - stamp) of all the lines, and every stamp is placed from it.
    """
    stamped = [
        (read, float(m.group(1)), m.group(2).strip())
        for read, line in out.lines
        if (m := STAMPED.match(line))
    ]
    if not stamped:
        return
    clock = min(read - stamp for read, stamp, _ in stamped) - origin
    for _, stamp, message in stamped:
        at = round(clock + stamp, 2)
        ended = PHASE_END.match(message)
        if ended:
            name = ended.group(1)
            operation.phases.append({"name": name, "start": round(at - float(ended.group(2)), 2), "end": at})
            if name == "switch":
                operation.switches.append({"at": at, "what": "switch"})
        elif message.startswith("switching traffic back"):
            operation.switches.append({"at": at, "what": "switch back"})


def series(results: list[LoadResult], origin: float) -> list[dict[str, Any]]:
    """Per second of the plot: responses by colour and failures, both loads added up."""
    rows: dict[int, dict[str, Any]] = {}
    for result in results:
        assert result.started_at is not None
        shift = round(result.started_at - origin)
        for row in result.timeline():
            into = rows.setdefault(row["second"] + shift, {"ok": 0, "failed": 0, "colors": {}})
            into["ok"] += row["ok"]
            into["failed"] += row["failed"]
            for color, count in row["colors"].items():
                into["colors"][color] = into["colors"].get(color, 0) + count
    return [{"second": s, **rows.get(s, {"ok": 0, "failed": 0, "colors": {}})} for s in range(max(rows) + 1)]


def plot(
    rows: list[dict[str, Any]], operations: list[Operation], offered: float, footer: str, png: Path
) -> None:
    """Responses per second stacked by colour over failures per second, the phases marked on both."""
    seconds = [r["second"] + 0.5 for r in rows]  # a second's count drawn at its middle
    colors = [c for c in ("blue", "green", "") if any(c in r["colors"] for r in rows)]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 4.8), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    top.stackplot(
        seconds,
        *[[r["colors"].get(c, 0) for r in rows] for c in colors],
        step="mid",
        colors=[COLORS[c] for c in colors],
        labels=[f"answered by {c or 'no colour'}" for c in colors],
    )
    top.axhline(offered, color="black", ls=":", lw=1)
    top.set_ylim(0, max(sum(r["colors"].values()) for r in rows) * 1.15)
    top.set_ylabel("responses / s")
    top.set_title(
        "watcher under constant load (200/s fast POSTs + 40/s 1 s POSTs): a deploy, an automatic "
        "rollback, a manual rollback",
        fontsize=10,
    )
    bottom.bar(seconds, [r["failed"] for r in rows], width=1.0, color="#d62728")
    bottom.set_ylim(0, max(5, max(r["failed"] for r in rows) * 1.2))
    bottom.set_ylabel("failed / s")
    bottom.set_xlabel("seconds")
    bottom.set_xlim(0, seconds[-1] + 0.5)
    bottom.text(0.995, 0.9, footer, transform=bottom.transAxes, ha="right", va="top", fontsize=8.5)
    mark(top, bottom, operations)
    handles = (
        top.get_legend_handles_labels()[0]
        + [Patch(color=BANDS[n], alpha=0.6, label=n) for n in BANDS]
        + [
            Line2D([], [], color="black", ls=":", lw=1, label=f"sent: {offered:g}/s"),
            Line2D([], [], color="black", lw=1.2, label="switch"),
            Line2D([], [], color="black", lw=1.2, ls="--", label="switch back"),
        ]
    )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7.5, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(png, dpi=90, metadata={"Software": None}, pil_kwargs={"optimize": True})
    plt.close(fig)


def mark(top: Axes, bottom: Axes, operations: list[Operation]) -> None:
    """Each operation's name where it began, its long phases as bands, its switches as lines."""
    for operation in operations:
        for phase in operation.phases:
            shade = BANDS.get(phase["name"])
            for axis in (top, bottom) if shade else ():
                axis.axvspan(phase["start"], phase["end"], color=shade, alpha=0.6, lw=0, zorder=0)
        for switch in operation.switches:
            for axis in (top, bottom):
                axis.axvline(
                    switch["at"], color="black", ls="-" if switch["what"] == "switch" else "--", lw=1.2
                )
        top.annotate(
            operation.label,
            (operation.started, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -12),
            textcoords="offset points",
            fontsize=8.5,
            va="top",
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verify-window", type=float, default=15.0, help="seconds (watcher's default: 10)")
    parser.add_argument(
        "--unhealthy-after",
        type=float,
        default=5.0,
        help="v3's health check fails this many seconds after it starts",
    )
    parser.add_argument("--gap", type=float, default=5.0, help="seconds of steady load around each operation")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "deploy-timeline.png")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "deploy_plot.json")
    args = parser.parse_args()
    if not 0 < args.unhealthy_after < args.verify_window:
        parser.error("--unhealthy-after must be within the verification window")

    images.build_caddy_image(CADDY_IMAGE)
    images.build_redis_image(REDIS_IMAGE)
    for version, options in (("v1", {}), ("v2", {}), ("v3", {"unhealthy_after": args.unhealthy_after})):
        images.push(images.build_app_image(f"{REPO_REF}:{version}", version, **options))
    stack = Stack.create(image=REPO_REF, verify_window=f"{args.verify_window:g}s")
    operations = [
        Operation("deploy v2", ["deploy", "v2"]),
        Operation(f"deploy v3 (sick after {args.unhealthy_after:g} s)", ["deploy", "v3"]),
        Operation("rollback", ["rollback"]),
    ]
    loads = Loads(stack)
    load_averages: list[float] = []
    try:
        stack.watcher("deploy", "v1", check=True)
        stack.wait_serving()
        origin = time.monotonic()
        under_load(stack, loads, operations, origin, args.gap, load_averages)
    finally:
        stack.destroy()
    rows = series(loads.results, origin)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    load = sum(load_averages) / len(load_averages)
    footer = (
        f"failed: {loads.failed:,} of {loads.sent:,} requests; "
        f"host load average {load:.0f} on {os.cpu_count()} CPUs"
    )
    plot(rows, operations, loads.fast.rate + loads.slow.rate, footer, args.png)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "verify_window_s": args.verify_window,
                "unhealthy_after_s": args.unhealthy_after,
                "loads": {name: r.as_dict() for name, r in zip(("fast", "slow"), loads.results)},
                "operations": [asdict(op) for op in operations],
                "per_second": rows,
                "load_averages": load_averages,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
        + "\n"
    )
    print("| operation | exit | seconds | switch | switch back | failed requests during it |")
    print("|---|---|---|---|---|---|")
    for op in operations:
        during = sum(r["failed"] for r in rows if op.started <= r["second"] < op.ended + 1)
        marks = {
            what: ", ".join(f"{s['at']:.1f}" for s in op.switches if s["what"] == what) or "-"
            for what in ("switch", "switch back")
        }
        print(
            f"| {op.label} | {op.exit_code} | {op.ended - op.started:.1f} | {marks['switch']} "
            f"| {marks['switch back']} | {during} |"
        )
    print(
        f"\n{loads.describe()}\nPNG {args.png} ({args.png.stat().st_size / 1024:.0f} KiB), JSON {args.json}"
    )
    codes, expected = [op.exit_code for op in operations], [0, 1, 0]
    if codes != expected:  # the plot shows something else than it says (see the outputs in the JSON)
        print(f"benchmark: exit codes {codes}, expected {expected}", file=sys.stderr)
    return 0 if codes == expected else 1


if __name__ == "__main__":
    sys.exit(main())
