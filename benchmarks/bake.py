"""Benchmark: from the switch to a version answering 500 to 5 % of requests, to the bake's
automatic switch back; and what users got, against the same deploy without the bake.

    .venv/bin/python benchmarks/bake.py [--deploys 5] [--json benchmarks/results/bake.json]

One throw-away stack (tests/harness/stack.py, the test app: v1, and err5, which passes health
and verification but answers 500 to 5 % of /cgi-bin/work). Under 200 keep-alive POSTs/s
(tests/harness/load.py, non-retrying), per deploy of err5 over v1:

  bake      `watcher deploy err5 --json` as shipped (bake on, defaults): the deploy fails and
            traffic goes back to v1. Switch-back time = the route file's modification time (the
            switch back renames it) minus the receipt's `moved_at` (the switch).
  no bake   the same with `[bake] enabled = false`: err5 stays live; then `watcher rollback` after
            the same 20 s of load a human might take to notice (the baseline's failures are
            counted over those 20 s).
Not a test: prints a table and writes JSON (benchmarks/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import json
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

NOTICE = 20.0  # seconds of errors before the baseline's human rolls back


def log(message: str) -> None:
    print(f"[bake] {message}", file=sys.stderr, flush=True)


def with_bake(stack: Stack, load: LoadGenerator) -> dict[str, Any]:
    before = load.snapshot()
    proc = stack.watcher("deploy", "err5", "--json")
    assert proc.returncode != 0, "the bake did not switch err5 back"
    out = json.loads(proc.stdout)
    receipt = out["receipt"]
    back = stack.route_file.stat().st_mtime
    assert stack.live_route() == "blue", stack.live_route()
    after = load.snapshot()
    return {
        "method": "bake",
        "switch_back_s": round(back - receipt["moved_at"], 2),
        "failed": after.failed - before.failed,
        "sent": after.sent - before.sent,
        "green_requests": receipt["colors"].get("green", {}).get("requests", 0),
        "reason": out["error"][:120],
    }


def without_bake(stack: Stack, load: LoadGenerator) -> dict[str, Any]:
    before = load.snapshot()
    proc = stack.watcher("deploy", "err5", "--json")
    assert proc.returncode == 0, proc.stderr
    time.sleep(NOTICE)
    stack.watcher("rollback", check=True)
    after = load.snapshot()
    return {
        "method": "no bake",
        "switch_back_s": None,
        "failed": after.failed - before.failed,
        "sent": after.sent - before.sent,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deploys", type=int, default=5, help="deploys of err5 per method")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "bake.json")
    args = parser.parse_args()

    images.build_caddy_image(CADDY_IMAGE)
    images.build_redis_image(REDIS_IMAGE)
    images.push(images.build_app_image(f"{APP_REPO}:v1", "v1"))
    images.push(images.build_app_image(f"{APP_REPO}:err5", "err5", error_rate=0.05))
    stack = Stack.create()
    rows: list[dict[str, Any]] = []
    try:
        stack.watcher("deploy", "v1", check=True)
        with LoadGenerator(f"{stack.url}/cgi-bin/work", rate=200, connections=16) as load:
            time.sleep(2)
            for _ in range(args.deploys):
                stack.write_config()
                rows.append(with_bake(stack, load))
                log(str(rows[-1]))
            stack.write_config(extra="[bake]\nenabled = false\n")
            for _ in range(max(1, args.deploys // 2)):
                rows.append(without_bake(stack, load))
                log(str(rows[-1]))
        assert load.result is not None and load.result.sent > 0
    finally:
        stack.destroy()

    baked = [r for r in rows if r["method"] == "bake"]
    plain = [r for r in rows if r["method"] == "no bake"]
    summary = {
        "bake": {
            "deploys": len(baked),
            "switch_back_p50_s": statistics.median(r["switch_back_s"] for r in baked),
            "switch_back_max_s": max(r["switch_back_s"] for r in baked),
            "failed_per_deploy_p50": statistics.median(r["failed"] for r in baked),
        },
        "no bake": {
            "deploys": len(plain),
            "switch_back_s": f"rolled back by hand after {NOTICE:g} s",
            "failed_per_deploy_p50": statistics.median(r["failed"] for r in plain),
        },
    }
    print("\na version answering 500 to 5 % of requests, deployed over v1 under 200 POST/s")
    print(f"{'method':<8} {'deploys':>7} {'switch back (p50 / max)':>24} {'failed per deploy (p50)':>24}")
    b, p = summary["bake"], summary["no bake"]
    print(
        f"{'bake':<8} {b['deploys']:>7} {b['switch_back_p50_s']:>13.2f} s / {b['switch_back_max_s']:.2f} s "
        f"{b['failed_per_deploy_p50']:>24}"
    )
    print(f"{'no bake':<8} {p['deploys']:>7} {p['switch_back_s']:>24} {p['failed_per_deploy_p50']:>24}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "summary": summary, "runs": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
