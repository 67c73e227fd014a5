"""What init prints: the summary, the files written (or, dry run, their text), the proposed diff
and the steps left."""

from __future__ import annotations

from typing import Any

from watcher.adoption.answers import Answers
from watcher.adoption.compose_file import OVERRIDE_NAMES, ComposeFile, caddy_service, repository, volumes_of
from watcher.adoption.plan import Plan, shown
from watcher.adoption.proposal import PROFILE, app_repos, bind_source, diff, image_for, is_sidecar, proposed
from watcher.validation import validate_tag


def report(plan: Plan, host: Any, snippet: str, *, dry_run: bool) -> str:
    compose = plan.compose
    out = [_summary(compose, plan.answers), ""]
    out += _files(plan, snippet, dry_run=dry_run)
    edited = proposed(compose, plan.answers, host.caddy.run_dir, host.caddy.mount)
    changes = diff(compose, edited) if edited is not None else None
    if changes:
        out += [
            f"Proposed changes to {shown(compose.path)} (init never edits it: read them, then apply them):",
            changes.rstrip("\n"),
            "",
        ]
    elif changes == "":
        out += [f"{shown(compose.path)} needs no changes.", ""]
    out.append("Steps left:")
    out += [f"  {number}. {step}" for number, step in enumerate(_steps(plan, host, changes), start=1)]
    return "\n".join(out)


def _summary(compose: ComposeFile, answers: Answers) -> str:
    stateless = ", ".join(
        f"{s.name} (port {s.port}{f', path {s.path}' if s.path else ''})" if s.port else f"{s.name} (no port)"
        for s in answers.stateless
    )
    lines = [
        f"Adopting {shown(compose.path)}: app {answers.app}, image {answers.image}",
        f"  compose project {answers.project} (from {answers.project_source}): its shared services keep "
        "running as they are",
        f"  per colour (projects {answers.project}-blue and -green): {stateless}",
        f"  shared, run once: {', '.join(answers.shared(compose)) or 'none'}",
    ]
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


def _files(plan: Plan, snippet: str, *, dry_run: bool) -> list[str]:
    config = f"[apps.{plan.answers.app}] appended" if plan.config_before is not None else "new"
    files = [
        *((path, text, "colour overlay") for path, text in plan.overlays.items()),
        (plan.config_path, plan.section(), f"watcher config, {config}"),
        (plan.caddyfile, snippet, "the app's Caddyfile"),
    ]
    if not dry_run:
        return [*(f"wrote {shown(path)} ({what})" for path, _, what in files), ""]
    out = ["Dry run: nothing written. init would write:", ""]
    for path, text, what in files:
        out += [f"==> {shown(path)} ({what})", text.rstrip("\n"), ""]
    return out


def _steps(plan: Plan, host: Any, changes: str | None) -> list[str]:
    compose, answers = plan.compose, plan.answers
    here = compose.dir
    steps = []
    if changes is None:
        steps.append(_edits_in_words(compose, answers, host))
    elif changes:
        steps.append(
            f"Apply the diff above: save it as watcher-init.diff and run `patch -p1 < watcher-init.diff` "
            f"in {here}."
        )
    steps.append(_caddy_step(plan, host))
    steps += _creation_steps(compose, answers)
    app = f" --app {answers.app}" if plan.app_count > 1 else ""
    version = _first_version(compose, answers)
    steps.append(
        f"First deploy: `watcher --config {shown(plan.config_path)} deploy{app} {version}`: it pulls "
        f"{answers.image}:{version}, starts it as the blue colour beside the shared services, and "
        "switches Caddy to it once healthy."
    )
    names = " ".join(answers.names)
    steps.append(
        f"Then remove the uncoloured {', '.join(answers.names)} that a plain `docker compose up` started: "
        f"`docker compose -p {answers.project} --profile {PROFILE} rm --stop --force {names}` in {here}."
    )
    return steps


def _edits_in_words(compose: ComposeFile, answers: Answers, host: Any) -> str:
    edits = [
        f"{name}: image {image_for(compose, answers, name)} and profile {PROFILE}" for name in answers.names
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
            if m.named and m.source
        )
    ]
    return [
        f"No shared service uses {kind} {key}, so nothing creates {name}: create it once with "
        f"`docker {kind} create {name}` and declare it `external: true` in {compose.path.name}."
        for kind, key, users, name in used
        if not users and not ((compose.data.get(f"{kind}s") or {}).get(key) or {}).get("external")
    ]


def _first_version(compose: ComposeFile, answers: Answers) -> str:
    """The tag the compose file runs today, when it names one; else a placeholder."""
    for name in answers.names:
        repo, tag = repository(compose.services[name].get("image"))
        if tag and repo in app_repos(compose, answers):
            try:
                return validate_tag(tag)
            except ValueError:
                return "VERSION"
    return "VERSION"
