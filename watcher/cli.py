"""The `watcher` command: a thin face over the engine and the queue (watcher/queue).

Exit codes: 0 success, 1 the operation failed (nothing half-done; for `enqueue --wait`: the job
did not succeed), 2 bad input or config, 3 the deploy lock is held, 130 interrupted (the live
colour still serves).

One file configures every app on the host; each per-app command takes `--app NAME` (needed only
when several apps are configured). `status`, `pause --all`, `resume --all`, `worker`, `serve` and
`run` cover every app at once.

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
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from watcher import history, interrupts, logs
from watcher.config import Config, HostConfig, find_config, load_host
from watcher.engine.deployment import Deployment
from watcher.engine.maintenance import cleanup, reset
from watcher.engine.progress import Progress
from watcher.engine.run import DeployResult, Guard, run_of
from watcher.engine.status import format_status, format_summary, status
from watcher.errors import ConfigError, Interrupted, UsageError, WatcherError
from watcher.freeze import FreezeSchedule, moment
from watcher.host_lock import HostLock
from watcher.notify import Notifier, notifier_for
from watcher.queue import (
    DeployLock,
    DeployQueue,
    Job,
    Live,
    Suspension,
    Worker,
    describe_holder,
    force_unlock,
    format_overview,
    holder_of,
    overview,
)
from watcher.queue.connection import REDIS_DOWN, connect, masked
from watcher.queue.job import Status
from watcher.queue.pool import NOTHING_RUN, WorkerPool
from watcher.queue.promotion import Promotions
from watcher.queue.suspension import describe as describe_pause
from watcher.queue.suspension import parse_until
from watcher.triggers import commands as trigger_commands
from watcher.triggers.commands import HELP as TRIGGER_HELP
from watcher.triggers.commands import add_parsers as add_trigger_parsers
from watcher.triggers.commands import quiet_libraries
from watcher.triggers.sink import live_reader
from watcher.validation import validate_tag

DESCRIPTION = (
    """\
Zero-downtime blue-green deploys for Docker Compose apps behind Caddy.

Per-app commands take --app NAME when the config has several apps.

