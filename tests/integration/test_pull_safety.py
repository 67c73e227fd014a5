"""Safety checks before a pull, on the real Docker engine, Compose, Caddy, Redis and the local
registry (127.0.0.1:5000):

- an image pushed for another architecture only (one manifest, or an index of other platforms),
  pushed straight over the registry's HTTP API, is refused before any pull: the message names
  the host's platform and the image's, no image of that tag reaches Docker, no container starts,
  the route and the state are as they were;
- a tag that moves between the enqueue and the pull: the job deploys the digest it was queued at
  (Caddy serves that build), and the move is a new job for the new digest, which the next run
  deploys; a request newer than the move is never superseded by it.

One stack for the module: v1 is deployed first, so "unchanged" means a live app.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import docker
import httpx
import pytest
import redis

from tests.harness import images
from tests.harness.registry import OCI_INDEX, OCI_MANIFEST, put_manifest, upload_blob
from tests.harness.stack import APP_REPO, REGISTRY, Stack
from tests.harness.triggers import forget
from watcher.config import AppConfig, load_config, load_host
from watcher.engine.arch import host_platform
from watcher.engine.deployment import Deployment
from watcher.queue.connection import connect
from watcher.queue.job import Status
from watcher.queue.queue import DeployQueue
from watcher.queue.worker import Worker

pytestmark = pytest.mark.integration

SETTINGS = {"health_timeout": "20s", "verify_window": "1s"}
REPOSITORY = APP_REPO.removeprefix(f"{REGISTRY}/")
PUSHED: list[str] = []  # the tags this module pushes: their local images go at the end


@pytest.fixture(scope="module")
def stack(app_images: dict[str, str], redis_url: str) -> Iterator[Stack]:
    created = Stack.create(**SETTINGS)
    try:
        created.write_config(**SETTINGS, extra=f'[redis]\nurl = "{redis_url}"\nlock_ttl = "10s"\n')
        created.watcher("deploy", "v1", check=True)
        yield created
    finally:
        forget(connect(redis_url), created.name)
        created.destroy()
        for tag in PUSHED:
            if images.image_exists(f"{APP_REPO}:{tag}"):
                images.client().images.remove(f"{APP_REPO}:{tag}", force=True)


def new_tag(prefix: str) -> str:
    tag = f"{prefix}{uuid.uuid4().hex[:8]}"
    PUSHED.append(tag)
    return tag


def other_architecture() -> str:
    """The architecture this Docker host is not."""
    info = docker.from_env().info()
    return "arm64" if host_platform(info["OSType"], info["Architecture"]).architecture == "amd64" else "amd64"


def push_foreign(tag: str, architecture: str, *, as_index: bool) -> str:
    """An image for `architecture` only, as one manifest or behind an index, over the HTTP API."""
    base = f"http://{REGISTRY}"
    with httpx.Client(timeout=10) as client:
        config = upload_blob(
            client,
            base,
            REPOSITORY,
            json.dumps(
                {
                    "architecture": architecture,
                    "os": "linux",
                    "config": {"Labels": {"tag": tag}},
                    "rootfs": {"type": "layers", "diff_ids": []},
                }
            ).encode(),
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [],
        }
        if not as_index:
            return put_manifest(client, base, REPOSITORY, tag, manifest)
        child = put_manifest(client, base, REPOSITORY, f"{tag}-{architecture}", manifest)
        size = len(json.dumps(manifest).encode())
        return put_manifest(
            client,
            base,
            REPOSITORY,
            tag,
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": child,
                        "size": size,
                        "platform": {"architecture": architecture, "os": "linux"},
                    },
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": child,
                        "size": size,  # a build attestation: no platform
                        "platform": {"architecture": "unknown", "os": "unknown"},
                    },
                ],
            },
        )


def project_containers(stack: Stack) -> dict[str, str]:
    """Every container of the stack's projects: name -> id."""
    found = {}
    for project in (stack.name, f"{stack.name}-blue", f"{stack.name}-green"):
        found.update(stack.container_ids(project))
    return found


