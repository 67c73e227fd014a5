"""What init reads off the compose file beyond what the user said: one-shot services (a migration
or asset job the colour runs to completion), images that follow the app's version, and, for a
proxied service Docker cannot judge (no healthcheck, one that needs curl or wget, an image
without a shell), the HTTP path watcher can judge it by. A one-shot and a follower are facts of
the file and are written as such; a health path is a proposal, written commented out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from watcher.adoption.compose_file import ComposeFile, repository

#: Commands of one-shot jobs that change the database: each colour runs them before it serves.
MIGRATION = re.compile(
    r"db:\w*(prepare|migrate|setup)|\bmigrat(e|ions?)\b|alembic\s+upgrade|flyway|liquibase|prisma\s+migrate",
    re.IGNORECASE,
)
#: Base images with no shell and no HTTP client: Docker's healthcheck cannot run in them.
SHELL_LESS = ("distroless", "scratch", "chainguard", "cgr.dev/")
#: Tools a healthcheck needs that slim images often lack.
TOOLS = ("curl", "wget", "nc", "netcat")
#: kamal-proxy's convention, proposed when nothing in the file names a path.
DEFAULT_HEALTH_PATH = "/up"

_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::(\d+))?(/[^\s\"'$]*)?")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def one_shot(compose: ComposeFile, name: str, waiters: list[str], app_repos: set[str | None]) -> str | None:
    """Why `name` is a one-shot service (None: it is not): a stateless service waits for it to
    complete successfully, or it runs a migration on the app's image."""
    waiting = [
        waiter
        for waiter in waiters
        if _conditions(compose.services[waiter]).get(name) == "service_completed_successfully"
    ]
    if waiting:
        return f"{', '.join(waiting)} wait{'s' if len(waiting) == 1 else ''} for it to complete successfully"
    if migration(compose.services[name]) and repository(compose.services[name].get("image"))[0] in app_repos:
        return "its command runs migrations on the app's image"
    return None


def migration(service: dict[str, Any]) -> bool:
    return bool(MIGRATION.search(_text(service.get("command")) + " " + _text(service.get("entrypoint"))))


def _conditions(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if not isinstance(depends, dict):
        return {}
    return {
        str(target): str((spec or {}).get("condition", "service_started")) for target, spec in depends.items()
    }


def follows(compose: ComposeFile, name: str, main: str, app_repos: set[str | None]) -> str | None:
    """Why `name`'s image, another than the app's, follows the app's version (None: it does
    not): its repository is the app's with a suffix, or its tag is the app image's variable."""
    image = str(compose.services[name].get("image") or "")
    repo, _ = repository(image)
    if repo in app_repos or name == main:
        return None
    suffixed = [
        app for app in app_repos if app and re.fullmatch(re.escape(app) + r"[-_/][\w./-]+", repo or "")
    ]
    if suffixed:
        return f"its image {repo} is the app's with a suffix"
    ours, theirs = _tag_variable(str(compose.services[main].get("image") or "")), _tag_variable(image)
    if ours and ours == theirs:
        return f"its tag is ${{{ours}}}, as the app image's"
    return None


def _tag_variable(image: str) -> str | None:
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    found = _VARIABLE.match(tag)
    return found.group(1) if found else None


@dataclass(frozen=True)
class HealthProposal:
    path: str
    port: int | None  # None: the service's own port
    why: str


def health(service: dict[str, Any], port: int) -> HealthProposal | None:
    """The HTTP path watcher could judge a proxied service by, when Docker cannot judge it."""
    check = service.get("healthcheck") or {}
    test = [] if check.get("disable") else check.get("test") or []
    command = _text(test[1:] if isinstance(test, list) and test[:1] in (["CMD"], ["CMD-SHELL"]) else test)
    url = _URL.search(command)
    path = (url.group(2) or "/") if url else DEFAULT_HEALTH_PATH
    other = int(url.group(1)) if url and url.group(1) and int(url.group(1)) != port else None
    repo = repository(service.get("image"))[0] or ""
    if any(marker in repo for marker in SHELL_LESS):
        why = f"{repo} has no shell, so no Docker healthcheck runs in it"
    elif not command or command == "NONE":
        why = "it has no healthcheck, so nothing says when it is ready"
    elif tool := next((t for t in TOOLS if re.search(rf"(^|[\s/]){t}(\s|$)", command)), None):
        why = f"its healthcheck runs {tool}, which slim images often lack"
    else:
        return None
    source = "the path its healthcheck calls" if url else "kamal-proxy's convention; check your app's"
    return HealthProposal(path, other, f"{why}; {source}")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(part) for part in value)
    return str(value or "")
