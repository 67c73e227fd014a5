"""The stack file of one colour on Swarm, written from the user's compose files as `docker compose
config` renders them (compose.py's model): what `docker stack deploy` reads.

`stack deploy` reads the compose file format 3 (docker/cli `cli/compose/schema`), not the compose
specification that `docker compose config` writes, and refuses a key it does not know. So each
colour service keeps only the keys format 3 has (SERVICE_KEYS), with:
- the image pinned by digest where the manager knows one: every node runs the same bytes, and a
  node never resolves a moved tag on its own;
- `endpoint_mode: dnsrr` (this kernel, like many, has no IPVS; Caddy resolves `tasks.<service>`);
- the stack's own network, and the edge network shared with Caddy, on which the service answers
  to its colour alias only (`<app>-<service>-<colour>`, as on Compose);
- no `depends_on` (Swarm drops it; swarm_checks.py says so to the user), no `ports`, `build`,
  `container_name`, `restart`, `profiles` (refused or warned about before).
The other services of the file (the shared ones) are not the colour's and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: The service keys of compose file format 3.9 that a colour keeps as they are.
SERVICE_KEYS = frozenset(
    {
        "cap_add",
        "cap_drop",
        "command",
        "configs",
        "dns",
        "dns_search",
        "entrypoint",
        "environment",
        "expose",
        "extra_hosts",
        "hostname",
        "init",
        "labels",
        "logging",
        "read_only",
        "secrets",
        "stop_grace_period",
        "stop_signal",
        "sysctls",
        "tmpfs",
        "ulimits",
        "user",
        "working_dir",
    }
)
HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period", "disable")
DEPLOY_KEYS = (
    "mode",
    "replicas",
    "labels",
    "update_config",
    "rollback_config",
    "resources",
    "restart_policy",
)
DEPLOY_KEYS += ("placement", "max_replicas_per_node")
VOLUME_KEYS = ("type", "source", "target", "read_only", "consistency", "volume", "tmpfs")
#: The stack's key for the edge network (its Docker name is the app's `[swarm] network`).
EDGE = "watcher-edge"


def stack_file(
    model: Mapping[str, Any],
    services: Mapping[str, str | None],
    images: Mapping[str, str],
    *,
    edge_network: str,
) -> str:
    """The stack file (JSON, which is YAML) of a colour: `services` maps each colour service to
    its alias on the edge network (None: not on it, it takes no traffic from Caddy); `images`
    pins the image of a service."""
    rendered = model.get("services") or {}
    out: dict[str, Any] = {"version": "3.9", "services": {}, "networks": {}}
    out["networks"][EDGE] = {"external": True, "name": edge_network}
    out["networks"]["default"] = {"driver": "overlay", "attachable": True}
    used_volumes: set[str] = set()
    for name, alias in services.items():
        spec = rendered.get(name) or {}
        service = {key: value for key, value in spec.items() if key in SERVICE_KEYS and value is not None}
        if "environment" in service:
            service["environment"] = {
                k: "" if v is None else str(v) for k, v in service["environment"].items()
            }
        service["image"] = images.get(name) or spec.get("image", "")
        if spec.get("healthcheck"):
            service["healthcheck"] = {k: v for k, v in spec["healthcheck"].items() if k in HEALTH_KEYS}
        deploy = {k: v for k, v in (spec.get("deploy") or {}).items() if k in DEPLOY_KEYS}
        service["deploy"] = {**deploy, "endpoint_mode": "dnsrr"}
        service["networks"] = {"default": {}, **({EDGE: {"aliases": [alias]}} if alias else {})}
        volumes = [
            {k: v for k, v in volume.items() if k in VOLUME_KEYS} for volume in spec.get("volumes") or []
        ]
        if volumes:
            service["volumes"] = volumes
            used_volumes |= {v["source"] for v in volumes if v.get("type") == "volume" and v.get("source")}
        out["services"][name] = service
    declared = model.get("volumes") or {}
    if used_volumes:
        out["volumes"] = {key: _volume(declared.get(key) or {}) for key in sorted(used_volumes)}
    for kind in ("secrets", "configs"):
        wanted = {s.get("source") for spec in out["services"].values() for s in spec.get(kind) or []}
        found = {k: v for k, v in (model.get(kind) or {}).items() if k in wanted}
        if found:
            out[kind] = found
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


def _volume(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k in ("driver", "driver_opts", "external", "labels", "name")}


def replicas(text: str) -> dict[str, int]:
    """Each service's replicas in a stack file written by `stack_file` (1 when it does not say):
    what `resume` scales a retained colour back to."""
    services = json.loads(text).get("services") or {}
    return {name: int((spec.get("deploy") or {}).get("replicas", 1)) for name, spec in services.items()}
