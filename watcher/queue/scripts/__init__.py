"""The Lua scripts of the deploy lock (lock.lua), of the queue (queue.lua) and of its marker
(epoch.lua: a Redis that forgot the queue, continuity.py), each with its KEYS
and ARGV documented at its top. Each is registered once per Redis client: redis-py then runs it by
its SHA (EVALSHA) and, when Redis answers NOSCRIPT (restarted, failed over, SCRIPT FLUSH), loads
it again by itself.

Each file is one script with an operation argument rather than one script per operation, so
that the steps several operations share are written once and run inside each operation's atomic
call. The one step both files need, the fence check `owns`, is the same five lines in each.
"""

from __future__ import annotations

import threading
from importlib.resources import files
from weakref import WeakKeyDictionary

import redis
from redis.commands.core import Script

#: Each script's source, by name.
SOURCES = {
    name: files(__package__).joinpath(f"{name}.lua").read_text() for name in ("lock", "queue", "epoch")
}

_registered: WeakKeyDictionary[redis.Redis, dict[str, Script]] = WeakKeyDictionary()
_registering = threading.Lock()


def script(client: redis.Redis, name: str) -> Script:
    """Script `name` registered with `client`: the first call per client registers it (no round
    trip: the SHA is computed here), later ones return the same Script."""
    with _registering:
        scripts = _registered.setdefault(client, {})
        if name not in scripts:
            scripts[name] = client.register_script(SOURCES[name])
        return scripts[name]
