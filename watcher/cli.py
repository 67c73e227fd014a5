"""The `watcher` command: a thin face over the engine and the queue (watcher/queue).

Exit codes: 0 success, 1 the operation failed (nothing half-done; for `enqueue --wait`: the job
did not succeed), 2 bad input or config, 3 the deploy lock is held, 130 interrupted (the live
colour still serves).

The deploy locks: every writer of a stack (deploy, rollback, cleanup, reset and the queue worker)
takes the host lock in the state directory (a flock, watcher/host_lock.py), so a host CLI and a
containerised worker sharing the project directory exclude each other whatever their config says.
With Redis configured (`[redis] url` or REDIS_URL) they take the app's Redis lock first, the one
the workers fence their writes with; without Redis the queue commands are off.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import redis

from watcher import interrupts
from watcher.config import Config, find_config, load_config
from watcher.engine.deployment import Deployment, DeployResult, Guard
from watcher.engine.maintenance import cleanup, reset
from watcher.engine.progress import Progress
from watcher.engine.status import format_status, status
from watcher.errors import ConfigError, Interrupted, UsageError, WatcherError
from watcher.host_lock import HostLock
from watcher.queue import (DeployLock, DeployQueue, Job, Live, Suspension, Worker, describe_holder, force_unlock,
                           format_overview, holder_of, overview)
from watcher.queue.connection import REDIS_DOWN, connect, masked
from watcher.triggers import commands as trigger_commands
from watcher.triggers.commands import HELP as TRIGGER_HELP
from watcher.triggers.sink import live_reader
from watcher.triggers.commands import add_parsers as add_trigger_parsers
from watcher.validation import validate_tag

DESCRIPTION = """\
Zero-downtime blue-green deploys for Docker Compose apps behind Caddy.

commands:
  deploy VERSION         pull VERSION, start it beside the live colour, wait until healthy,
                         switch Caddy, verify, drain and stop the old colour
  status [--json]        live colour and version, rollback target, containers, warnings
  rollback [--to V]      back to the previous version (instant while its colour is retained)
  cleanup                remove failed or stray colours and unused images (keeps live and rollback)
  reset [--force]        remove both colours and the recorded state (asks first)
  help                   this text

the queue (needs Redis: [redis] url or REDIS_URL):
  worker                 run queued jobs one at a time under the deploy lock, until SIGTERM
  enqueue VERSION        queue a deploy; prints the job id (--wait: follow it to its end)
  queue [--json]         the running and waiting jobs
  history [-n N]         finished jobs with outcome and duration
  cancel JOB             cancel a waiting job
  pause [--reason TEXT]  workers start no new job (the one in flight finishes); resume undoes it
  unlock --force         remove the deploy lock whoever holds it (it expires by itself anyway)

""" + TRIGGER_HELP + """

