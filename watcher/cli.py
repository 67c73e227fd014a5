"""The `watcher` command: a thin face over each app's owner (watcher/host.py) and the engine.

Exit codes: 0 success, 1 the operation failed (nothing half-done; for `enqueue --wait`: the job
did not succeed), 2 bad input or config, 3 the deploy lock is held, 130 interrupted (the live
colour still serves).

One file configures every app on the host; each per-app command takes `--app NAME` (needed only
when several apps are configured). `status`, `pause --all`, `resume --all`, `worker`, `serve` and
`run` cover every app at once. A verb parses, makes one call to the App or the Host, and prints.

The deploy locks: every writer of a stack (deploy, rollback, cleanup, reset and the queue worker)
takes the host lock in the state directory (a flock, watcher/host_lock.py), so a host CLI and a
containerised worker sharing the project directory exclude each other whatever their config says.
With Redis configured (`[redis] url` or REDIS_URL) they take the app's Redis lock first, the one
the workers fence their writes with; without Redis the queue commands are off.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from typing import Any

from watcher import DISTRIBUTION, history, interrupts, logs, output
from watcher.config import find_config, load_host
from watcher.engine.deployment import Deployment
from watcher.engine.maintenance import cleanup, reset
from watcher.engine.run import DeployResult, Guard, run_of
from watcher.engine.status import format_status, format_summary, status
from watcher.errors import Interrupted, UsageError, WatcherError
from watcher.freeze import moment
from watcher.host import App, Host
from watcher.host_lock import HostLock
from watcher.progress import Progress
from watcher.queue import Job, Worker, describe_holder, format_overview, overview
from watcher.queue.connection import REDIS_DOWN, masked
from watcher.queue.job import Status
from watcher.queue.pool import NOTHING_RUN, WorkerPool
from watcher.queue.suspension import describe as describe_pause
from watcher.queue.suspension import parse_until
from watcher.triggers import commands as trigger_commands
from watcher.triggers.commands import HELP as TRIGGER_HELP
from watcher.triggers.commands import add_parsers as add_trigger_parsers
from watcher.triggers.commands import quiet_libraries
from watcher.validation import validate_tag

DESCRIPTION = (
    """\
Zero-downtime blue-green deploys for Docker Compose apps behind Caddy.

Per-app commands take --app NAME when the config has several apps. Those that print a result
take --json: one JSON object, "schema": 1 first (docs/cli.md).

commands:
  apps                   the configured apps: image, compose project, Caddy route, policy
  deploy VERSION         pull VERSION, start it beside the live colour, wait until healthy,
                         switch Caddy, verify, drain and stop the old colour
  status [--json]        live colour and version, rollback target, containers, warnings
                         (several apps and no --app: one line per app)
  rollback [--to V]      back to the previous version (instant while its colour is retained;
                         one that never passed verification only when named with --to)
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
  resume                 lift the pause (--all: every app)
  unlock --force         remove the deploy lock whoever holds it (it expires by itself anyway)

"""
    + TRIGGER_HELP
    + """

