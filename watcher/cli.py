"""The `watcher` command: a thin face over the engine (and, later, the queue).

Exit codes: 0 success, 1 the operation failed (nothing half-done), 2 bad input or config,
3 the deploy lock is held, 130 interrupted (the live colour still serves).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

from watcher import interrupts
from watcher.config import Config, find_config, load_config
from watcher.engine.deployment import Deployment, DeployResult
from watcher.engine.maintenance import cleanup, reset
from watcher.engine.status import format_status, status
from watcher.errors import Interrupted, UsageError, WatcherError
from watcher.host_lock import HostLock
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

environment: HEALTH_CHECK_TIMEOUT (300s), HEALTH_CHECK_INTERVAL (3s), DRAIN_TIMEOUT (30s),
VERIFY_TIMEOUT, VERIFY_WINDOW, CADDY_ADMIN, WATCHER_CONFIG, REGISTRY_USERNAME, REGISTRY_PASSWORD[_FILE]
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
    return parser


@contextmanager
def _locked(config: Config, purpose: str, wait: float) -> Iterator[HostLock]:
    lock = HostLock(config.state_dir / "lock").acquire(purpose, wait=wait)
    try:
        yield lock
    finally:
        lock.release()


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
        holder = HostLock(config.state_dir / "lock").holder()
        data = status(Deployment(config), holder)
        print(json.dumps(data, indent=2) if args.json else format_status(data))
        return 0

    if args.command == "reset" and not args.force:
        if not sys.stdin.isatty():
            raise UsageError("reset removes both colours and the state: confirm with --force")
        answer = input(f"Remove both colours of {config.app} and its state? Nothing will serve. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("reset cancelled")
            return 1

    with _locked(config, f"{args.command} {getattr(args, 'version', '')}".strip(), args.wait_lock) as lock:
        engine = Deployment(config)
        if args.command == "deploy":
            _print_result(engine.deploy(args.version, guard=lock), args.json)
        elif args.command == "rollback":
            _print_result(engine.rollback(guard=lock, to=args.to), args.json)
        elif args.command == "cleanup":
            removed = cleanup(engine, guard=lock, include_rollback=args.include_rollback)
            print("removed: " + ", ".join(removed) if removed else "nothing to clean up")
        elif args.command == "reset":
            print("removed: " + ", ".join(reset(engine, guard=lock)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    interrupts.install()
    try:
        return run(args, parser)
    except WatcherError as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Interrupted, KeyboardInterrupt):
        print("watcher: interrupted; the live colour still serves (see `watcher status`)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
