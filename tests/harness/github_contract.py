"""A local server implementing the part of GitHub's REST API watcher uses, as GitHub documents
it: a contract test of the documented API (API version 2022-11-28), not of github.com itself.

    POST /repos/{owner}/{repo}/deployments                      https://docs.github.com/en/rest/deployments/deployments#create-a-deployment
    GET  /repos/{owner}/{repo}/deployments                      https://docs.github.com/en/rest/deployments/deployments#list-deployments
    POST /repos/{owner}/{repo}/deployments/{id}/statuses        https://docs.github.com/en/rest/deployments/statuses#create-a-deployment-status
    GET  /repos/{owner}/{repo}/deployments/{id}/statuses        https://docs.github.com/en/rest/deployments/statuses#list-deployment-statuses

What it enforces, as documented: `Authorization: Bearer <token>` (401 "Bad credentials"
otherwise), `X-GitHub-Api-Version: 2022-11-28` and `Accept: application/vnd.github+json`
(400 otherwise), the body's fields and types (`ref` required; `required_contexts` a list;
`auto_merge`, `transient_environment`, `production_environment`, `auto_inactive` booleans;
`state` one of error, failure, inactive, in_progress, queued, pending, success; `description`
at most 140 characters: 422 "Validation Failed" otherwise), 201 with the created object, lists
newest first, and `auto_inactive` (default true): a `success` status adds an `inactive` status
to every prior non-transient, non-production deployment of the same repository and
environment. `mode` makes it answer 500 or hang instead, as an outage would.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.harness.local_server import LocalServer, Received, answer, received

API_VERSION = "2022-11-28"
STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
_DEPLOYMENTS = re.compile(r"/repos/([^/]+)/([^/]+)/deployments")
_STATUSES = re.compile(r"/repos/([^/]+)/([^/]+)/deployments/(\d+)/statuses")


@dataclass
class Deployment:
    data: dict[str, Any]
    statuses: list[dict[str, Any]] = field(default_factory=list)  # oldest first

    @property
    def state(self) -> str | None:
        return self.statuses[-1]["state"] if self.statuses else None


class GithubContract(LocalServer):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.mode = "ok"  # ok | fail (500) | hang
        self.calls: list[Received] = []
        self.deployments: dict[int, Deployment] = {}
        self._ids = iter(range(1000, 10**9))
        self._lock = threading.Lock()

    # -- the API -------------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        call = received(request, method)
        with self._lock:
            self.calls.append(call)
        if self.mode == "hang":
            self.released.wait(120)
            return
        if self.mode == "fail":
            return answer(request, 500, {"message": "Server Error"})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return answer(request, 401, {"message": "Bad credentials"})
        if (
            request.headers.get("X-GitHub-Api-Version") != API_VERSION
            or request.headers.get("Accept") != "application/vnd.github+json"
        ):
            return answer(request, 400, {"message": "unsupported API version or media type"})
        with self._lock:
            code, reply = self._route(method, call.path, parse_qs(urlsplit(request.path).query), call.body)
        answer(request, code, reply)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        statuses = _STATUSES.fullmatch(path)
        if statuses:
            owner, repo, number = statuses.groups()
            deployment = self.deployments.get(int(number))
            if deployment is None or deployment.data["repository_url"] != self._repo_url(owner, repo):
                return 404, {"message": "Not Found"}
            if method == "GET":
                return 200, list(reversed(deployment.statuses))
            return self._create_status(deployment, body)
        deployments = _DEPLOYMENTS.fullmatch(path)
        if deployments:
            owner, repo = deployments.groups()
            if method == "GET":
                found = [
                    d.data
                    for d in reversed(self.deployments.values())
                    if d.data["repository_url"] == self._repo_url(owner, repo)
                    and all(d.data.get(k) == v[0] for k, v in query.items() if k in ("environment", "ref"))
                ]
                return 200, found
            return self._create_deployment(owner, repo, body)
        return 404, {"message": "Not Found"}

    def _create_deployment(self, owner: str, repo: str, body: Any) -> tuple[int, Any]:
        problem = _invalid(
            body,
            required=("ref",),
            strings=("ref", "task", "environment", "description"),
            booleans=("auto_merge", "transient_environment", "production_environment"),
        )
        contexts = body.get("required_contexts", []) if isinstance(body, dict) else []
        if problem is None and not (isinstance(contexts, list) and all(isinstance(c, str) for c in contexts)):
            problem = "required_contexts is not an array of strings"
        if problem is None and "payload" in body and not isinstance(body["payload"], (dict, str)):
            problem = "payload is not an object or string"
        if problem:
            return 422, {"message": "Validation Failed", "errors": [problem]}
        number = next(self._ids)
        environment = body.get("environment", "production")
        now = _now()
        data = {
            "id": number,
            "node_id": f"DE_{number}",
            "sha": "0" * 40,
            "ref": body["ref"],
            "task": body.get("task", "deploy"),
            "payload": body.get("payload", {}),
            "environment": environment,
            "original_environment": environment,
            "description": body.get("description"),
            "creator": {"login": "watcher-bot"},
            "created_at": now,
            "updated_at": now,
            "statuses_url": f"{self.url}/repos/{owner}/{repo}/deployments/{number}/statuses",
            "repository_url": self._repo_url(owner, repo),
            "transient_environment": body.get("transient_environment", False),
            "production_environment": body.get("production_environment", environment == "production"),
        }
        self.deployments[number] = Deployment(data)
        return 201, data

    def _create_status(self, deployment: Deployment, body: Any) -> tuple[int, Any]:
        problem = _invalid(
            body,
            required=("state",),
            strings=("state", "log_url", "target_url", "environment_url", "description", "environment"),
            booleans=("auto_inactive",),
        )
        if problem is None and body["state"] not in STATES:
            problem = f"state {body['state']!r} is not one of {', '.join(STATES)}"
        if problem is None and len(body.get("description") or "") > 140:
            problem = "description is longer than 140 characters"
        if problem:
            return 422, {"message": "Validation Failed", "errors": [problem]}
        status = self._add_status(deployment, body)
        if body["state"] == "success" and body.get("auto_inactive", True):
            for other in self.deployments.values():
                same = (other.data["repository_url"], other.data["environment"]) == (
                    deployment.data["repository_url"],
                    deployment.data["environment"],
                )
                if (
                    other is not deployment
                    and same
                    and other.state != "inactive"
                    and not other.data["transient_environment"]
                    and not other.data["production_environment"]
                    and other.data["id"] < deployment.data["id"]
                ):
                    self._add_status(other, {"state": "inactive", "description": "replaced"})
        return 201, status

    def _add_status(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        number = next(self._ids)
        log_url = body.get("log_url", body.get("target_url", ""))
        status = {
            "id": number,
            "node_id": f"DES_{number}",
            "state": body["state"],
            "description": body.get("description", ""),
            "environment": body.get("environment", deployment.data["environment"]),
            "target_url": log_url,
            "log_url": log_url,
            "environment_url": body.get("environment_url", ""),
            "created_at": _now(),
            "updated_at": _now(),
            "creator": {"login": "watcher-bot"},
            "deployment_url": deployment.data["statuses_url"].rsplit("/statuses", 1)[0],
            "repository_url": deployment.data["repository_url"],
        }
        deployment.statuses.append(status)
        return status

    def _repo_url(self, owner: str, repo: str) -> str:
        return f"{self.url}/repos/{owner.lower()}/{repo.lower()}"

    # -- for the tests -------------------------------------------------------------------------

    def posts(self) -> list[Received]:
        with self._lock:
            return [call for call in self.calls if call.method == "POST"]

    def wait_posts(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            posts = self.posts()
            if len(posts) >= count:
                return posts
            time.sleep(0.05)
        raise AssertionError(
            f"{len(self.posts())} POSTs within {timeout:g}s, expected {count}: "
            f"{[(c.path, c.body) for c in self.posts()]}"
        )

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.deployments.clear()


def _invalid(
    body: Any, *, required: tuple[str, ...], strings: tuple[str, ...], booleans: tuple[str, ...]
) -> str | None:
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    for name in required:
        if name not in body:
            return f"{name} is required"
    for name in strings:
        if name in body and not isinstance(body[name], str):
            return f"{name} is not a string"
    for name in booleans:
        if name in body and not isinstance(body[name], bool):
            return f"{name} is not a boolean"
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