environment: HEALTH_CHECK_TIMEOUT (300s), HEALTH_CHECK_INTERVAL (3s), DRAIN_TIMEOUT (30s),
VERIFY_TIMEOUT, VERIFY_WINDOW, CADDY_ADMIN, WATCHER_CONFIG, REGISTRY_USERNAME[_FILE], REGISTRY_PASSWORD[_FILE],
REDIS_URL, REDIS_PASSWORD[_FILE], WATCHER_LOCK_TTL (30s), WEBHOOK_SECRET[_FILE],
WEBHOOK_REGISTRY_TOKEN[_FILE], WATCHER_API_TOKEN[_FILE], WEBHOOK_SECRET_PREVIOUS[_FILE],
WATCHER_API_TOKEN_PREVIOUS[_FILE], WEBHOOK_LISTEN, POLL_INTERVAL, WATCHER_NOTIFY_URLS[_FILE],
GITHUB_TOKEN[_FILE]
"""
)


Arg = tuple[tuple[str, ...], dict[str, Any]]
APP: Arg = (("--app",), {"metavar": "NAME", "help": "the app (needed when several are configured)"})
WAIT_LOCK: Arg = (
    ("--wait-lock",),
    {
        "type": float,
        "default": 0.0,
        "metavar": "SECONDS",
        "help": "wait this long for the deploy lock instead of failing at once",
    },
)
JSON: Arg = (("--json",), {"action": "store_true", "help": "print the result as JSON"})
ALL: Arg = (("--all",), {"action": "store_true", "help": "every configured app"})
NAME: Arg = (("--name",), {"help": "worker name in the queue and the lock (default HOST:PID)"})


def flag(name: str, text: str) -> Arg:
    return ((name,), {"action": "store_true", "help": text})


def positional(name: str) -> Arg:
    return ((name,), {})


#: Each verb: its help line and its arguments (the handlers are in VERBS, below).
PARSERS: dict[str, tuple[str, tuple[Arg, ...]]] = {
    "apps": ("list the configured apps", (JSON,)),
    "deploy": (
        "deploy a version",
        (APP, WAIT_LOCK, positional("version"), JSON)
        + (flag("--ignore-freeze", "deploy even while a scheduled freeze ([[freeze]]) is in force"),),
    ),
    "status": ("show what is live", (APP, JSON)),
    "rollback": (
        "go back to the previous version",
        (
            APP,
            WAIT_LOCK,
            (
                ("--to",),
                {
                    "metavar": "VERSION",
                    "help": "roll back to this version instead (needed for a previous version "
                    "that never passed verification)",
                },
            ),
            JSON,
        ),
    ),
    "promote": (
        "switch to the deploy awaiting promotion",
        (APP, WAIT_LOCK, JSON, flag("--no-wait", "with Redis: queue the job and exit")),
    ),
    "abort": (
        "remove the deploy awaiting promotion",
        (APP, WAIT_LOCK, JSON, flag("--no-wait", "with Redis: queue the job and exit")),
    ),
    "cleanup": (
        "remove stopped or failed colours and unused images",
        (APP, WAIT_LOCK, flag("--include-rollback", "also remove the retained rollback target"), JSON),
    ),
    "reset": (
        "remove both colours and the state",
        (APP, WAIT_LOCK, flag("--force", "do not ask for confirmation")),
    ),
    "caddyfile": ("print the Caddyfile for the configured apps", (APP,)),
    "help": ("show this help", ()),
    "worker": (
        "run queued jobs until stopped (SIGTERM)",
        (APP, NAME, (("--one",), {"action": "store_true", "help": argparse.SUPPRESS})),  # the pool's child
    ),
    "enqueue": (
        "queue a deploy of a version",
        (
            APP,
            positional("version"),
            (("--digest",), {"help": "the image digest the tag should have (e.g. sha256:...)"}),
            flag("--rollback", "a rollback job: reuse the version's retained colour when there is one"),
            flag("--wait", "follow the job to its end and exit with its result"),
            JSON,
        ),
    ),
    "queue": ("show running and waiting jobs", (APP, JSON)),
    "history": (
        "show finished jobs (every app's without --app)",
        (
            APP,
            (("-n",), {"type": int, "default": 20, "metavar": "N", "help": "how many (default 20)"}),
            (
                ("--since",),
                {
                    "metavar": "WHEN",
                    "help": "only jobs that ended since WHEN: 6h, 7d, 2026-12-01, 2026-12-01T08:00",
                },
            ),
            JSON,
        ),
    ),
    "show": ("one job whole: who asked, digest, phases, outcome", (APP, positional("job"), JSON)),
    "cancel": ("cancel a waiting job", (APP, positional("job"))),
    "pause": (
        "start no new job until resume",
        (
            APP,
            (("--reason",), {"default": "", "metavar": "TEXT"}),
            (
                ("--until",),
                {
                    "metavar": "TIME",
                    "help": "lift the pause by itself then: a span ahead (2h, 30m, 1d) or a date-time "
                    "(2026-12-04T08:00; UTC unless it names an offset)",
                },
            ),
            ALL,
            JSON,
        ),
    ),
    "resume": ("lift a pause", (APP, ALL, JSON)),
    "unlock": (
        "remove the deploy lock (operator use)",
        (APP, flag("--force", "really remove it, whoever holds it")),
    ),
}


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        try:
            found = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            found = f"unknown ({DISTRIBUTION} is not installed: run from a source tree)"
        print(f"watcher {found}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher",
        usage="%(prog)s [-h] [--version] [-c CONFIG] [--log-format text|json] COMMAND ...",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c", "--config", help="config file (default: $WATCHER_CONFIG, ./watcher.toml, ./config/watcher.toml)"
    )
    parser.add_argument(
        "--log-format",
        metavar="text|json",
        help=f"log lines as text (default) or one JSON object each (${logs.ENV})",
    )
    parser.add_argument("--version", action=_Version, help="print watcher's version and exit")
    # The description lists the commands with what they take; argparse's own list would repeat them.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    for verb, (text, arguments) in PARSERS.items():
        verb_parser = sub.add_parser(verb, help=text)
        for names, options in arguments:
            verb_parser.add_argument(*names, **options)
    add_trigger_parsers(sub)
    from watcher.adoption import add_parser as add_init_parser

    add_init_parser(sub)
    return parser


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@contextmanager
def _locked(app: App, purpose: str, wait: float) -> Iterator[Guard]:
    """The Redis deploy lock when Redis is configured (the guard), then the host lock, always."""
    started = time.monotonic()
    redis_lock = app.lock(purpose).acquire(wait) if app.host.redis else None
    try:
        host_lock = HostLock(app.config.state.dir / "lock").acquire(
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
        print(output.dumps(result.to_dict()))
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
    host = Host(load_host(find_config(args.config, os.environ)))
    try:
        if args.command in HOST_VERBS:
            return HOST_VERBS[args.command](host, args)
        return APP_VERBS[args.command](host.app(getattr(args, "app", None)), args)
    finally:
        host.close()


# -- the engine, here and now, under the locks ---------------------------------------------------


def _engine(app: App, args: argparse.Namespace, work: Callable[[Deployment, Guard], None]) -> int:
    purpose = f"{args.command} {getattr(args, 'version', '')}".strip()
    with _locked(app, purpose, args.wait_lock) as lock:
        engine = Deployment(app.config)
        try:
            work(engine, lock)
        except WatcherError as exc:
            if getattr(args, "json", False) and args.command in ("deploy", "rollback"):
                # a failed run's receipt says what users got while it unwound
                receipt = run.receipt.to_dict() if (run := run_of(exc)) and run.receipt else None
                print(output.dumps({"error": str(exc), "receipt": receipt}))
            raise
    return 0


def _deploy(app: App, args: argparse.Namespace) -> int:
    hold = None if args.ignore_freeze else app.freezes.hold()
    if hold is not None:  # refused in a scheduled freeze, saying both ways on (a rollback never is)
        raise UsageError(
            f"{app.name} is {hold.describe()}: nothing deployed. `watcher enqueue {args.version}` "
            f"deploys it when the freeze ends; `watcher deploy --ignore-freeze {args.version}` deploys it now"
        )
    return _engine(
        app, args, lambda engine, lock: _print_result(engine.deploy(args.version, guard=lock), args.json)
    )


def _rollback(app: App, args: argparse.Namespace) -> int:
    return _engine(
        app, args, lambda engine, lock: _print_result(engine.rollback(guard=lock, to=args.to), args.json)
    )


def _cleanup(app: App, args: argparse.Namespace) -> int:
    def work(engine: Deployment, lock: Guard) -> None:
        removed = cleanup(engine, guard=lock, include_rollback=args.include_rollback)
        if args.json:
            print(output.dumps({"removed": removed}))
        else:
            print("removed: " + ", ".join(removed) if removed else "nothing to clean up")

    return _engine(app, args, work)


def _reset(app: App, args: argparse.Namespace) -> int:
    if not args.force:
        if not sys.stdin.isatty():
            raise UsageError("reset removes both colours and the state: confirm with --force")
        answer = input(f"Remove both colours of {app.name} and its state? Nothing will serve. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("reset cancelled")
            return 1
    return _engine(app, args, lambda engine, lock: print("removed: " + ", ".join(reset(engine, guard=lock))))


def _act(app: App, args: argparse.Namespace) -> int:
    """`watcher promote` / `watcher abort`: a job for the worker when a queued deploy waits (one
    colour swap at a time per app), else run here under the locks like `watcher deploy` (no
    Redis, or the wait was made by `watcher deploy`)."""
    action = args.command
    if not app.host.redis or app.promotions.awaited() is None:  # none, or `watcher deploy` made it

        def work(engine: Deployment, lock: Guard) -> None:
            if action == "promote":
                _print_result(engine.promote(guard=lock), args.json)
            else:
                done = engine.abort_awaited(guard=lock)
                print(output.dumps({"message": done}) if args.json else done)

        return _engine(app, args, work)
    asked = app.act(action, by=_who())
    print(asked.job_id)
    print(f"watcher: {asked.reason}", file=sys.stderr)
    if args.no_wait:
        return 0
    job = _follow(app, asked.job_id)
    print(output.dumps(job.to_dict()) if args.json else job.describe())
    return 0 if job.status is Status.SUCCEEDED else 1


def _follow(app: App, job_id: str | None) -> Job:
    """The job, followed to its end, its steps said as they come."""
    assert job_id is not None
    progress = Progress()

    def show(job: Job) -> None:
        where = f" on {job.worker}, phase {job.phase}" if job.status == "running" else ""
        again = f" (attempt {job.attempts})" if job.attempts > 1 else ""
        progress.say(f"job {job.id}: {job.status}{where}{again}")

    return app.queue.follow(job_id, show)


# -- what is live -----------------------------------------------------------------------------


def status_data(app: App) -> dict[str, Any]:
    """What `status --json` prints for one app; GET /status of `watcher serve` answers the same."""
    host_holder = HostLock(app.config.state.dir / "lock").holder()
    data = status(Deployment(app.config), host_holder)
    if not app.host.redis:
        return data
    try:
        app.continuity.check()  # a Redis that forgot the queue is noticed (and refilled) before it is read
        data.update(overview(app.queue, app.paused(), app.lock_holder()))
    except REDIS_DOWN as exc:
        data["redis_error"] = f"cannot reach Redis at {masked(app.host.config.redis.url)}: {exc}"
    data["lock"] = data.get("lock") or host_holder
    return data


def _status(host: Host, args: argparse.Namespace) -> int:
    if args.app is None and len(host.apps) > 1:
        every = {name: status_data(app) for name, app in host.apps.items()}
        print(output.dumps({"apps": every}) if args.json else format_summary(list(every.values())))
        return 0
    data = status_data(host.app(args.app))
    if args.json:
        print(output.dumps(data))
        return 0
    print(format_status(data))
    if host.redis:
        print(format_overview(data) if "queue" in data else f"warning: {data['redis_error']}")
    return 0


def _apps(host: Host, args: argparse.Namespace) -> int:
    every = [
        {
            "name": app.name,
            "image": app.config.image,
            "project": app.config.project(),
            "project_dir": str(app.config.project_dir),
            "route": f"{app.config.caddy.site}{app.config.caddy.path or ''}",
            "policy": app.policy.describe(),
        }
        for app in host.apps.values()
    ]
    if args.json:
        print(output.dumps({"apps": every}))
        return 0
    for one in every:
        print(
            f"{one['name']}: {one['image']}, compose project {one['project']} in {one['project_dir']}, "
            f"route {one['route']}, policy {one['policy']}"
        )
    return 0


def _caddyfile(host: Host, args: argparse.Namespace) -> int:
    from watcher.caddyfile import render

    print(render(host.config, host.config.chosen(args.app)), end="")
    return 0


# -- the worker -------------------------------------------------------------------------------


def _pool(host: Host, args: argparse.Namespace) -> int:
    """Every app's queue in one worker (`--app`: one app's); each job in a child process."""
    if args.one:
        return _one_job(host.app(args.app), args)
    apps = host.chosen(args.app)
    name = args.name or f"{socket.gethostname()}:{os.getpid()}"
    argv = [
        sys.executable,
        "-m",
        "watcher",
        "--config",
        str(host.config.source),
        "worker",
        "--one",
        "--name",
        name,
    ]

    def spawn(app: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*argv, "--app", app])

    workers = {app.name: _app_worker(app, name) for app in apps}
    WorkerPool(
        host.client,
        {app.name: app.queue for app in apps},
        spawn,
        lambda app: workers[app].run_once(),
        concurrency=host.config.concurrency,
        name=name,
    ).run()
    return 0


def _app_worker(app: App, name: str | None) -> Worker:
    host = app.host
    return Worker(
        host.client,
        app.name,
        lambda progress: Deployment(app.config, progress=progress),
        lock_ttl=host.lock_ttl,
        name=name,
        host_lock=HostLock(app.config.state.dir / "lock"),
        prefix=host.prefix,
        retention=host.retention,
        observer=host.notifier,
        freezes=app.freezes,
        continuity=app.continuity,
    )


def _one_job(app: App, args: argparse.Namespace) -> int:
    """The pool's child: the next job of one app, then exit (NOTHING_RUN: the locks were taken).
    It tells its own notifier, which gets a few seconds to send before the process ends."""
    _die_with_parent()
    return 0 if _app_worker(app, args.name).run_once() else NOTHING_RUN


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


def _serve(host: Host, args: argparse.Namespace) -> int:
    worker = partial(_pool, host) if args.command == "run" else None
    return trigger_commands.serve(host.config, args, status_data, worker)


# -- the queue --------------------------------------------------------------------------------


def _enqueue(app: App, args: argparse.Namespace) -> int:
    # A rollback may reuse a retained colour whose tag left the registry: only a deploy is checked.
    source = "rollback" if args.rollback else "cli"
    done = app.request(args.version, source=source, by=_who(), digest=args.digest)
    if done.status == "unavailable":
        raise WatcherError(done.reason)
    if done.job_id is None:  # the registry has no such tag, or another digest
        raise UsageError(done.reason)
    hold = app.freezes.hold() if not args.rollback and done.created else None
    said = done.reason + (f"; it waits: {app.name} is {hold.describe()}" if hold else "")
    if not args.json:
        print(done.job_id)
    print(f"watcher: {said}", file=sys.stderr)
    job = _follow(app, done.job_id) if args.wait else None
    if args.json:
        queued = {"job_id": done.job_id, "created": done.created, "reason": said}
        print(output.dumps({**queued, "job": job.to_dict() if job else None}))
    elif job:
        print(job.describe())
    return 0 if job is None or job.status in ("succeeded", "awaiting promotion") else 1


def _queue(app: App, args: argparse.Namespace) -> int:
    running, waiting = app.queue.running(), app.queue.waiting()
    promotion = app.promotions.awaited()
    if args.json:
        print(
            output.dumps(
                {
                    "running": [j.to_dict() for j in running],
                    "waiting": [j.to_dict() for j in waiting],
                    "awaiting_promotion": promotion.to_dict() if promotion else None,
                }
            )
        )
        return 0
    for job in running + waiting:
        print(job.describe())
    if promotion:
        print(f"{promotion.describe()} (until {promotion.until}: `watcher promote` or `watcher abort`)")
    if not running and not waiting and not promotion:
        print("no job running or waiting")
    paused = app.paused()
    if paused:
        print(describe_pause(paused))
    hold = app.freezes.hold()
    if hold:
        print(hold.describe() + ("; waiting deploys are held until then" if waiting else ""))
    return 0


def _history(host: Host, args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UsageError(f"-n: expected at least 1, got {args.n}")
    since = history.parse_since(args.since) if args.since else None
    apps = host.chosen(args.app)
    jobs = history.newest_first([app.queue for app in apps], args.n, since)
    if args.json:
        print(output.dumps({"jobs": [j.to_dict() for j in jobs]}))
    elif not jobs:
        print("no finished job" + (f" since {args.since}" if args.since else " yet"))
    else:
        print("\n".join((f"{job.app}: " if len(apps) > 1 else "") + job.describe() for job in jobs))
    return 0


def _show(host: Host, args: argparse.Namespace) -> int:
    job = history.find([app.queue for app in host.chosen(args.app)], args.job)
    print(output.dumps(job.to_dict()) if args.json else history.show(job))
    return 0


def _cancel(app: App, args: argparse.Namespace) -> int:
    print(app.queue.cancel(args.job, by=_who()).describe())
    return 0


def _pause_all(host: Host, args: argparse.Namespace) -> int:
    args.until_at = _until(args.until)  # read once, so every app of `--all` lifts at the same moment
    return _each(host, args, _pause)


def _resume_all(host: Host, args: argparse.Namespace) -> int:
    return _each(host, args, _resume)


def _each(host: Host, args: argparse.Namespace, command: Callable[[App, argparse.Namespace], Any]) -> int:
    """`--all`: the command for every app; else for `--app` (or the only one). With --json, what
    each app's command returned, under the command's name (`paused`, `resumed`) by app."""
    if args.all and args.app:
        raise UsageError("--all and --app: choose one")
    apps = host.apps.values() if args.all else [host.app(args.app)]
    done = {app.name: command(app, args) for app in apps}
    if args.json:
        print(output.dumps({f"{args.command}d": done}))
    return 0


def _pause(app: App, args: argparse.Namespace) -> dict[str, Any]:
    until = args.until_at
    info = app.pause(by=_who(), reason=args.reason, until=until)
    ends = f"{moment(until)} (or `watcher resume`)" if until is not None else "`watcher resume`"
    if not args.json:
        print(
            f"{app.name}: paused by {info['by']}: workers finish the job in flight and start no new one "
            f"until {ends}"
        )
    return info


def _until(text: str | None) -> float | None:
    """`--until` as a Unix time (None: until resumed); a UsageError for junk or the past."""
    if text is None:
        return None
    try:
        return parse_until(text)
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None


def _resume(app: App, args: argparse.Namespace) -> dict[str, Any] | None:
    """The pause lifted (None: there was none)."""
    lifted = app.resume(by=_who())
    if not args.json:
        print(
            f"{app.name}: resumed (paused by {lifted.get('by')} since {lifted.get('since')})"
            if lifted
            else f"{app.name}: was not paused"
        )
    return lifted


def _unlock(app: App, args: argparse.Namespace) -> int:
    holder = app.lock_holder()
    if holder is None:
        print("the deploy lock is free")
        return 0
    if not args.force:
        raise UsageError(
            f"{describe_holder(holder)} holds the deploy lock; it expires by itself "
            f"{app.host.lock_ttl:g}s after its holder dies. Remove it anyway with --force"
        )
    removed = app.force_unlock()
    print(
        f"watcher: warning: removed the deploy lock of {describe_holder(removed)}. If that process is "
        "alive, it fails its next lock check and aborts without switching traffic, but finishes the "
        "step it is in (e.g. starting containers) first",
        file=sys.stderr,
    )
    return 0


def _check_tags(app: App, args: argparse.Namespace) -> int:
    return trigger_commands.check_tags(app, args)


#: The verbs that take the whole host, and those that take one app (`--app`, or the only one).
HOST_VERBS: dict[str, Callable[[Host, argparse.Namespace], int]] = {
    "status": _status,
    "apps": _apps,
    "caddyfile": _caddyfile,
    "worker": _pool,
    "serve": _serve,
    "run": _serve,
    "pause": _pause_all,
    "resume": _resume_all,
    "history": _history,
    "show": _show,
}
APP_VERBS: dict[str, Callable[[App, argparse.Namespace], int]] = {
    "deploy": _deploy,
    "rollback": _rollback,
    "promote": _act,
    "abort": _act,
    "cleanup": _cleanup,
    "reset": _reset,
    "enqueue": _enqueue,
    "queue": _queue,
    "cancel": _cancel,
    "unlock": _unlock,
    "check-tags": _check_tags,
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