@pytest.mark.parametrize("as_index", [False, True], ids=["manifest", "index"])
def test_an_image_for_another_architecture_only_is_refused_before_any_pull(
    stack: Stack, as_index: bool
) -> None:
    other = other_architecture()
    tag = new_tag("foreign")
    push_foreign(tag, other, as_index=as_index)
    host = host_platform(*(docker.from_env().info()[k] for k in ("OSType", "Architecture")))
    before = (stack.state_file.read_text(), stack.live_route(), project_containers(stack))

    refused = stack.watcher("deploy", tag)

    assert refused.returncode == 1, refused.stderr
    assert (
        f"{APP_REPO}:{tag} has no linux/{host.architecture} image (it has: linux/{other}); nothing was "
        "changed" in refused.stderr
    ), refused.stderr
    assert not images.image_exists(f"{APP_REPO}:{tag}"), "nothing was pulled"
    assert (stack.state_file.read_text(), stack.live_route(), project_containers(stack)) == before
    assert stack.version() == "v1"


def config_of(stack: Stack) -> AppConfig:
    return load_config(stack.config, {})


def run_next_job(config: AppConfig, client: redis.Redis) -> None:
    worker = Worker(
        client,
        config.name,
        lambda progress: Deployment(config, progress=progress),
        lock_ttl=load_host(config.source, {}).redis.lock_ttl,
        name="pull-safety-test",
        stream=io.StringIO(),
    )
    assert worker.run_once(), "the worker ran nothing"


def flavor(stack: Stack) -> str:
    return httpx.get(f"{stack.url}/flavor", timeout=5).text.strip()


def test_a_tag_moved_after_the_enqueue_deploys_the_queued_digest_and_the_move_is_a_new_job(
    stack: Stack, redis_url: str
) -> None:
    config, client = config_of(stack), connect(redis_url)
    queue = DeployQueue(client, config.name, retention=load_host(config.source, {}).history)
    tag = new_tag("moved")
    first = images.push(images.build_app_image(f"{APP_REPO}:{tag}", tag, flavor="first"))
    enqueued = stack.watcher("enqueue", tag, check=True)
    job_id = enqueued.stdout.strip()
    assert queue.get(job_id).digest == first, "the CLI records the tag's digest with the job"  # type: ignore[union-attr]
    second = images.push(images.build_app_image(f"{APP_REPO}:{tag}", tag, flavor="second"))  # the tag moves
    assert second != first

    run_next_job(config, client)

    job = queue.get(job_id)
    assert job is not None and job.status is Status.SUCCEEDED, job
    status = stack.status()
    assert (status["live_version"], status["live_digest"]) == (tag, first)
    assert flavor(stack) == "first", "the queued build serves, not the one the tag moved to"
    [follow] = queue.waiting()
    assert (follow.version, follow.digest, follow.source) == (tag, second, "cli"), follow
    assert f"{tag} has moved to {second} since the job was queued: job {follow.id} deploys it" in (
        job.message or ""
    )

    run_next_job(config, client)  # the move, deployed as a job of its own

    done = queue.get(follow.id)
    assert done is not None and done.status is Status.SUCCEEDED, done
    assert (stack.status()["live_digest"], flavor(stack)) == (second, "second")
    assert not queue.waiting()


def test_a_move_never_supersedes_a_newer_request(redis_url: str, app_name: str) -> None:
    """The worker queues a move with keep_newer: a request that waits was made after the job
    that saw the move, so it stays; with nothing waiting, the move is queued."""
    queue = DeployQueue(connect(redis_url), app_name)
    moved = "sha256:" + "ab" * 32
    alone = queue.enqueue(
        "v1", source="poll", requested_by="job 1 (its tag moved)", digest=moved, keep_newer=True
    )
    assert alone.outcome == "queued"
    newer = queue.enqueue("v3", source="webhook", requested_by="test")
    assert queue.get(alone.job.id).status is Status.SUPERSEDED  # type: ignore[union-attr]
    kept = queue.enqueue(
        "v1", source="poll", requested_by="job 2 (its tag moved)", digest=moved, keep_newer=True
    )
    assert (kept.outcome, kept.job.id) == ("newer-queued", newer.job.id)
    assert [job.id for job in queue.waiting()] == [newer.job.id]
