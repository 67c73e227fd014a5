"""What init prints: the summary, the files written (or, dry run, their text), the proposed diff
and the steps left."""

from __future__ import annotations

from typing import Any

from watcher.adoption.answers import Answers
from watcher.adoption.caddy import AddedCaddy, released_ports
from watcher.adoption.compose_file import OVERRIDE_NAMES, ComposeFile, caddy_service, volumes_of
from watcher.adoption.detect import follows, migration
from watcher.adoption.overlays import CADDY_OVERLAY
from watcher.adoption.plan import Plan, shown
from watcher.adoption.proposal import (
    PROFILE,
    app_repos,
    bind_source,
    current_tag,
    dropped_keys,
    image_for,
    is_sidecar,
    uses_profile,
)
from watcher.adoption.swarm import swarm_findings
from watcher.validation import validate_tag


def report(plan: Plan, host: Any, snippet: str, *, dry_run: bool) -> str:
    compose = plan.compose
    out = [_summary(compose, plan.answers), ""]
    out += _swarm(compose, plan.answers)
    out += _files(plan, snippet, dry_run=dry_run)
    changes = plan.changes(host)
    if changes:
        saved = "" if dry_run else f", saved as {shown(plan.diff_path)}"
        out += [
            f"Proposed changes to {shown(compose.path)} (init never edits it: read them, then apply "
            f"them{saved}):",
            changes.rstrip("\n"),
            "",
        ]
    elif changes == "":
        out += [f"{shown(compose.path)} needs no changes.", ""]
    out.append("Steps left:")
    out += [
        f"  {number}. {step}" for number, step in enumerate(_steps(plan, host, changes, dry_run), start=1)
    ]
    return "\n".join(out)


def _summary(compose: ComposeFile, answers: Answers) -> str:
    stateless = ", ".join(
        f"{s.name} (port {s.port}{f', path {s.path}' if s.path else ''}{', full path' if s.keep_prefix else ''})"
        if s.port
        else f"{s.name} (no port)"
        for s in answers.stateless
    )
    lines = [
        f"Adopting {shown(compose.path)}: app {answers.app}, image {answers.image}",
        f"  compose project {answers.project} (from {answers.project_source}): its shared services keep "
        "running as they are",
        f"  per colour (projects {answers.project}-blue and -green): {stateless}",
        f"  shared, run once: {', '.join(answers.shared(compose)) or 'none'}",
    ]
    lines += _detected(compose, answers)
    if answers.per_colour:
        lines.append(
            f"  volumes per colour (each colour its own empty copy, removed with it): {', '.join(answers.per_colour)}"
        )
    if released := released_ports(compose, answers):
        lines.append(
            "  host ports given up (Caddy fronts these services; the diff removes them): "
            + "; ".join(f"{name} {', '.join(p.shown for p in ports)}" for name, ports in released.items())
        )
    if answers.tags:
        lines.append(f"  tag policy: {answers.tags.said}")
    sidecars = [name for name in answers.names if is_sidecar(compose, answers, name)]
    following = [name for name in sidecars if "APP_VERSION" in str(compose.services[name].get("image"))]
    if following:
        lines.append(
            "  on their own image, at the app's version (${APP_VERSION}): pulled, deployed and "
            f"rolled back with it: {', '.join(following)}"
        )
    if others := [name for name in sidecars if name not in following]:
        lines.append(
            "  on their own image, at the tag they name (follows_version = true in [apps.<app>.services."
            f"<name>] makes it the app's version): {', '.join(others)}"
        )
    overrides = [name for name in OVERRIDE_NAMES if (compose.dir / name).is_file()]
    if overrides:
        lines.append(
            f"  warning: a plain `docker compose` reads {overrides[0]}, watcher does not: add it to "
            f"compose_files in [apps.{answers.app}] if the colours need it"
        )
    return "\n".join(lines)


def _swarm(compose: ComposeFile, answers: Answers) -> list[str]:
    """On Swarm, what `docker stack deploy` would do otherwise than the file says (its refusals
    stopped init before this): each warning, or that there is none."""
    if answers.platform != "swarm":
        return []
    warned = [finding.message for finding in swarm_findings(compose, answers)]
    if not warned:
        return [
            'Docker Swarm (platform = "swarm"): nothing in the colour services that Swarm ignores or drops.',
            "",
        ]
    return [
        'Docker Swarm (platform = "swarm"): what `docker stack deploy` would do otherwise than the file '
        "says (with the diff applied):",
        *(f"  warning: {message}" for message in warned),
        "",
    ]


