"""What every `--json` prints: one JSON object, its `schema` first, so a script can tell the shape
it reads from a later one. A list is the value of a named key (`jobs`, `apps`), never the top.
Bump SCHEMA when a key is renamed, removed or changes meaning; a new key does not bump it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SCHEMA = 1


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps({"schema": SCHEMA, **data}, indent=2)
