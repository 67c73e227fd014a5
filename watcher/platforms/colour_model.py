"""What watcher adds to a colour's compose project, derived from the user's files as compose
renders them: the overlay written after `compose.<colour>.yml` (never in the user's project).

It makes each colour a world of its own:
- the services that are not the colour's (the shared project's database, Caddy...) and the
  top-level volumes and networks only they use are dropped from the colour project (`!reset`):
  a colour never creates a copy of shared state, and its `depends_on` on them is gone, so
  `start` of a retained colour never asks for a service the colour project does not run;
- each colour service's `depends_on` keeps only the colour's own services, with their conditions,
  so its dependencies inside the colour start in order and the shared ones are never touched;
- every colour service joins a network of the colour, whose name sorts before any other network
  name: Docker's embedded DNS answers a name from the first network (by name) that knows it, so a
  sibling's service name resolves to this colour's container only, never to the other colour's
  on the shared network (Caddy still dials `<app>-<service>-<colour>` there);
- the services that follow the app's version run `<their repository>:<version>`.

A volume the colour services use that is neither external nor named by the user (its name is
compose's `<colour project>_<key>`) is the colour's own: created by the colour project (declared
per colour in compose.<colour>.yml, `watcher init --per-colour-volume`), removed with the colour.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

#: The overlay's key for the colour's own network.
NETWORK = "watcher-colour"
#: Kept of a dependency inside the colour.
DEPENDENCY_KEYS = ("condition", "required", "restart")


def network_name(project: str) -> str:
    """`0-` sorts before any name Docker accepts but another `0-...` (names start with [a-zA-Z0-9])."""
    return f"0-{project}"


def one_shots(
    model: Mapping[str, Any], services: Collection[str], declared: Mapping[str, bool | None]
) -> set[str]:
    """The colour services that run to completion: declared so, or (undeclared) another colour
    service waits for them with `condition: service_completed_successfully`."""
    awaited = {
        dependency
        for name in services
        for dependency, spec in _depends_on(model, name).items()
        if (spec or {}).get("condition") == "service_completed_successfully"
    }
    return {s for s in services if (s in awaited if declared.get(s) is None else declared[s])}


@dataclass(frozen=True)
class ColourModel:
    """The overlay of one colour project, from the model compose renders of the user's files."""

    model: Mapping[str, Any]
    services: tuple[str, ...]
    project: str

    def overlay(self, images: Mapping[str, str], ran: Collection[str] = ()) -> str:
        """The overlay's YAML; `images` are the images to force (a following service's); `ran`:
        one-shots that already ran for this colour, which its services no longer wait for."""
        rendered = self.model.get("services") or {}
        lines = ["# Written by watcher for each use; edits are lost.", "services:"]
        for name in rendered:
            if name not in self.services:
                lines.append(f"  {_q(name)}: !reset {{}}")
                continue
            lines += [f"  {_q(name)}:", *self._service(name, rendered[name], images.get(name), ran)]
        own_network = f"  {_q(NETWORK)}: {_q({'name': network_name(self.project)})}"
        for kind in ("volumes", "networks"):
            entries = [f"  {_q(key)}: !reset {{}}" for key in self._unused(kind)]
            entries += [own_network] if kind == "networks" else []
            if entries:
                lines += [f"{kind}:", *entries]
        return "\n".join(lines) + "\n"

    def _service(
        self, name: str, spec: Mapping[str, Any], image: str | None, ran: Collection[str]
    ) -> list[str]:
        own = {
            dependency: {k: v for k, v in (condition or {}).items() if k in DEPENDENCY_KEYS}
            for dependency, condition in _depends_on(self.model, name).items()
            if dependency in self.services and dependency not in ran
        }
        lines = [f"    depends_on: !override {_q(own)}" if own else "    depends_on: !reset {}"]
        links = [link for link in spec.get("links") or [] if link.split(":", 1)[0] in self.services]
        if spec.get("links"):
            lines.append(f"    links: !override {_q(links)}")
        if not spec.get("network_mode"):  # `host`, `service:x`: it joins no network
            lines.append(f"    networks: {{{_q(NETWORK)}: {{}}}}")
        if image:
            lines.append(f"    image: {_q(image)}")
        return lines

    def _used(self, kind: str) -> set[str]:
        """The top-level volumes or networks the colour services use."""
        rendered = self.model.get("services") or {}
        used: set[str] = set()
        for name in self.services:
            spec = rendered.get(name) or {}
            if kind == "networks":
                used |= set(spec.get("networks") or {})
            else:
                used |= {v.get("source") for v in spec.get("volumes") or [] if v.get("type") == "volume"}
        return used

    @property
    def own_volumes(self) -> list[str]:
        """The Docker names of the volumes the colour project created for itself, which go with
        it; never an external one or one the user named (the shared project's, however declared)."""
        declared = self.model.get("volumes") or {}
        return [
            f"{self.project}_{key}"
            for key in sorted(self._used("volumes"))
            if key in declared
            and not (declared[key] or {}).get("external")
            and (declared[key] or {}).get("name", f"{self.project}_{key}") == f"{self.project}_{key}"
        ]

    def _unused(self, kind: str) -> list[str]:
        return [key for key in self.model.get(kind) or {} if key not in self._used(kind)]


def _depends_on(model: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A service's `depends_on` as compose renders it (always the long form)."""
    value = ((model.get("services") or {}).get(name) or {}).get("depends_on") or {}
    return dict(value) if isinstance(value, Mapping) else {d: {} for d in value}


def _q(value: object) -> str:
    """JSON is YAML: a quoted key or a flow value, whatever characters it holds."""
    return json.dumps(value, sort_keys=True)