def _detected(compose: ComposeFile, answers: Answers) -> list[str]:
    """What init read off the file: one-shots (with the migration note), followers, health proposals."""
    lines = [f"  one-shot, per colour: {s.name} ({s.one_shot})" for s in answers.stateless if s.one_shot]
    if any(s.one_shot and migration(compose.services[s.name]) for s in answers.stateless):
        lines.append(
            "    it migrates while the old colour still serves: a migration must be one the old version "
            "tolerates (expand, then contract: docs/operations.md, Database migrations)"
        )
    lines += [f"  follows the app's version: {s.name} ({s.follows})" for s in answers.stateless if s.follows]
    lines += [
        f"  health proposed (commented out in the config, check it): {s.name} GET {s.health.path} "
        f"({s.health.why})"
        for s in answers.stateless
        if s.health and not s.health_given
    ]
    main = next(s.name for s in answers.stateless if s.port is not None and s.path is None)
    repos = app_repos(compose, answers)
    lines += [
        f"  warning: {name} runs shared, but {why}: pass --service {name} if it must change with each deploy"
        for name in answers.shared(compose)
        if (why := follows(compose, name, main, repos))
    ]
    return lines


def _files(plan: Plan, snippet: str, *, dry_run: bool) -> list[str]:
    app = f"[apps.{plan.answers.app}]"
    config = "new" if plan.config_before is None else f"{app} {'rewritten' if plan.rewrites else 'appended'}"
    files = [
        *((path, text, _overlay_kind(path)) for path, text in plan.overlays.items()),
        (plan.config_path, plan.section(), f"watcher config, {config}"),
        (plan.caddyfile, snippet, "the app's Caddyfile"),
    ]
    changes = plan.rewrite_changes()
    rewrite = [f"{app} rewritten: every key init does not decide is kept; changed:"] if plan.rewrites else []
    rewrite += [f"  {change}" for change in changes] or (["  nothing"] if plan.rewrites else [])
    if not dry_run:
        return [*(f"wrote {shown(path)} ({what})" for path, _, what in files), *rewrite, ""]
    out = ["Dry run: nothing written. init would write:", *rewrite, ""]
    for path, text, what in files:
        out += [f"==> {shown(path)} ({what})", text.rstrip("\n"), ""]
    return out


def _overlay_kind(path: Any) -> str:
    return "the Caddy service your compose file lacks" if path.name == CADDY_OVERLAY else "colour overlay"


def _steps(plan: Plan, host: Any, changes: str | None, dry_run: bool) -> list[str]:
    compose, answers = plan.compose, plan.answers
    here = compose.dir
    steps = []
    if changes is None:
        steps.append(_edits_in_words(compose, answers, host))
    elif changes:
        save = f"save it as {plan.diff_path.name} and " if dry_run else ""
        steps.append(
            f"Apply the diff above: {save}run `patch -p1 < {plan.diff_path.name}` in {here} (it "
            "edits only what the diff shows; read it first)."
        )
    steps.append(_caddy_step(plan, host))
    if answers.tags and answers.tags.table:
        steps.append(
            f"Check the tag policy init proposed ([apps.{answers.app}.policy]): `watcher --config "
            f"{shown(plan.config_path)} check-tags{' --app ' + answers.app if plan.app_count > 1 else ''}` "
            "lists every tag and why it is or is not the one."
        )
    steps += _creation_steps(compose, answers)
    app = f" --app {answers.app}" if plan.app_count > 1 else ""
    version = _first_version(compose, answers)
    deploy = (
        f"First deploy: `watcher --config {shown(plan.config_path)} deploy{app} {version}`: it pulls "
        f"{answers.image}:{version}, starts it as the blue colour beside the shared services, and "
        "switches Caddy to it once healthy."
    )
    added = plan.added_caddy
    if added is not None and added.moved_from:
        # The host port moves from the service to Caddy: the old container must free it first.
        return [*steps, _removal(answers, here, added), deploy]
    return [*steps, deploy, f"Then {_removal(answers, here, None)}."]


def _removal(answers: Answers, here: Any, added: AddedCaddy | None) -> str:
    """Removing the containers a plain `up` started before the `app` profile: before the first
    deploy when their host port moves to the Caddy init adds, after it otherwise."""
    names = " ".join(answers.names)
    remove = (
        f"remove the uncoloured {', '.join(answers.names)} that a plain `docker compose up` started: "
        f"`docker compose -p {answers.project}{f' --profile {PROFILE}' if uses_profile(answers) else ''} "
        f"rm --stop --force {names}` in {here}"
    )
    if added is None:
        return remove
    dropped = (
        f" Its other host ports ({', '.join(added.dropped)}) are dropped: Caddy answers for the app; "
        f"publish them on Caddy in {CADDY_OVERLAY} if you still need them."
        if added.dropped
        else ""
    )
    return (
        f"Before the first deploy, {remove}: {added.moved_from} gives its host port to Caddy, which "
        f"the first deploy starts (the app does not answer in between).{dropped}"
    )