commands:
  apps                   the configured apps: image, compose project, Caddy route, policy
  deploy VERSION         pull VERSION, start it beside the live colour, wait until healthy,
                         switch Caddy, verify, drain and stop the old colour
  status [--json]        live colour and version, rollback target, containers, warnings
                         (several apps and no --app: one line per app)
  rollback [--to V]      back to the previous version (instant while its colour is retained)
  promote                switch to the version a manual deploy ([promote] mode = "manual")
                         left healthy beside the live colour (with Redis: a job, followed
                         to its end unless --no-wait)
  abort                  remove the colour awaiting promotion; the live colour is untouched
  cleanup                remove failed or stray colours and unused images (keeps live and rollback)
  reset [--force]        remove both colours and the recorded state (asks first)
  caddyfile              print the Caddyfile routing every configured app (or --app's block)
  init [COMPOSE_FILE]    adopt an existing compose project: colour overlays, config section,
                         Caddy snippet, and the compose changes left as a diff (see init --help)
  help                   this text

the queue (needs Redis: [redis] url or REDIS_URL):
  worker                 run queued jobs of every app (one per app, [worker] concurrency at
                         once) under each app's deploy lock, until SIGTERM
  enqueue VERSION        queue a deploy; prints the job id (--wait: follow it to its end)
  queue [--json]         the running and waiting jobs
  history [-n N] [--since WHEN]
                         finished jobs, newest first: who asked, outcome, duration (every app's
                         without --app; --since 6h, 7d or a date)
  show JOB               one job whole: who asked, digest, each phase's time, outcome, the
                         versions live before and after
  cancel JOB             cancel a waiting job
  pause [--reason TEXT] [--until TIME]
                         workers start no new job (the one in flight finishes); resume undoes
                         it, or TIME does (2h, 30m, 2026-12-04T08:00, UTC unless it says
                         otherwise) (--all: every app)
  unlock --force         remove the deploy lock whoever holds it (it expires by itself anyway)

"""
    + TRIGGER_HELP
    + """

environment: HEALTH_CHECK_TIMEOUT (300s), HEALTH_CHECK_INTERVAL (3s), DRAIN_TIMEOUT (30s),
VERIFY_TIMEOUT, VERIFY_WINDOW, CADDY_ADMIN, WATCHER_CONFIG, REGISTRY_USERNAME, REGISTRY_PASSWORD[_FILE],
REDIS_URL, REDIS_PASSWORD[_FILE], WATCHER_LOCK_TTL (30s), WEBHOOK_SECRET[_FILE],
WEBHOOK_REGISTRY_TOKEN[_FILE], WATCHER_API_TOKEN[_FILE], WEBHOOK_LISTEN, POLL_INTERVAL,
WATCHER_NOTIFY_URLS[_FILE], GITHUB_TOKEN[_FILE]
"""
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-c", "--config", help="config file (default: $WATCHER_CONFIG, ./watcher.toml, ./config/watcher.toml)"
    )
    parser.add_argument(
        "--log-format",
        metavar="text|json",
        help=f"log lines as text (default) or one JSON object each (${logs.ENV})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def per_app(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--app", metavar="NAME", help="the app (needed when several are configured)")
        return p

    def locked(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        per_app(p).add_argument(
            "--wait-lock",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait this long for the deploy lock instead of failing at once",
        )
        return p

    sub.add_parser("apps", help="list the configured apps")
    deploy = locked(sub.add_parser("deploy", help="deploy a version"))
    deploy.add_argument("version")
    deploy.add_argument("--json", action="store_true", help="print the result as JSON")
    deploy.add_argument(
        "--ignore-freeze",
        action="store_true",
        help="deploy even while a scheduled freeze ([[freeze]]) is in force",
    )
    st = per_app(sub.add_parser("status", help="show what is live"))
    st.add_argument("--json", action="store_true")
    rollback = locked(sub.add_parser("rollback", help="go back to the previous version"))
    rollback.add_argument("--to", metavar="VERSION", help="roll back to this version instead")
    rollback.add_argument("--json", action="store_true")
    for action, text in (
        ("promote", "switch to the deploy awaiting promotion"),
        ("abort", "remove the deploy awaiting promotion"),
    ):
        acting = locked(sub.add_parser(action, help=text))
        acting.add_argument("--json", action="store_true", help="print the result (or the job) as JSON")
        acting.add_argument("--no-wait", action="store_true", help="with Redis: queue the job and exit")
    clean = locked(sub.add_parser("cleanup", help="remove stopped or failed colours and unused images"))
    clean.add_argument(
        "--include-rollback", action="store_true", help="also remove the retained rollback target"
    )
    rst = locked(sub.add_parser("reset", help="remove both colours and the state"))
    rst.add_argument("--force", action="store_true", help="do not ask for confirmation")
    per_app(sub.add_parser("caddyfile", help="print the Caddyfile for the configured apps"))
    sub.add_parser("help", help="show this help")

    worker = per_app(sub.add_parser("worker", help="run queued jobs until stopped (SIGTERM)"))
    worker.add_argument("--name", help="worker name in the queue and the lock (default HOST:PID)")
    worker.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the pool's child
    enqueue = per_app(sub.add_parser("enqueue", help="queue a deploy of a version"))
    enqueue.add_argument("version")
    enqueue.add_argument("--digest", help="the image digest the tag should have (e.g. sha256:...)")
    enqueue.add_argument(
        "--rollback",
        action="store_true",
        help="a rollback job: reuse the version's retained colour when there is one",
    )
    enqueue.add_argument(
        "--wait", action="store_true", help="follow the job to its end and exit with its result"
    )
    queue = per_app(sub.add_parser("queue", help="show running and waiting jobs"))
    queue.add_argument("--json", action="store_true")
    history = per_app(sub.add_parser("history", help="show finished jobs (every app's without --app)"))
    history.add_argument("-n", type=int, default=20, metavar="N", help="how many (default 20)")
    history.add_argument(
        "--since",
        metavar="WHEN",
        help="only jobs that ended since WHEN: 6h, 7d, 2026-12-01, 2026-12-01T08:00",
    )
    history.add_argument("--json", action="store_true")
    show = per_app(sub.add_parser("show", help="one job whole: who asked, digest, phases, outcome"))
    show.add_argument("job")
    show.add_argument("--json", action="store_true")
    cancel = per_app(sub.add_parser("cancel", help="cancel a waiting job"))
    cancel.add_argument("job")
    pause = per_app(sub.add_parser("pause", help="start no new job until resume"))
    pause.add_argument("--reason", default="", metavar="TEXT")
    pause.add_argument(
        "--until",
        metavar="TIME",
        help="lift the pause by itself then: a span ahead (2h, 30m, 1d) "
        "or a date-time (2026-12-04T08:00; UTC unless it names "
        "an offset)",
    )
    pause.add_argument("--all", action="store_true", help="every configured app")
    resume = per_app(sub.add_parser("resume", help="lift a pause"))
    resume.add_argument("--all", action="store_true", help="every configured app")
    unlock = per_app(sub.add_parser("unlock", help="remove the deploy lock (operator use)"))
    unlock.add_argument("--force", action="store_true", help="really remove it, whoever holds it")
    add_trigger_parsers(sub)
    from watcher.adoption import add_parser as add_init_parser

    add_init_parser(sub)
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
    redis_lock = (
        DeployLock(
            _redis(config), config.app, ttl=config.lock_ttl, purpose=purpose, prefix=config.redis_prefix
        ).acquire(wait)
        if config.redis_url
        else None
    )
    try:
        host_lock = HostLock(config.state_dir / "lock").acquire(
            purpose, wait=max(0.0, wait - (time.monotonic() - started))
        )
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
    if args.command == "init":
        from watcher.adoption import run_init

        return run_init(args)
    host = load_host(find_config(args.config, os.environ))

    if args.command in HOST_COMMANDS:
        return HOST_COMMANDS[args.command](host, args)
    if args.command in ("serve", "run"):
        return trigger_commands.serve(host, args, status_data, _pool if args.command == "run" else None)
    config = host.app(getattr(args, "app", None))
    if args.command in QUEUE_COMMANDS:
        return QUEUE_COMMANDS[args.command](config, args)
    if args.command == "check-tags":
        return trigger_commands.check_tags(config, args)

    if args.command == "reset" and not args.force:
        if not sys.stdin.isatty():
            raise UsageError("reset removes both colours and the state: confirm with --force")
        answer = input(f"Remove both colours of {config.app} and its state? Nothing will serve. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("reset cancelled")
            return 1

    if args.command in ("promote", "abort"):
        return _act(config, args)
    if args.command == "deploy" and not args.ignore_freeze:
        _refuse_if_frozen(config, args.version)
    with _locked(config, f"{args.command} {getattr(args, 'version', '')}".strip(), args.wait_lock) as lock:
        engine = Deployment(config)
        if args.command in ("deploy", "rollback"):
            try:
                if args.command == "deploy":
                    result = engine.deploy(args.version, guard=lock)
                else:
                    result = engine.rollback(guard=lock, to=args.to)
            except WatcherError as exc:
                if args.json:  # a failed run's receipt says what users got while it unwound
                    receipt = run.receipt if (run := run_of(exc)) else None
                    print(
                        json.dumps(
                            {"error": str(exc), "receipt": receipt.to_dict() if receipt else None}, indent=2
                        )
                    )
                raise
            _print_result(result, args.json)
        elif args.command == "cleanup":
            removed = cleanup(engine, guard=lock, include_rollback=args.include_rollback)
            print("removed: " + ", ".join(removed) if removed else "nothing to clean up")
        elif args.command == "reset":
            removed = reset(engine, guard=lock)
            print("removed: " + ", ".join(removed))
    return 0


def _act(config: Config, args: argparse.Namespace) -> int:
    """`watcher promote` / `watcher abort`: a job for the worker when a queued deploy waits (one
    colour swap at a time per app), else run here under the locks like `watcher deploy` (no
    Redis, or the wait was made by `watcher deploy`)."""
    action = args.command
    queue = (
        DeployQueue(_redis(config), config.app, prefix=config.redis_prefix, retention=config.history)
        if config.redis_url
        else None
    )
    if queue is None or Promotions(queue).waiting() is None:  # none, or `watcher deploy` made the wait
        with _locked(config, action, args.wait_lock) as lock:
            engine = Deployment(config)
            if action == "promote":
                _print_result(engine.promote(guard=lock), args.json)
            else:
                done = engine.abort_waiting(guard=lock)
                print(json.dumps({"message": done}) if args.json else done)
        return 0
    asked = Promotions(queue).ask(action, requested_by=_who())
    assert asked.job is not None
    print(asked.job.id)
    print(f"watcher: {asked.message}", file=sys.stderr)
    if args.no_wait:
        return 0
    progress = Progress()
    job = queue.follow(
        asked.job.id,
        lambda job: progress.say(
            f"job {job.id}: {job.status}" + (f", phase {job.phase}" if job.phase else "")
        ),
    )
    print(json.dumps(job.to_dict(), indent=2) if args.json else job.describe())
    return 0 if job.status is Status.SUCCEEDED else 1


def _refuse_if_frozen(config: Config, version: str) -> None:
    """`watcher deploy` in a scheduled freeze: refused, saying both ways on (a rollback never is)."""
    hold = FreezeSchedule(config.freezes).hold()
    if hold is not None:
        raise UsageError(
            f"{config.app} is {hold.describe()}: nothing deployed. `watcher enqueue {version}` "
            f"deploys it when the freeze ends; `watcher deploy --ignore-freeze {version}` deploys it now"
        )


def status_data(config: Config) -> dict[str, Any]:
    """What `status --json` prints for one app; GET /status of `watcher serve` answers the same."""
    host_holder = HostLock(config.state_dir / "lock").holder()
    data = status(Deployment(config), host_holder)
    if not config.redis_url:
        return data
    try:
        data.update(overview(_redis(config), config.app, config.redis_prefix, FreezeSchedule(config.freezes)))
    except REDIS_DOWN as exc:
        data["redis_error"] = f"cannot reach Redis at {masked(config.redis_url)}: {exc}"
    data["lock"] = data.get("lock") or host_holder
    return data


def _status(host: HostConfig, args: argparse.Namespace) -> int:
    if args.app is None and len(host.apps) > 1:
        every = {name: status_data(config) for name, config in host.apps.items()}
        print(json.dumps(every, indent=2) if args.json else format_summary(list(every.values())))
        return 0
    config = host.app(args.app)
    data = status_data(config)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(format_status(data))
    if config.redis_url:
        print(format_overview(data) if "queue" in data else f"warning: {data['redis_error']}")
    return 0


def _apps(host: HostConfig, args: argparse.Namespace) -> int:
    from watcher.triggers.policy import build_policy

    for config in host.apps.values():
        route = f"{config.route.site}{config.route.path or ''}"
        print(
            f"{config.app}: {config.image}, compose project {config.project()} in {config.project_dir}, "
            f"route {route}, policy {build_policy(config.policy).describe()}"
        )
    return 0


def _caddyfile(host: HostConfig, args: argparse.Namespace) -> int:
    from watcher.caddyfile import render

    print(render(host, host.chosen(args.app)), end="")
    return 0


def _pool(host: HostConfig, args: argparse.Namespace) -> int:
    """Every app's queue in one worker (`--app`: one app's); each job in a child process."""
    if args.one:
        return _one_job(host.app(args.app), args)
    apps = host.chosen(args.app)
    name = args.name or f"{socket.gethostname()}:{os.getpid()}"
    argv = [sys.executable, "-m", "watcher", "--config", str(host.source), "worker", "--one", "--name", name]

    def spawn(app: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*argv, "--app", app])

    client = _redis(apps[0])
    notifier = notifier_for(apps)
    workers = {config.app: _app_worker(config, name, client, notifier) for config in apps}
    try:
        WorkerPool(
            client,
            list(workers),
            spawn,
            lambda app: workers[app].run_once(),
            concurrency=host.concurrency,
            name=name,
            prefix=host.redis_prefix,
            freezes={app: worker.queue.freezes for app, worker in workers.items()},
        ).run()
    finally:
        if notifier is not None:
            notifier.close()  # what is still queued gets a few seconds, no more
    return 0


def _app_worker(
    config: Config, name: str | None, client: redis.Redis | None = None, notifier: Notifier | None = None
) -> Worker:
    return Worker(
        client or _redis(config),
        config.app,
        lambda progress: Deployment(config, progress=progress),
        lock_ttl=config.lock_ttl,
        name=name,
        host_lock=HostLock(config.state_dir / "lock"),
        prefix=config.redis_prefix,
        retention=config.history,
        observer=notifier,
        freezes=FreezeSchedule(config.freezes),
    )


def _one_job(config: Config, args: argparse.Namespace) -> int:
    """The pool's child: the next job of one app, then exit (NOTHING_RUN: the locks were taken).
    It tells its own notifier, and gives it a few seconds to send before the process ends."""
    _die_with_parent()
    notifier = notifier_for([config])
    try:
        return 0 if _app_worker(config, args.name, notifier=notifier).run_once() else NOTHING_RUN
    finally:
        if notifier is not None:
            notifier.close()


def _die_with_parent() -> None:
    """SIGTERM when the pool dies however it dies (Linux), so the swap unwinds to the live colour."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the pool died before the call took effect
        raise Interrupted(15)


