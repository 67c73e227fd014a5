"""Benchmark: what the traffic receipt's source costs the request path. The receipts read Caddy's
JSON access log (one line per request, `log_append` fields); this measures request latency
through the same Caddy with that log and without it, in the same run.

    .venv/bin/python benchmarks/receipt_cost.py [--rates 200,1000] [--seconds 20] [--rounds 2]
                                                [--json benchmarks/results/receipt_cost.json]

One throw-away stack (tests/harness/stack.py, the test app at v1). Per round and rate, the two
Caddyfiles run one after the other in alternating order (off, on, on, off, ...), each after a
Caddy restart and 3 s of warm-up load, so both see the same host and the same warm app:

  log on    the Caddyfile `watcher caddyfile` writes (the access log and its fields)
  log off   the same file without the site's `log` block (log_append is then a no-op)

Load: tests/harness/load.py, open-loop keep-alive POSTs to /cgi-bin/work at the rate, latency from
each request's scheduled time. Not a test: prints a table and writes JSON (benchmarks/results/ is
git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import images  # noqa: E402
from tests.harness.load import LoadGenerator  # noqa: E402
from tests.harness.stack import APP_REPO, CADDY_IMAGE, REDIS_IMAGE, Stack  # noqa: E402

LOG_BLOCK = re.compile(r"^\tlog \{\n.*?^\t\}\n", re.S | re.M)


def log(message: str) -> None:
    print(f"[receipt_cost] {message}", file=sys.stderr, flush=True)


def use_caddyfile(stack: Stack, text: str) -> None:
    (stack.root / "Caddyfile").write_text(text)
    stack.compose("restart", "caddy")
    stack.wait_serving()


def measure(stack: Stack, rate: float, seconds: float) -> dict[str, Any]:
    url = f"{stack.url}/cgi-bin/work"
    with LoadGenerator(url, rate=rate, connections=32):
        time.sleep(3)  # warm-up: connections open, Caddy and the app warm
    generator = LoadGenerator(url, rate=rate, connections=32)
    generator.start()
    time.sleep(seconds)
    result = generator.stop()
    assert result.sent > 0.9 * rate * seconds, f"the load sent {result.sent} of {rate * seconds:.0f}"
    return {
        "sent": result.sent,
        "failed": result.failed,
        "p50_ms": round(result.p50(), 2),
        "p99_ms": round(result.p99(), 2),
        "load_1m": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="200,1000", help="requests per second, e.g. 200,1000")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs per rate")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "receipt_cost.json")
    args = parser.parse_args()
    rates = [float(v) for v in args.rates.split(",")]

    images.build_caddy_image(CADDY_IMAGE)
    images.build_redis_image(REDIS_IMAGE)
    images.push(images.build_app_image(f"{APP_REPO}:v1", "v1"))
    stack = Stack.create()
    rows: list[dict[str, Any]] = []
    try:
        stack.watcher("deploy", "v1", check=True)
        with_log = (stack.root / "Caddyfile").read_text()
        without_log, removed = LOG_BLOCK.subn("", with_log)
        assert removed == 1, "the Caddyfile has no site log block to remove"
        files = {"on": with_log, "off": without_log}
        for rate in rates:
            for round_ in range(args.rounds):
                for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                    use_caddyfile(stack, files[mode])
                    row = {"rate": rate, "log": mode, **measure(stack, rate, args.seconds)}
                    rows.append(row)
                    log(str(row))
        lines = stack.root / ".watcher" / "run" / "access.log"
        log_bytes = lines.stat().st_size if lines.exists() else 0
    finally:
        stack.destroy()

    print("\nrequest latency through Caddy with the receipts' access log (on) and without it (off), same run")
    print(f"{'rate/s':>7} {'log':<4} {'runs':>4} {'sent':>8} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8}")
    summary: dict[str, Any] = {}
    for rate in rates:
        for mode in ("off", "on"):
            runs = [r for r in rows if r["rate"] == rate and r["log"] == mode]
            figures = {
                "runs": len(runs),
                "sent": sum(r["sent"] for r in runs),
                "failed": sum(r["failed"] for r in runs),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            }
            summary[f"{rate:g}/s log {mode}"] = figures
            print(
                f"{rate:>7g} {mode:<4} {figures['runs']:>4} {figures['sent']:>8} {figures['failed']:>6} "
                f"{figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f}"
            )
    on_lines = sum(r["sent"] for r in rows if r["log"] == "on")
    per_line = log_bytes / on_lines if on_lines else 0
    print(
        f"access log: {log_bytes / 1e6:.1f} MB for about {on_lines:,} requests ({per_line:.0f} bytes per request); "
        f"{os.cpu_count()} CPUs"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "summary": summary,
                "bytes_per_request": round(per_line),
                "runs": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