def _edits_in_words(compose: ComposeFile, answers: Answers, host: Any) -> str:
    dropped = dropped_keys(compose, answers)
    edits = [
        f"{name}: image {image_for(compose, answers, name)}"
        + (f" and profile {PROFILE}" if uses_profile(answers) else "")
        + "".join(f", no {key}" for key in dropped.get(name, []))
        for name in answers.names
    ]
    return (
        f"Edit {compose.path.name} by hand (its layout is beyond init's line edits): "
        + "; ".join(edits)
        + f"; mount {host.caddy.run_dir} into Caddy at {host.caddy.mount}."
    )


def _caddy_step(plan: Plan, host: Any) -> str:
    compose, answers = plan.compose, plan.answers
    proxied = {network for s in answers.stateless if s.port for network in compose.networks_of(s.name)}
    networks = " or ".join(sorted(compose.network_name(network, answers.project) for network in proxied))
    serve = (
        f"serve {shown(plan.caddyfile)}: merge its site block and its global `admin` option (watcher reads "
        f"in-flight counts there) into your Caddyfile, or make it the Caddyfile if Caddy fronts only "
        f"{answers.app}"
    )
    added = plan.added_caddy
    if added is not None:
        ports = ", ".join(added.ports)
        return (
            f"Caddy: {CADDY_OVERLAY} adds it (service {added.name}, image {added.image}, ports {ports}, "
            f"serving {shown(plan.caddyfile)}, with {bind_source(host.caddy.run_dir, compose.dir)} at "
            f"{host.caddy.mount}); it is in compose_files, and the first deploy starts it with the "
            "shared services."
        )
    caddy = caddy_service(compose, answers.names)
    if caddy is None:
        return (
            f"Caddy: join it to network {networks} (where the colours' aliases live), mount "
            f"{host.caddy.run_dir} at {host.caddy.mount}, and {serve}; then restart it."
        )
    join = "" if proxied & set(compose.networks_of(caddy)) else f", join it to network {networks}"
    return (
        f"Caddy (service {caddy}): the diff mounts {bind_source(host.caddy.run_dir, compose.dir)} at "
        f"{host.caddy.mount}{join}; {serve}; then recreate it: `docker compose up -d {caddy}` (until the "
        f"first deploy it has no colour of {answers.app} to send requests to)."
    )


def _creation_steps(compose: ComposeFile, answers: Answers) -> list[str]:
    """The networks and volumes the colours join that no shared service creates."""
    shared = answers.shared(compose)
    used = [
        (
            "network",
            key,
            [s for s in shared if key in compose.networks_of(s)],
            compose.network_name(key, answers.project),
        )
        for key in dict.fromkeys(n for name in answers.names for n in compose.networks_of(name))
    ]
    used += [
        (
            "volume",
            key,
            [s for s in shared if key in (m.source for m in volumes_of(compose.services[s]))],
            compose.volume_name(key, answers.project),
        )
        for key in dict.fromkeys(
            m.source
            for name in answers.names
            for m in volumes_of(compose.services[name])
            if m.named and m.source and m.source not in answers.per_colour
        )
    ]
    missing = [
        (kind, key, name)
        for kind, key, users, name in used
        if not users and not ((compose.data.get(f"{kind}s") or {}).get(key) or {}).get("external")
    ]
    return [_creation_step(compose, kind, key, name) for kind, key, name in missing]


def _creation_step(compose: ComposeFile, kind: str, key: str, name: str) -> str:
    """What to do about a network or volume no shared service creates: Docker says whether a
    `docker compose up` of the whole file already made it, and then nothing is to be done."""
    found = docker_has(kind, name)
    if found is True:
        return (
            f"No shared service uses {kind} {key}, but {name} exists (your own `docker compose up` "
            "made it): the colours join it as it is; nothing to do (a `docker compose down"
            f"{' -v' if kind == 'volume' else ''}` of the whole file would remove it)."
        )
    create = (
        f"create it once with `docker {kind} create {name}` and declare it `external: true` in "
        f"{compose.path.name}"
    )
    if found is False:
        return f"No shared service uses {kind} {key}, and Docker has no {name}: {create}."
    return (
        f"No shared service uses {kind} {key}, and Docker could not be asked whether {name} exists "
        f"({found}): if `docker {kind} inspect {name}` finds none, {create}."
    )


def docker_has(kind: str, name: str) -> bool | str:
    """Whether Docker has the network or volume; the reason as text when Docker cannot say."""
    from watcher.backends.containers import Containers
    from watcher.errors import DockerUnavailable

    try:
        return Containers().exists(kind, name)
    except DockerUnavailable as exc:
        return str(exc)


def _first_version(compose: ComposeFile, answers: Answers) -> str:
    """The tag the compose file runs today, when it names one; else a placeholder."""
    tag = current_tag(compose, answers)
    try:
        return validate_tag(tag) if tag else "VERSION"
    except ValueError:
        return "VERSION"
