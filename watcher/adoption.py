"""`watcher init`: adopt an existing Compose project (being written)."""

from __future__ import annotations

import argparse
from typing import Any

from watcher.errors import UsageError


def add_parser(sub: Any) -> None:
    sub.add_parser("init", help="adopt an existing compose project: write the colour overlays and config")


def run_init(args: argparse.Namespace) -> int:
    raise UsageError("watcher init is not available yet")