def _pause_all(host: HostConfig, args: argparse.Namespace) -> int:
    args.until_at = _until(args.until)  # read once, so every app of `--all` lifts at the same moment
    return _each(host, args, _pause)


def _resume_all(host: HostConfig, args: argparse.Namespace) -> int:
    return _each(host, args, _resume)


def _each(
    host: HostConfig, args: argparse.Namespace, command: Callable[[Config, argparse.Namespace], int]
) -> int:
    """`--all`: the command for every app; else for `--app` (or the only one)."""
    if not args.all:
        return command(host.app(args.app), args)
    if args.app:
        raise UsageError("--all and --app: choose one")
    for config in host.apps.values():
        command(config, args)
    return 0


def _enqueue(config: Config, args: argparse.Namespace) -> int:
    queue = DeployQueue(_redis(config), config.app, prefix=config.redis_prefix, retention=config.history)
    digest = args.digest
    if not args.rollback:  # a rollback may reuse a retained colour whose tag left the registry
        digest = _check_registry(config, args.version, args.digest)  # the job deploys this digest
    live = live_reader(config)(config.app)
    done = queue.enqueue(
        args.version,
        source="rollback" if args.rollback else "cli",
        requested_by=_who(),
        digest=digest,
        live=Live(live.version, live.color, live.digest) if live else None,
    )
    print(done.job.id)
    hold = FreezeSchedule(config.freezes).hold() if not args.rollback and not done.noop else None
    print(
        f"watcher: {done.message}" + (f"; it waits: {config.app} is {hold.describe()}" if hold else ""),
        file=sys.stderr,
    )
    if not args.wait:
        return 0
    progress = Progress()

    def show(job: Job) -> None:
        where = f" on {job.worker}, phase {job.phase}" if job.status == "running" else ""
        again = f" (attempt {job.attempts})" if job.attempts > 1 else ""
        progress.say(f"job {job.id}: {job.status}{where}{again}")

    job = queue.follow(done.job.id, show)
    print(job.describe())
    return 0 if job.status in ("succeeded", "awaiting promotion") else 1


