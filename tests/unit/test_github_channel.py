"""The GitHub channel against the local contract server of GitHub's deployments API
(tests/harness/github_contract.py), no Docker: which events it takes, where the repository
comes from, what it sends, and what it says when GitHub refuses."""

from __future__ import annotations

import pytest

from tests.harness.github_contract import GithubContract
from watcher.config import GithubSettings
from watcher.notify.event import Event
from watcher.notify.github import GithubDeployments

TOKEN = "ghp_unit"


@pytest.fixture
def github() -> GithubContract:
    with GithubContract(TOKEN) as contract:
        yield contract


def channel(github: GithubContract, repository: str | None = None, token: str = TOKEN) -> GithubDeployments:
    return GithubDeployments(
        GithubSettings(github.url, token, repository, "shop", "https://shop.example.com")
    )


def test_it_takes_job_events_of_a_known_repository_only(github: GithubContract) -> None:
    configured, from_job = channel(github, "acme/shop"), channel(github)
    assert configured.wants(Event("started", "shop", "v2", "7"))
    assert not configured.wants(Event("paused", "shop")) and not configured.wants(
        Event("refused", "shop", "v9")
    )
    assert not from_job.wants(Event("started", "shop", "v2", "7"))  # no repository anywhere: nothing to tell
    assert from_job.wants(Event("started", "shop", "v2", "7", repository="acme/web"))
    # the configured repository wins over the one a payload names
    assert configured.repository(Event("started", "shop", "v2", "7", repository="evil/other")) == "acme/shop"


def test_a_job_becomes_a_deployment_whose_status_follows_it(github: GithubContract) -> None:
    deployments = channel(github, "acme/shop")
    deployments.send(Event("started", "shop", "v2", "7", link="https://d/apps/shop/jobs/7"), 5)
    deployments.send(Event("rolled_back", "shop", "v2", "7", detail="did not answer v2"), 5)
    (deployment,) = github.deployments.values()
    assert deployment.data["ref"] == "v2" and deployment.data["environment"] == "shop"
    assert [s["state"] for s in deployment.statuses] == ["in_progress", "failure"]
    assert deployment.statuses[0]["log_url"] == "https://d/apps/shop/jobs/7"
    assert deployment.statuses[1]["environment_url"] == "https://shop.example.com"


def test_refusals_are_errors_that_name_the_call_and_githubs_message_never_the_token(
    github: GithubContract,
) -> None:
    with pytest.raises(RuntimeError) as refused:
        channel(github, "acme/shop", token="ghp_wrong").send(Event("started", "shop", "v2", "7"), 5)
    assert "POST /repos/acme/shop/deployments: 401 Bad credentials" in str(refused.value)
    assert "ghp_wrong" not in str(refused.value)
    with pytest.raises(RuntimeError, match="job 8 has no GitHub deployment"):
        channel(github, "acme/shop").send(Event("succeeded", "shop", "v3", "8"), 5)
