"""Webhook payloads and signatures, as pure logic: GitHub package events in the shapes GitHub
sends (field notes §4), Distribution and Harbor notifications, HMAC verification, and that no
payload, however mangled, makes the parsers raise. Also the `[webhook]` and `[poll]` config."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_config import MINIMAL, make_project, refused
from watcher.config import load_host
from watcher.triggers.payloads import (
    Ignored,
    Push,
    parse_distribution,
    parse_github,
    parse_harbor,
    parse_registry_notification,
    sign,
    verify_github_signature,
)

DIGEST = "sha256:" + "89160c587d0c36bf54090497a465445c14980ba48efbcf3b0d03c49b76f3feb8"
PLATFORM = "sha256:" + "e312a84da724b2de60d64c3241b69e6c89c3ce7ec82e55cd9793ddc1978008c1"


def github_package(
    action: str = "published",
    tag: str | None = "v1.2.3",
    *,
    event: str = "package",
    owner: str = "Octo-Org",
    name: str = "Hello-World",
    ecosystem: str = "CONTAINER",
    package_url: str | None = None,
    digest: str = DIGEST,
) -> dict[str, Any]:
    """A trimmed copy of what GitHub sends for a container push (fields watcher does not read kept
    where they show the shape)."""
    url = package_url if package_url is not None else f"ghcr.io/{owner.lower()}/{name.lower()}:{tag or ''}"
    package = {
        "id": 9056324,
        "name": name,
        "namespace": owner,
        "description": "",
        "ecosystem": ecosystem,
        "package_type": ecosystem,
        "html_url": f"https://github.com/{owner}/packages/9056324",
        "owner": {"login": owner, "id": 7076013, "type": "Organization"},
        "package_version": {
            "id": 564296960,
            "version": digest,
            "name": digest,
            "container_metadata": {
                "tag": {"name": tag or "", "digest": digest},
                "labels": {"all_labels": {}},
                "manifest": {
                    "digest": digest,
                    "media_type": "application/vnd.docker.distribution.manifest.list.v2+json",
                },
            },
            "package_files": [],
            "installation_command": f"docker pull {url}",
            "package_url": url,
        },
        "registry": {
            "name": "GitHub CONTAINER registry",
            "type": ecosystem,
            "url": f"https://{ecosystem}.pkg.github.com/{owner}",
        },
    }
    return {
        "action": action,
        event: package,
        "repository": {"full_name": f"{owner}/{name}"},
        "sender": {"login": "octocat"},
    }


# -- signatures -------------------------------------------------------------------------------


def test_github_docs_test_vector() -> None:
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(secret, body) == header
    assert verify_github_signature(secret, body, header)
    assert verify_github_signature(secret, body, header.upper().replace("SHA256=", "sha256="))  # hex case


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18",  # one digit off
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",  # one short
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 x",
        "sha256=ünïcödé",
    ],
)
def test_bad_signatures(header: str | None) -> None:
    assert not verify_github_signature("It's a Secret to Everybody", b"Hello, World!", header)


def test_no_secret_verifies_nothing() -> None:
    assert not verify_github_signature("", b"x", sign("", b"x"))


def test_signature_covers_the_exact_bytes() -> None:
    body = json.dumps(github_package()).encode()
    header = sign("s3cret", body)
    assert verify_github_signature("s3cret", body, header)
    assert not verify_github_signature("s3cret", body + b" ", header)
    assert not verify_github_signature("other", body, header)


# -- GitHub events ----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["published", "updated"])
@pytest.mark.parametrize("event", ["package", "registry_package"])
def test_published_and_updated(event: str, action: str) -> None:
    push = parse_github(event, github_package(action, event=event))
    assert push == Push("ghcr.io", "octo-org/hello-world", ("v1.2.3",), DIGEST)


def test_repository_is_lowercased_from_owner_and_name() -> None:
    payload = github_package(package_url="")
    assert parse_github("package", payload) == Push("ghcr.io", "octo-org/hello-world", ("v1.2.3",), DIGEST)


def test_registry_and_nested_name_from_package_url() -> None:
    payload = github_package(name="repo/api", package_url="ghcr.io/Octo-Org/repo/api:v1.2.3")
    push = parse_github("package", payload)
    assert isinstance(push, Push) and push.image == "ghcr.io/octo-org/repo/api"


def test_trailing_colon_in_package_url() -> None:
    payload = github_package(tag=None)  # untagged: package_url "ghcr.io/octo-org/hello-world:"
    assert payload["package"]["package_version"]["package_url"].endswith(":")
    result = parse_github("package", payload)
    assert isinstance(result, Ignored) and "untagged" in result.reason
    # With the tag only in the package URL (container_metadata null), the tag still comes through.
    payload = github_package(package_url="ghcr.io/octo-org/hello-world:v2.0.0")
    payload["package"]["package_version"]["container_metadata"] = None
    assert parse_github("package", payload) == Push("ghcr.io", "octo-org/hello-world", ("v2.0.0",), None)


def test_legacy_docker_ecosystem() -> None:
    payload = github_package(
        ecosystem="docker", package_url="docker.pkg.github.com/octo-org/hello-world/app:1.0.0"
    )
    payload["package"]["package_version"]["container_metadata"] = None
    payload["package"]["package_version"]["docker_metadata"] = [{"tags": ["1.0.0", "latest"]}]
    push = parse_github("package", payload)
    assert push == Push("docker.pkg.github.com", "octo-org/hello-world/app", ("1.0.0", "latest"), None)


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda p: p.update(action="deleted"), "action 'deleted' is not one of"),
        (lambda p: p.pop("action"), "action None"),
        (lambda p: p["package"].update(package_type="npm", ecosystem="npm"), "not a container image"),
        (lambda p: p["package"].update(package_version=None), "no package_version"),
        (
            lambda p: p["package"]["package_version"]["container_metadata"]["tag"].update(name="bad tag!"),
            "invalid tag",
        ),
        (lambda p: p.pop("package"), "no package object"),
    ],
)
def test_ignored_with_a_reason(change, reason: str) -> None:
    payload = github_package()
    change(payload)
    result = parse_github("package", payload)
    assert isinstance(result, Ignored) and reason in result.reason, result


def test_multi_arch_burst_parses_to_one_tag() -> None:
    """One push of a two-platform image: an event per platform manifest (untagged) and one for
    the tagged index (github/docs #22091). Only the index names a tag; dispatch dedupes the rest."""
    events = [
        github_package(tag=None, digest=PLATFORM),
        github_package(tag=None, digest=PLATFORM.replace("e3", "f4")),
        github_package(tag="v1.2.3"),
    ]
    parsed = [parse_github("package", e) for e in events]
    assert [type(p).__name__ for p in parsed] == ["Ignored", "Ignored", "Push"]


def _mangle(value: Any, rng: random.Random) -> Any:
    junk = [None, 0, -1, 1.5, True, "", "x" * 300, [], {}, ["a"], {"a": 1}, "sha256:", "ghcr.io/:"]
    if isinstance(value, dict):
        out = {k: _mangle(v, rng) for k, v in value.items()}
        if out and rng.random() < 0.3:
            out[rng.choice(list(out))] = rng.choice(junk)
        return out
    if isinstance(value, list):
        return [_mangle(v, rng) for v in value]
    return rng.choice(junk) if rng.random() < 0.15 else value


def test_no_payload_makes_the_parsers_raise() -> None:
    rng = random.Random(4)
    base = [
        github_package(),
        github_package(event="registry_package"),
        distribution_envelope(),
        harbor_push(),
    ]
    for _ in range(1500):
        payload = _mangle(copy.deepcopy(rng.choice(base)), rng)
        for result in (
            parse_github("package", payload),
            parse_github("registry_package", payload),
            *parse_registry_notification(payload),
        ):
            assert isinstance(result, (Push, Ignored))
            if isinstance(result, Push):
                assert result.tags and result.repository == result.repository.lower()
    for payload in (None, 1, "x", [], [1], {"events": None}, {"events": [None, 1]}):
        parse_github("package", payload)
        parse_registry_notification(payload)


# -- Distribution and Harbor notifications ------------------------------------------------------


def distribution_envelope(
    tag: str | None = "v2", media: str = "application/vnd.oci.image.manifest.v1+json", action: str = "push"
) -> dict[str, Any]:
    target = {
        "mediaType": media,
        "size": 812,
        "digest": DIGEST,
        "length": 812,
        "repository": "Acme/App",
        "url": f"http://127.0.0.1:5000/v2/acme/app/manifests/{DIGEST}",
    }
    if tag is not None:
        target["tag"] = tag
    return {
        "events": [
            {
                "id": "2f4c7a0e-6a1b-4c1f-8f5e-0c6f1d2e3a4b",
                "timestamp": "2025-01-01T00:00:00Z",
                "action": action,
                "target": target,
                "request": {
                    "id": "r1",
                    "addr": "127.0.0.1:40000",
                    "host": "127.0.0.1:5000",
                    "method": "PUT",
                    "useragent": "docker/27",
                },
                "actor": {},
                "source": {"addr": "host:5000", "instanceID": "i"},
            }
        ]
    }


def test_distribution_push() -> None:
    [push] = parse_distribution(distribution_envelope())
    assert push == Push("127.0.0.1:5000", "acme/app", ("v2",), DIGEST, "2f4c7a0e-6a1b-4c1f-8f5e-0c6f1d2e3a4b")


@pytest.mark.parametrize(
    "envelope, reason",
    [
        (distribution_envelope(tag=None), "untagged"),
        (distribution_envelope(media="application/octet-stream"), "is no tagged image"),
        (distribution_envelope(action="pull"), "is not push"),
        ({"events": []}, "holds no event"),
        ({"nothing": 1}, "not a notification envelope"),
    ],
)
def test_distribution_ignored(envelope: dict[str, Any], reason: str) -> None:
    [result] = parse_distribution(envelope)
    assert isinstance(result, Ignored) and reason in result.reason


def test_distribution_host_from_url_when_request_has_none() -> None:
    envelope = distribution_envelope()
    envelope["events"][0]["request"] = {}
    [push] = parse_distribution(envelope)
    assert isinstance(push, Push) and push.registry == "127.0.0.1:5000"


def harbor_push() -> dict[str, Any]:
    return {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1700000000,
        "operator": "admin",
        "event_data": {
            "resources": [
                {"digest": DIGEST, "tag": "1.4.0", "resource_url": "harbor.example.com/Library/App:1.4.0"}
            ],
            "repository": {"name": "app", "namespace": "library", "repo_full_name": "library/app"},
        },
    }


def test_harbor_push() -> None:
    assert parse_harbor(harbor_push()) == [Push("harbor.example.com", "library/app", ("1.4.0",), DIGEST)]
    assert parse_registry_notification(harbor_push()) == parse_harbor(harbor_push())
    other = harbor_push() | {"type": "DELETE_ARTIFACT"}
    assert isinstance(parse_harbor(other)[0], Ignored)


# -- the [webhook] and [poll] sections ------------------------------------------------------------


def test_webhook_and_poll_defaults(tmp_path: Path) -> None:
    host = load_host(make_project(tmp_path), {})
    config = host.app(None)
    assert (host.webhook.listen, host.webhook.max_body, host.webhook.status_auth) == (
        "127.0.0.1:9000",
        1 << 20,
        True,
    )
    assert (
        host.webhook.secret is None and host.webhook.registry_token is None and host.webhook.api_token is None
    )
    assert (config.poll.enabled, config.poll.interval, config.poll.jitter, config.poll.page_size) == (
        True,
        60.0,
        5.0,
        None,
    )


def test_secrets_from_env_or_file_never_shown(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-" + "f" * 32 + "\n")
    token, api = "tok" + "t" * 32, "api" + "a" * 32
    host = load_host(
        make_project(tmp_path, MINIMAL + '[webhook]\nlisten = "0.0.0.0:9100"\nmax_body = "512KiB"\n'),
        {
            "WEBHOOK_SECRET_FILE": str(secret_file),
            "WEBHOOK_REGISTRY_TOKEN": token,
            "WATCHER_API_TOKEN": api,
            "POLL_INTERVAL": "2m",
        },
    )
    assert host.webhook.secret == "from-a-file-" + "f" * 32 and host.webhook.registry_token == token
    assert (host.webhook.host, host.webhook.port, host.webhook.max_body) == ("0.0.0.0", 9100, 512 * 1024)
    assert host.app(None).poll.interval == 120.0
    shown = repr(host) + repr(host.app(None))
    assert "from-a-file" not in shown and token not in shown and api not in shown


@pytest.mark.parametrize(
    "section, message",
    [
        (
            '[webhook]\nsecret = "x"',
            "webhook.secret: secrets are never read from the file: set WEBHOOK_SECRET",
        ),
        ('[webhook]\napi_token = "x"', "set WATCHER_API_TOKEN or WATCHER_API_TOKEN_FILE"),
        ('[webhook]\nlisten = "9000"', "webhook.listen: expected HOST:PORT"),
        ('[webhook]\nmax_body = "lots"', "webhook.max_body: expected a size"),
        ("[webhook]\nmax_body = 10", "webhook.max_body: 10 is under the 1 KiB minimum"),
        ('[webhook]\nmax_body = "1GiB"', "webhook.max_body: '1GiB' is over the 64 MiB maximum"),
        ('[poll]\ninterval = "0.5s"', "poll.interval: must be at least 1s"),
        ('[poll]\ninterval = "10s"\njitter = "20s"', "poll.jitter: must not exceed poll.interval"),
        ("[poll]\npage_size = 0", "poll.page_size: must be between 1 and 10000"),
        ('[poll]\nenabled = "yes"', "poll.enabled: expected true or false"),
    ],
)
def test_bad_trigger_settings_are_refused(tmp_path: Path, section: str, message: str) -> None:
    path = make_project(tmp_path, MINIMAL + section)
    assert message in refused(path)
