"""GitHub deployment statuses: each deploy or rollback job becomes a GitHub deployment of its
version in the app's environment, whose status follows the job.

    job started    POST /repos/{o}/{r}/deployments            ref = the tag, environment, not
                                                               transient, no auto-merge, no checks
                   POST /repos/{o}/{r}/deployments/{id}/statuses   in_progress
    job ended      POST .../statuses   success (auto_inactive: the deployment it replaced turns
                                       inactive) or failure; environment_url and log_url (the
                                       dashboard's job page) on each

REST API 2022-11-28 (https://docs.github.com/en/rest/deployments/deployments,
https://docs.github.com/en/rest/deployments/statuses). The token needs "Deployments: read and
write" (fine-grained) or `repo_deployment` (classic). The repository is the app's configured
one, else the job's (from the webhook's payload). Sent through the outbox like every
notification: GitHub down, slow or refusing never delays or fails a deploy.
"""

from __future__ import annotations

from typing import Any

import httpx

from watcher.config import GithubSettings
from watcher.notify.event import Event

API_VERSION = "2022-11-28"
_STATES = {"succeeded": "success", "rollback_done": "success", "failed": "failure", "rolled_back": "failure"}


class GithubDeployments:
    """The channel of one app; remembers the deployment of each job this process started."""

    name = "github"

    def __init__(self, settings: GithubSettings) -> None:
        assert settings.token, "GitHub deployments need a token"
        self.settings = settings
        self._client = httpx.Client(
            base_url=settings.api_url.rstrip("/"),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {settings.token}",
                "User-Agent": "watcher",
            },
        )
        self._deployments: dict[str, tuple[str, int]] = {}  # job id -> (repository, deployment id)

    def repository(self, event: Event) -> str | None:
        return self.settings.repository or event.repository

    def wants(self, event: Event) -> bool:
        return (
            bool(event.job_id)
            and (event.kind == "started" or event.kind in _STATES)
            and self.repository(event) is not None
        )

    def send(self, event: Event, timeout: float) -> None:
        assert event.job_id is not None
        if event.kind == "started":
            repository = self.repository(event)
            assert repository is not None
            created = self._post(
                f"/repos/{repository}/deployments",
                timeout,
                {
                    "ref": event.version,
                    "environment": self.settings.environment,
                    "auto_merge": False,
                    "required_contexts": [],
                    "transient_environment": False,
                    "description": f"watcher job {event.job_id}: {event.version}"[:140],
                    "payload": {"job": event.job_id},
                },
            )
            self._deployments[event.job_id] = (repository, int(created["id"]))
            self._status(event, "in_progress", timeout)
            return
        self._status(event, _STATES[event.kind], timeout)
        self._deployments.pop(event.job_id, None)

    def _status(self, event: Event, state: str, timeout: float) -> None:
        assert event.job_id is not None
        known = self._deployments.get(event.job_id)
        if known is None:
            raise RuntimeError(
                f"job {event.job_id} has no GitHub deployment (creating it failed or timed out)"
            )
        repository, deployment = known
        body: dict[str, Any] = {
            "state": state,
            "description": (event.detail or event.title)[:140],
            "environment": self.settings.environment,
        }
        if self.settings.environment_url:
            body["environment_url"] = self.settings.environment_url
        if event.link:
            body["log_url"] = event.link
        if state == "success":
            body["auto_inactive"] = (
                True  # the default, said explicitly: the replaced deployment goes inactive
            )
        self._post(f"/repos/{repository}/deployments/{deployment}/statuses", timeout, body)

    def _post(self, path: str, timeout: float, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self._client.post(path, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"POST {path}: {type(exc).__name__}: {exc}") from None
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: {answer.status_code} {_message(answer)}")
        data = answer.json()
        return data if isinstance(data, dict) else {}


def _message(answer: httpx.Response) -> str:
    """GitHub's `message` (its errors are JSON), cut: enough to act on, never the token."""
    try:
        data = answer.json()
    except ValueError:
        return answer.reason_phrase
    return str(data.get("message", ""))[:200] if isinstance(data, dict) else answer.reason_phrase