def _check_registry(config: Config, version: str, digest: str | None) -> str:
    """A tag the registry does not have is refused now, as `deploy` would, not later in a worker;
    returns its digest, which the job is pinned to."""
    from watcher.backends.registry import ImageRef, NotFound, RegistryClient, RegistryError

    ref = ImageRef.parse(config.image)
    with RegistryClient(username=config.registry_username, password=config.registry_password) as client:
        try:
            found = client.manifest_digest(ref, version)
        except NotFound:
            raise UsageError(f"{ref}:{version} does not exist in the registry: nothing queued") from None
        except RegistryError as exc:
            raise WatcherError(
                f"cannot check {ref}:{version} in the registry ({exc}): nothing queued"
            ) from None
    if digest and digest != found:
        raise UsageError(f"{ref}:{version} is {found} in the registry, not {digest}: nothing queued")
    return found


def _queue(config: Config, args: argparse.Namespace) -> int:
    queue = DeployQueue(_redis(config), config.app, prefix=config.redis_prefix, retention=config.history)
    running, waiting = queue.running(), queue.waiting()
    promotion = Promotions(queue).waiting()
    if args.json:
        print(
            json.dumps(
                {
                    "running": [j.to_dict() for j in running],
                    "waiting": [j.to_dict() for j in waiting],
                    "awaiting_promotion": promotion.to_dict() if promotion else None,
                },
                indent=2,
            )
        )
        return 0
    for job in running + waiting:
        print(job.describe())
    if promotion:
        print(f"{promotion.describe()} (until {promotion.until}: `watcher promote` or `watcher abort`)")
    if not running and not waiting and not promotion:
        print("no job running or waiting")
    paused = Suspension(queue.client, config.app, config.redis_prefix).paused()
    if paused:
        print(describe_pause(paused))
    hold = FreezeSchedule(config.freezes).hold()
    if hold:
        print(hold.describe() + ("; waiting deploys are held until then" if waiting else ""))
    return 0


