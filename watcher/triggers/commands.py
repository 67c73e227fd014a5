"""The trigger commands of the CLI: `serve`, `run` and `check-tags` (cli.py wires them in).

Flask, waitress, APScheduler and packaging are imported when a trigger command runs, not by
every `watcher` invocation.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from watcher import output
from watcher.config import HostConfig

if TYPE_CHECKING:
    from watcher.engine.state import Release
    from watcher.host import App
    from watcher.triggers.poller import PollResult

log = logging.getLogger("watcher.serve")

HELP = """\
the triggers (need Redis):
  serve [--no-poll]      webhook receiver, control API, probes, metrics and dashboard, and the
                         registry poller, for every app; they only enqueue (every endpoint:
                         serve --help)
  run [--no-poll]        serve + worker in one process (the compose service's default)
  check-tags [APP]       dry run: the tags seen, which one the tag policy would deploy, and why
"""


def add_parsers(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="webhook receiver and registry poller (they enqueue; workers deploy)", add_help=False
    )
    serve.add_argument("-h", "--help", action=_EndpointsHelp, help="show this help and every endpoint")
    serve.add_argument(
        "--no-poll", action="store_true", help="receive webhooks only; do not poll the registry"
    )
    run = sub.add_parser("run", help="serve + worker in one process", add_help=False)
    run.add_argument("-h", "--help", action=_EndpointsHelp, help="show this help and every endpoint")
    run.add_argument("--no-poll", action="store_true", help="receive webhooks only; do not poll the registry")
    run.add_argument("--name", help="worker name in the queue and the lock (default HOST:PID)")
    run.set_defaults(app=None, one=False)
    check = sub.add_parser("check-tags", help="dry run of the tag policy against the registry")
    check.add_argument("app", nargs="?", help="the app (needed when several are configured)")
    check.add_argument("--json", action="store_true", help="print the result as JSON")


class _EndpointsHelp(argparse.Action):
    """`serve --help`, `run --help`: the options, then every endpoint the receiver answers, read
    from its routes when asked (Flask is imported for help only, not for every command)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from watcher.triggers.server import endpoints

        parser.print_help()
        print("\nendpoints (on [webhook] listen):\n" + "\n".join(f"  {line}" for line in endpoints()))
        parser.exit()


def quiet_libraries() -> None:
    """One line per request from httpx, and per run from APScheduler, would drown what matters."""
    for name in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


def serve(
    host: HostConfig,
    args: argparse.Namespace,
    status: Callable[[App], dict[str, Any]],
    worker: Callable[[argparse.Namespace], int] | None = None,
) -> int:
    """`serve` (worker None) or `run` (the worker pool in the main thread, the triggers beside it)."""
    quiet_libraries()
    from watcher.triggers import server

    service = server.start(host, status, poll=not args.no_poll)
    try:
        if worker is None:
            service.wait()
            return 0
        return worker(args)
    finally:
        service.stop()


def check_tags(app: App, args: argparse.Namespace) -> int:
    """`app`: the app chosen by the CLI (the positional APP or the only one)."""
    quiet_libraries()
    from watcher.queue.connection import REDIS_DOWN
    from watcher.triggers.poller import Poller, poll_client

    notes: list[str] = []
    host = app.host
    if host.redis:
        try:
            host.client.ping()
        except REDIS_DOWN as exc:
            host.offline = True
            notes.append(f"Redis unreachable ({exc}): last request unknown")
    else:
        host.offline = True
        notes.append("no Redis configured: last request unknown")
    client = poll_client(app)
    try:
        result = Poller(host, {app.name: client}).poll(app, dry_run=True)
        live = None if result.status == "failed" else app.live()
        last = None if result.status == "failed" else app.last()
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
        print(output.dumps(data))
    else:
        print(_format(app, result, live, last, notes))
    return 1 if result.status == "failed" else 0


_VERDICTS = {
    "would-enqueue": "would enqueue",
    "up-to-date": "nothing to do",
    "requested": "nothing to do",
    "rolled-back": "nothing to do",
    "no-candidate": "nothing to deploy",
    "failed": "poll failed",
}


def _format(
    app: App, result: PollResult, live: Release | None, last: dict[str, Any] | None, notes: list[str]
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