environment: HEALTH_CHECK_TIMEOUT (300s), HEALTH_CHECK_INTERVAL (3s), DRAIN_TIMEOUT (30s),
VERIFY_TIMEOUT, VERIFY_WINDOW, CADDY_ADMIN, WATCHER_CONFIG, REGISTRY_USERNAME, REGISTRY_PASSWORD[_FILE],
REDIS_URL, REDIS_PASSWORD[_FILE], WATCHER_LOCK_TTL (30s), WEBHOOK_SECRET[_FILE],
WEBHOOK_REGISTRY_TOKEN[_FILE], WATCHER_API_TOKEN[_FILE], WEBHOOK_LISTEN, POLL_INTERVAL
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watcher", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="config file (default: $WATCHER_CONFIG, ./watcher.toml, "
                                               "./config/watcher.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def locked(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                       help="wait this long for the deploy lock instead of failing at once")
        return p

    deploy = locked(sub.add_parser("deploy", help="deploy a version"))
    deploy.add_argument("version")
    deploy.add_argument("--json", action="store_true", help="print the result as JSON")
    st = sub.add_parser("status", help="show what is live")
    st.add_argument("--json", action="store_true")
    rollback = locked(sub.add_parser("rollback", help="go back to the previous version"))
    rollback.add_argument("--to", metavar="VERSION", help="roll back to this version instead")
    rollback.add_argument("--json", action="store_true")
    clean = locked(sub.add_parser("cleanup", help="remove stopped or failed colours and unused images"))
    clean.add_argument("--include-rollback", action="store_true",
                       help="also remove the retained rollback target")
    rst = locked(sub.add_parser("reset", help="remove both colours and the state"))
    rst.add_argument("--force", action="store_true", help="do not ask for confirmation")
    sub.add_parser("help", help="show this help")

    worker = sub.add_parser("worker", help="run queued jobs until stopped (SIGTERM)")
    worker.add_argument("--name", help="worker name in the queue and the lock (default HOST:PID)")
    enqueue = sub.add_parser("enqueue", help="queue a deploy of a version")
    enqueue.add_argument("version")
    enqueue.add_argument("--digest", help="the image digest the tag should have (e.g. sha256:...)")
    enqueue.add_argument("--rollback", action="store_true",
                         help="a rollback job: reuse the version's retained colour when there is one")
    enqueue.add_argument("--wait", action="store_true", help="follow the job to its end and exit with its result")
    queue = sub.add_parser("queue", help="show running and waiting jobs")
    queue.add_argument("--json", action="store_true")
    history = sub.add_parser("history", help="show finished jobs")
    history.add_argument("-n", type=int, default=20, metavar="N", help="how many (default 20)")
    history.add_argument("--json", action="store_true")
    cancel = sub.add_parser("cancel", help="cancel a waiting job")
    cancel.add_argument("job")
    pause = sub.add_parser("pause", help="start no new job until resume")
    pause.add_argument("--reason", default="", metavar="TEXT")
    sub.add_parser("resume", help="lift a pause")
    unlock = sub.add_parser("unlock", help="remove the deploy lock (operator use)")
    unlock.add_argument("--force", action="store_true", help="really remove it, whoever holds it")
    add_trigger_parsers(sub)
    return parser


def _redis(config: Config) -> redis.Redis:
    if not config.redis_url:
        raise ConfigError(f"{config.source}: the queue needs Redis: set [redis] url or REDIS_URL")
    return connect(config.redis_url, config.redis_password)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@contextmanager
def _locked(config: Config, purpose: str, wait: float) -> Iterator[Guard]:
    """The Redis deploy lock when Redis is configured (the guard), then the host lock, always."""
    started = time.monotonic()
    redis_lock = DeployLock(_redis(config), config.app, ttl=config.lock_ttl, purpose=purpose).acquire(wait) \
        if config.redis_url else None
    try:
        host_lock = HostLock(config.state_dir / "lock").acquire(
            purpose, wait=max(0.0, wait - (time.monotonic() - started)))
        try:
            yield redis_lock or host_lock
        finally:
            host_lock.release()
    finally:
        if redis_lock is not None:
            redis_lock.release()


def _print_result(result: DeployResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.message)
        if not result.noop:
            phases = ", ".join(f"{name} {took:.1f}s" for name, took in result.phases.items())
            print(f"phases: {phases}; total {result.total:.1f}s")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command in (None, "help"):
        parser.print_help()
        return 0
    for tag in (getattr(args, "version", None), getattr(args, "to", None)):
        if tag is not None:
            try:
                validate_tag(tag)  # before anything touches Docker, Caddy or the lock
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    config = load_config(find_config(args.config, os.environ))

    if args.command == "status":
        return _status(config, args.json)
    if args.command in QUEUE_COMMANDS:
        return QUEUE_COMMANDS[args.command](config, args)
    if args.command in ("serve", "run"):
        return trigger_commands.serve(config, args, status_data, _worker if args.command == "run" else None)
    if args.command == "check-tags":
        return trigger_commands.check_tags(config, args)

    if args.command == "reset" and not args.force:
        if not sys.stdin.isatty():
            raise UsageError("reset removes both colours and the state: confirm with --force")
        answer = input(f"Remove both colours of {config.app} and its state? Nothing will serve. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("reset cancelled")
            return 1

    with _locked(config, f"{args.command} {getattr(args, 'version', '')}".strip(), args.wait_lock) as lock:
        engine = Deployment(config)
        if args.command in ("deploy", "rollback"):
            if args.command == "deploy":
                result = engine.deploy(args.version, guard=lock)
            else:
                result = engine.rollback(guard=lock, to=args.to)
            _print_result(result, args.json)
        elif args.command == "cleanup":
            removed = cleanup(engine, guard=lock, include_rollback=args.include_rollback)
            print("removed: " + ", ".join(removed) if removed else "nothing to clean up")
        elif args.command == "reset":
            removed = reset(engine, guard=lock)
            print("removed: " + ", ".join(removed))
    return 0


def status_data(config: Config) -> dict[str, Any]:
    """What `status --json` prints; GET /status of `watcher serve` answers the same."""
    host_holder = HostLock(config.state_dir / "lock").holder()
    data = status(Deployment(config), host_holder)
    if not config.redis_url:
        return data
    try:
        data.update(overview(_redis(config), config.app))
    except REDIS_DOWN as exc:
        data["redis_error"] = f"cannot reach Redis at {masked(config.redis_url)}: {exc}"
    data["lock"] = data.get("lock") or host_holder
    return data


def _status(config: Config, as_json: bool) -> int:
    data = status_data(config)
    if not config.redis_url:
        print(json.dumps(data, indent=2) if as_json else format_status(data))
        return 0
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print(format_status(data))
        print(format_overview(data) if "queue" in data else f"warning: {data['redis_error']}")
    return 0


def _worker(config: Config, args: argparse.Namespace) -> int:
    Worker(_redis(config), config.app, lambda progress: Deployment(config, progress=progress),
           lock_ttl=config.lock_ttl, name=args.name, host_lock=HostLock(config.state_dir / "lock")).run()
    return 0


def _enqueue(config: Config, args: argparse.Namespace) -> int:
    queue = DeployQueue(_redis(config), config.app)
    live = live_reader(config)(config.app)
    done = queue.enqueue(args.version, source="rollback" if args.rollback else "cli", requested_by=_who(),
                         digest=args.digest, live=Live(live.version, live.color, live.digest) if live else None)
    print(done.job.id)
    print(f"watcher: {done.message}", file=sys.stderr)
    if not args.wait:
        return 0
    progress = Progress()

    def show(job: Job) -> None:
        where = f" on {job.worker}, phase {job.phase}" if job.status == "running" else ""
        again = f" (attempt {job.attempts})" if job.attempts > 1 else ""
        progress.say(f"job {job.id}: {job.status}{where}{again}")

    job = queue.follow(done.job.id, show)
    print(job.describe())
    return 0 if job.status == "succeeded" else 1


def _queue(config: Config, args: argparse.Namespace) -> int:
    queue = DeployQueue(_redis(config), config.app)
    running, waiting = queue.running(), queue.waiting()
    if args.json:
        print(json.dumps({"running": [j.to_dict() for j in running], "waiting": [j.to_dict() for j in waiting]},
                         indent=2))
        return 0
    for job in running + waiting:
        print(job.describe())
    if not running and not waiting:
        print("no job running or waiting")
    paused = Suspension(queue.client, config.app).paused()
    if paused:
        print(f"paused by {paused.get('by')} since {paused.get('since')}"
              + (f": {paused['reason']}" if paused.get("reason") else ""))
    return 0


def _history(config: Config, args: argparse.Namespace) -> int:
    jobs = DeployQueue(_redis(config), config.app).history(args.n)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
    else:
        print("\n".join(job.describe() for job in jobs) if jobs else "no finished job yet")
    return 0


def _cancel(config: Config, args: argparse.Namespace) -> int:
    job = DeployQueue(_redis(config), config.app).cancel(args.job, by=_who())
    print(job.describe())
    return 0


def _pause(config: Config, args: argparse.Namespace) -> int:
    info = Suspension(_redis(config), config.app).pause(by=_who(), reason=args.reason)
    print(f"paused by {info['by']}: workers finish the job in flight and start no new one until `watcher resume`")
    return 0


def _resume(config: Config, args: argparse.Namespace) -> int:
    lifted = Suspension(_redis(config), config.app).resume()
    print(f"resumed (paused by {lifted.get('by')} since {lifted.get('since')})" if lifted else "was not paused")
    return 0


def _unlock(config: Config, args: argparse.Namespace) -> int:
    client = _redis(config)
    holder = holder_of(client, config.app)
    if holder is None:
        print("the deploy lock is free")
        return 0
    if not args.force:
        raise UsageError(f"{describe_holder(holder)} holds the deploy lock; it expires by itself "
                         f"{config.lock_ttl:g}s after its holder dies. Remove it anyway with --force")
    removed = force_unlock(client, config.app)
    print(f"watcher: warning: removed the deploy lock of {describe_holder(removed)}. If that process is "
          "alive, it fails its next lock check and aborts without switching traffic, but finishes the "
          "step it is in (e.g. starting containers) first", file=sys.stderr)
    return 0


QUEUE_COMMANDS = {"worker": _worker, "enqueue": _enqueue, "queue": _queue, "history": _history,
                  "cancel": _cancel, "pause": _pause, "resume": _resume, "unlock": _unlock}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(message)s" if args.command in ("worker", "serve", "run") else "watcher: %(message)s")
    interrupts.install()
    try:
        return run(args, parser)
    except WatcherError as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except REDIS_DOWN as exc:
        print(f"watcher: error: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt):
        print("watcher: interrupted; the live colour still serves (see `watcher status`)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
