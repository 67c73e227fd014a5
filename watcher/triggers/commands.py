"""The trigger commands of the CLI: `serve`, `run` and `check-tags` (cli.py wires them in).

Flask, waitress, APScheduler and packaging are imported when a trigger command runs, not by
every `watcher` invocation.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from watcher.config import Config, HostConfig

if TYPE_CHECKING:
    from watcher.triggers.dispatch import App
    from watcher.triggers.poller import PollResult
    from watcher.triggers.sink import EnqueueOutcome, LiveVersion

log = logging.getLogger("watcher.serve")

HELP = """\
the triggers (need Redis):
  serve [--no-poll]      webhook receiver (POST /hooks/github, /hooks/registry, /pause, /resume;
                         GET /status, /healthz, /readyz) and registry poller, for every app;
                         they only enqueue
  run [--no-poll]        serve + worker in one process (the compose service's default)
  check-tags [APP]       dry run: the tags seen, which one the tag policy would deploy, and why
"""


def add_parsers(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="webhook receiver and registry poller (they enqueue; workers deploy)"
    )
    serve.add_argument(
        "--no-poll", action="store_true", help="receive webhooks only; do not poll the registry"
    )
    run = sub.add_parser("run", help="serve + worker in one process")
    run.add_argument("--no-poll", action="store_true", help="receive webhooks only; do not poll the registry")
    run.add_argument("--name", help="worker name in the queue and the lock (default HOST:PID)")
    run.set_defaults(app=None, one=False)
    check = sub.add_parser("check-tags", help="dry run of the tag policy against the registry")
    check.add_argument("app", nargs="?", help="the app (needed when several are configured)")
    check.add_argument("--json", action="store_true")


def quiet_libraries() -> None:
    """One line per request from httpx, and per run from APScheduler, would drown what matters."""
    for name in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


def serve(
    host: HostConfig,
    args: argparse.Namespace,
    status: Callable[[Config], dict[str, Any]],
    worker: Callable[[HostConfig, argparse.Namespace], int] | None = None,
) -> int:
    """`serve` (worker None) or `run` (the worker pool in the main thread, the triggers beside it)."""
    quiet_libraries()
    from watcher.triggers import server

    service = server.start(host, status, poll=not args.no_poll)
    try:
        if worker is None:
            service.wait()
            return 0
        return worker(host, args)
    finally:
        service.stop()


class _Offline:
    """Sink and memory for a dry run without Redis: what is live from the route file and state,
    nothing requested."""

    def __init__(self, live_of: Callable[[str], LiveVersion | None]) -> None:
        self.live_of = live_of

    def enqueue(
        self,
        app: str,
        version: str,
        *,
        source: str,
        requested_by: str,
        digest: str | None,
        repository: str | None = None,
    ) -> EnqueueOutcome:
        raise AssertionError("a dry run enqueues nothing")

    def live(self, app: str) -> LiveVersion | None:
        return self.live_of(app)

    def waiting(self, app: str) -> str | None:
        return None

    def last(self, app: str) -> dict[str, Any] | None:
        return None


def check_tags(config: Config, args: argparse.Namespace) -> int:
    """`config`: the app chosen by the CLI (the positional APP or the only one)."""
    quiet_libraries()
    from watcher.queue.connection import REDIS_DOWN, connect
    from watcher.triggers.dispatch import App, Memory, Triggers
    from watcher.triggers.poller import Poller, poll_client
    from watcher.triggers.sink import RedisSink, live_reader

    app = App.from_config(config)
    notes: list[str] = []
    live_of = live_reader(config)
    sink: Any = _Offline(live_of)
    memory: Any = _Offline(live_of)
    if config.redis_url:
        client = connect(config.redis_url, config.redis_password)
        try:
            client.ping()
            sink, memory = (
                RedisSink(client, live_of, config.redis_prefix, config.history),
                Memory(client, config.redis_prefix),
            )
        except REDIS_DOWN as exc:
            notes.append(f"Redis unreachable ({exc}): last request unknown")
    else:
        notes.append("no Redis configured: last request unknown")
    triggers = Triggers([app], sink, memory)
    client = poll_client(app)
    try:
        result = Poller(triggers, {app.name: client}).poll(app, dry_run=True)
        live = None if result.status == "failed" else sink.live(app.name)
        last = None if result.status == "failed" else memory.last(app.name)
    finally:
        client.close()
    if args.json:
        data = result.to_dict()
        data.update(
            image=str(app.ref),
            policy_kind=app.policy.kind,
            policy_description=app.policy.describe(),
            live={"version": live.version, "digest": live.digest} if live else None,
            last_request=last,
            notes=notes,
        )
        print(json.dumps(data, indent=2))
    else:
        print(_format(app, result, live, last, notes))
    return 1 if result.status == "failed" else 0


_VERDICTS = {
    "would-enqueue": "would enqueue",
    "up-to-date": "nothing to do",
    "requested": "nothing to do",
    "no-candidate": "nothing to deploy",
    "failed": "poll failed",
}


def _format(
    app: App, result: PollResult, live: LiveVersion | None, last: dict[str, Any] | None, notes: list[str]
) -> str:
    lines = [f"app {app.name}: {app.ref}", f"policy: {app.policy.describe()}"]
    decision = result.decision
    if decision is not None and decision.verdicts:
        accepted = [v for v in decision.verdicts if v.accepted]
        refused = sorted((v for v in decision.verdicts if not v.accepted), key=lambda v: v.tag)
        width = min(40, max(len(v.tag) for v in decision.verdicts))
        lines.append(f"tags seen ({len(decision.verdicts)}):")
        lines += [f"  {v.tag:<{width}}  {v.reason}" for v in accepted + refused]
    if decision is not None:
        lines.append(
            f"candidate: {decision.candidate or 'none'}"
            + (f" ({result.digest})" if result.digest else "")
            + f": {decision.reason}"
        )
    lines.append(
        f"live: {live.version}" + (f" ({live.digest})" if live and live.digest else "")
        if live
        else "live: nothing (route file and state on this host)"
    )
    if last:
        lines.append(f"last request: {last.get('tag')} (job {last.get('job')}, {last.get('source')})")
    lines.append(f"verdict: {_VERDICTS.get(result.status, result.status)}: {result.reason}")
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)