def _queues(host: HostConfig, app: str | None) -> list[DeployQueue]:
    configs = host.chosen(app)
    client = _redis(configs[0])
    return [DeployQueue(client, c.app, prefix=c.redis_prefix, retention=c.history) for c in configs]


def _history(host: HostConfig, args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UsageError(f"-n: expected at least 1, got {args.n}")
    since = history.parse_since(args.since) if args.since else None
    jobs = history.newest_first(_queues(host, args.app), args.n, since)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
    elif not jobs:
        print("no finished job" + (f" since {args.since}" if args.since else " yet"))
    else:
        several = len(host.chosen(args.app)) > 1
        print("\n".join((f"{job.app}: " if several else "") + job.describe() for job in jobs))
    return 0


def _show(host: HostConfig, args: argparse.Namespace) -> int:
    job = history.find(_queues(host, args.app), args.job)
    print(json.dumps(job.to_dict(), indent=2) if args.json else history.show(job))
    return 0


def _cancel(config: Config, args: argparse.Namespace) -> int:
    job = DeployQueue(
        _redis(config), config.app, prefix=config.redis_prefix, retention=config.history
    ).cancel(args.job, by=_who())
    print(job.describe())
    return 0


def _pause(config: Config, args: argparse.Namespace) -> int:
    until = args.until_at
    info = Suspension(_redis(config), config.app, config.redis_prefix).pause(
        by=_who(), reason=args.reason, until=until
    )
    _notify(
        config, lambda notifier: notifier.paused(config.app, info["by"], _pause_detail(args.reason, until))
    )
    ends = f"{moment(until)} (or `watcher resume`)" if until is not None else "`watcher resume`"
    print(
        f"{config.app}: paused by {info['by']}: workers finish the job in flight and start no new one until {ends}"
    )
    return 0


def _until(text: str | None) -> float | None:
    """`--until` as a Unix time (None: until resumed); a UsageError for junk or the past."""
    if text is None:
        return None
    try:
        return parse_until(text)
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None


def _pause_detail(reason: str, until: float | None) -> str:
    """What the pause notification says: the reason, and when the pause ends by itself."""
    ends = f"until {moment(until)}" if until is not None else ""
    return ": ".join(part for part in (ends, reason) if part)


def _resume(config: Config, args: argparse.Namespace) -> int:
    lifted = Suspension(_redis(config), config.app, config.redis_prefix).resume()
    if lifted:
        _notify(config, lambda notifier: notifier.resumed(config.app, _who()))
    print(
        f"{config.app}: resumed (paused by {lifted.get('by')} since {lifted.get('since')})"
        if lifted
        else f"{config.app}: was not paused"
    )
    return 0


def _notify(config: Config, tell: Callable[[Notifier], None]) -> None:
    """An event of a short-lived command, sent before it exits (a few seconds at most)."""
    notifier = notifier_for([config])
    if notifier is not None:
        tell(notifier)
        notifier.close()


def _unlock(config: Config, args: argparse.Namespace) -> int:
    client = _redis(config)
    holder = holder_of(client, config.app, config.redis_prefix)
    if holder is None:
        print("the deploy lock is free")
        return 0
    if not args.force:
        raise UsageError(
            f"{describe_holder(holder)} holds the deploy lock; it expires by itself "
            f"{config.lock_ttl:g}s after its holder dies. Remove it anyway with --force"
        )
    removed = force_unlock(client, config.app, config.redis_prefix)
    print(
        f"watcher: warning: removed the deploy lock of {describe_holder(removed)}. If that process is "
        "alive, it fails its next lock check and aborts without switching traffic, but finishes the "
        "step it is in (e.g. starting containers) first",
        file=sys.stderr,
    )
    return 0


QUEUE_COMMANDS = {"enqueue": _enqueue, "queue": _queue, "cancel": _cancel, "unlock": _unlock}
HOST_COMMANDS = {
    "status": _status,
    "apps": _apps,
    "caddyfile": _caddyfile,
    "worker": _pool,
    "pause": _pause_all,
    "resume": _resume_all,
    "history": _history,
    "show": _show,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_format = logs.chosen(args.log_format, os.environ)
    if log_format not in logs.FORMATS:
        print(
            f"watcher: error: --log-format / {logs.ENV}: expected one of {', '.join(logs.FORMATS)}, "
            f"got {log_format!r}",
            file=sys.stderr,
        )
        return 2
    logs.configure(log_format, daemon=args.command in ("worker", "serve", "run"))
    quiet_libraries()
    interrupts.install()
    try:
        return run(args, parser)
    except BrokenPipeError:
        # `watcher status | head -3`: the reader left; say nothing more (stdout is gone).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
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
