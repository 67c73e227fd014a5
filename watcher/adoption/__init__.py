"""`watcher init`: adopt an existing Compose project for blue-green deploys.

Given the user's own compose file and which of its services are stateless (run once per colour)
with their ports, init writes the two colour overlays, the Caddy service the file lacks, the
app's `[apps.<name>]` config section and its Caddy snippet, then prints what is left: the edits
to the compose file as a unified diff, saved for `patch -p1` (init never edits the user's file),
and the few commands after it.

It refuses, with the reason, a compose file it cannot colour safely: whatever one colour would
hold alone (a container name, a host port, a named volume it writes) would clash with the other
colour's copy. It never overwrites a file without --force, never replaces or duplicates an app
already in the config, and --dry-run writes nothing. The shared services keep their compose
project (the file's own), so the postgres and redis that run today are kept, not recreated.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from watcher.adoption.answers import Prompt, gather
from watcher.adoption.compose_file import COMPOSE_NAMES, compose_path, read_compose
from watcher.adoption.plan import Plan, config_path_for, configured_apps
from watcher.adoption.proposal import current_tag
from watcher.adoption.refusals import refuse_unsafe
from watcher.adoption.report import report
from watcher.adoption.tags import propose

HELP = """\
Adopt an existing compose project: say which services are stateless (run once per colour) and
the port Caddy proxies to; init writes compose.blue.yml, compose.green.yml, compose.watcher.yml
(the Caddy service, when the file has none), the app's section of the watcher config and its
Caddy snippet, and saves the edits your compose file needs as watcher-init.diff (init never edits
it; apply it with `patch -p1 < watcher-init.diff`). It proposes one-shot jobs, images that follow
the app's version, a health path to check and, from the registry's tags, a tag policy. Nothing
is overwritten without --force; an app already in the config is rewritten only with --force,
keeping every key init does not decide.

example:
  watcher init compose.yml --service web:8080 --service worker \\
      --service streaming:4000:/api/v1/streaming --keep-prefix streaming \\
      --verify-url http://127.0.0.1/version --yes
"""


def add_parser(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="adopt an existing compose project: write the colour overlays and config",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument(
        "compose_file",
        nargs="?",
        metavar="COMPOSE_FILE",
        help=f"the compose file to adopt (default: the first of {', '.join(COMPOSE_NAMES)} here)",
    )
    init.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME[:PORT[:PATH]]",
        help="a stateless service, run once per colour; PORT: Caddy proxies to it; PATH: the "
        "prefix it answers when several have a port (repeat: --service web:8080 "
        "--service worker)",
    )
    init.add_argument(
        "--keep-prefix",
        action="append",
        default=[],
        metavar="NAME",
        help="Caddy sends NAME (a --service NAME:PORT:PATH) the full path, prefix included, instead "
        "of stripping it: for a server that routes on /api/v1/streaming itself",
    )
    init.add_argument(
        "--health",
        action="append",
        default=[],
        metavar="NAME:PATH[:PORT]",
        help="watcher judges NAME's health by HTTP GET of PATH itself (2xx/3xx), for an image "
        "without a shell or curl; without it init only proposes one, commented out",
    )
    init.add_argument(
        "--per-colour-volume",
        action="append",
        default=[],
        metavar="NAME",
        help="the named volume NAME, which a stateless service writes, is per colour: each colour "
        "gets its own empty copy, created and removed with it (scratch space, a cache), never "
        "data both colours must see; without it init refuses a volume two colours would write",
    )
    init.add_argument(
        "--platform",
        choices=("compose", "swarm"),
        default="compose",
        help='what runs the colours (default: compose). swarm: init writes platform = "swarm", '
        "refuses what `docker stack deploy` would silently break (build without image, profiles, "
        "ingress ports, network_mode, one-shots) and prints what it would ignore (docs/platforms.md)",
    )
    init.add_argument(
        "--app", metavar="NAME", help="the app's name in watcher (default: the compose project's)"
    )
    init.add_argument(
        "--project",
        metavar="NAME",
        help="the compose project the shared services run in (default: COMPOSE_PROJECT_NAME, "
        "the file's top-level name:, or its directory's name, as docker compose does)",
    )
    init.add_argument(
        "--image",
        metavar="REPO",
        help="the app's image repository, without tag (default: the proxied service's image)",
    )
    init.add_argument(
        "--verify-url",
        metavar="URL",
        help="URL through Caddy that answers the deployed version, e.g. http://127.0.0.1/version",
    )
    init.add_argument("--verify-header", metavar="NAME", help="read the version from this response header")
    init.add_argument(
        "--site", metavar="ADDRESS", help="the app's Caddy site address (default: [caddy] site, :80)"
    )
    # The same dest as the global --config (which init reads as the file to write, not to load);
    # SUPPRESS keeps `watcher -c FILE init` working.
    init.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="the watcher config to write, or to append the app to with --force (default: "
        "watcher.toml beside the compose file; $WATCHER_CONFIG is not used)",
    )
    init.add_argument(
        "--caddy-image",
        default="caddy:2.11",
        metavar="IMAGE",
        help="the image of the Caddy service init adds (in compose.watcher.yml) when the compose "
        "file has none (default: caddy:2.11)",
    )
    init.add_argument(
        "--caddyfile",
        metavar="PATH",
        help="where to write the app's Caddyfile (default: Caddyfile.<app> beside the compose file)",
    )
    init.add_argument(
        "-y", "--yes", action="store_true", help="ask nothing: take the flags, else the defaults"
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace existing overlays, Caddyfile and watcher-init.diff; append the app to an existing "
        "config, or rewrite its section there (keeping the keys init does not decide)",
    )
    init.add_argument("--dry-run", action="store_true", help="print everything, write nothing")


def run_init(args: argparse.Namespace) -> int:
    """Read, ask, refuse what cannot be coloured, then write (or, --dry-run, stage) and report."""
    compose = read_compose(compose_path(args.compose_file))
    prompt = Prompt(interactive=not args.yes and sys.stdin.isatty())
    config_path = config_path_for(compose, args.config)
    answers = gather(compose, args, prompt)
    answers = replace(answers, fronted=bool(set(configured_apps(config_path)) - {answers.app}))
    refuse_unsafe(compose, answers)
    answers = replace(answers, tags=propose(answers.image, current_tag(compose, answers)))
    plan = Plan.make(
        compose, answers, config_path=config_path, caddyfile=Path(args.caddyfile) if args.caddyfile else None
    )
    plan.refuse_existing(force=args.force)
    if args.dry_run:
        snippet, host = plan.preview()
    else:
        snippet, host = plan.write()
    print(report(plan, host, snippet, dry_run=args.dry_run))
    return 0
