"""The corpus: the shapes of real stacks' published compose files (tests/fixtures/corpus), each
adopted as a new user would and taken through deploy v1, v2, rollback, v2 again, cleanup and
reset under load (tests/harness/corpus.py), on offline stand-in images
(tests/harness/corpus_images.py). One class per stack: `--dist loadscope` runs them side by side.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import corpus_images
from tests.harness.corpus import Check, Fix, Journey
from tests.harness.corpus_images import StandIn
from tests.harness.stack import free_port

pytestmark = pytest.mark.integration

R = corpus_images.REGISTRY


def postgres(tag: str) -> StandIn:
    return StandIn("library/postgres", {"STANDIN_ROLE": "db", "PORT": "5432"}, tags=(tag,))


def redis(tag: str) -> StandIn:
    return StandIn("library/redis", {"STANDIN_ROLE": "redis"}, tags=(tag,))


@pytest.fixture
def journey(request: pytest.FixtureRequest, real_services: None) -> Iterator[Journey]:
    """The class's stack: its images built (once per run), its journey, its row written."""
    cls = request.cls
    corpus_images.build_all(cls.IMAGES)
    made = Journey(cls.STACK, cls.REPLACE, fixes=cls.FIXES)
    try:
        yield made
    finally:
        made.finish()


def peers_seen(journey: Journey, color: str, service: str) -> set[str]:
    """The versions `service` of `color` got from the sibling it calls by name."""
    names = journey.stack.containers_of(color, service)
    assert names, f"no {service} on {color}"
    lines = [line for line in journey.logs(names[0]).splitlines() if line.startswith("peer ")]
    return {line.rsplit(" ", 1)[1] for line in lines if " answered v" in line}


def sibling_by_name(service: str) -> Check:
    """After a deploy v1 -> v2: each colour's `service` reached only its own colour by name."""

    def check(journey: Journey) -> None:
        new = journey.live()
        old = "blue" if new == "green" else "green"
        assert peers_seen(journey, new, service) == {"v2"}, f"{new}'s {service} reached another colour"
        assert peers_seen(journey, old, service) == {"v1"}, f"{old}'s {service} reached another colour"

    return check


def image_follows(service: str, version: str) -> Check:
    def check(journey: Journey) -> None:
        image = journey.container_image(journey.live(), service)
        assert image.endswith(f":{version}"), f"{service} runs {image}, not version {version}"

    return check


def compose_edit(old: str, new: str, what: str) -> Check:
    """An edit of compose.yml the user makes unless init's diff already did."""

    def edit(journey: Journey) -> None:
        if old in (journey.root / "compose.yml").read_text():
            journey.edit(what, "compose.yml", old, new)

    return edit


class TestUmami:
    STACK = "umami"
    IMAGES = [StandIn("umami-software/umami", {"PORT": "3000"}), postgres("15-alpine")]
    REPLACE = {
        "image: ghcr.io/umami-software/umami:postgresql-v2.13.0": f"image: {R}/umami-software/umami:v1",
        "image: postgres:15-alpine": f"image: {R}/library/postgres:15-alpine",
    }
    FIXES = ()

    def test_journey(self, journey: Journey) -> None:
        journey.journey(("--service", "umami:3000"))


class TestPlausible:
    STACK = "plausible"
    IMAGES = [
        StandIn("plausible/community-edition", {"PORT": "8000"}),
        postgres("16-alpine"),
        StandIn(
            "clickhouse/clickhouse-server", {"STANDIN_ROLE": "db", "PORT": "8123"}, tags=("24.12-alpine",)
        ),
    ]
    REPLACE = {
        "image: ghcr.io/plausible/community-edition:v2.1.4": f"image: {R}/plausible/community-edition:v1",
        "image: postgres:16-alpine": f"image: {R}/library/postgres:16-alpine",
        "image: clickhouse/clickhouse-server:24.12-alpine": f"image: {R}/clickhouse/clickhouse-server:24.12-alpine",
    }

    FIXES = ()

    def test_journey(self, journey: Journey) -> None:
        # Its TMPDIR: scratch each colour may have to itself.
        journey.journey(("--service", "plausible:8000", "--per-colour-volume", "plausible-data"))


class TestAuthentik:
    STACK = "authentik"
    IMAGES = [
        StandIn("goauthentik/server", {"PORT": "9000"}),
        postgres("16-alpine"),
        redis("alpine"),
    ]
    REPLACE = {
        "ghcr.io/goauthentik/server": f"{R}/goauthentik/server",
        "AUTHENTIK_TAG=2024.12.1\n": "AUTHENTIK_TAG=v1\n",
        "image: docker.io/library/postgres:16-alpine": f"image: {R}/library/postgres:16-alpine",
        "image: docker.io/library/redis:alpine": f"image: {R}/library/redis:alpine",
    }

    FIXES = ()

    def test_journey(self, journey: Journey) -> None:
        # The repository is the default of ${AUTHENTIK_IMAGE:-...}: init reads it as compose does.
        journey.journey(("--service", "server:9000", "--service", "worker"))


class TestListmonk:
    STACK = "listmonk"
    IMAGES = [StandIn("listmonk/listmonk", {"PORT": "9000"}, workdir="/listmonk"), postgres("14-alpine")]
    REPLACE = {
        "image: listmonk/listmonk:v4.1.0": f"image: {R}/listmonk/listmonk:v1",
        "image: postgres:14-alpine": f"image: {R}/library/postgres:14-alpine",
        '"9432:5432"': f'"127.0.0.1:{free_port()}:5432"',  # the test machine's: a free port
    }
    FIXES = ()
    # init cannot line-edit what the x-app-defaults anchor supplies; it says the edits in words.
    EDITS = (
        (
            f"  image: {R}/listmonk/listmonk:v1\n",
            "  image: ${APP_IMAGE}:${APP_VERSION}\n",
            "the anchor's image",
        ),
        ('  ports:\n    - "9000:9000"\n', "", "the anchor's host port"),
        ("    container_name: listmonk_app\n", "", "the app's container_name"),
        ("    <<: *app-defaults\n", "    <<: *app-defaults\n    profiles: [app]\n", "the app's profile"),
    )

    def test_journey(self, journey: Journey) -> None:
        edits = [compose_edit(old, new, f"{what}, as init's steps say") for old, new, what in self.EDITS]
        journey.journey(("--service", "app:9000"), after={"config": edits})


class TestMiniflux:
    STACK = "miniflux"
    IMAGES = [StandIn("miniflux/miniflux", {"PORT": "8080"}, shellless=True), postgres("17-alpine")]
    REPLACE = {
        "image: miniflux/miniflux:2.2.3": f"image: {R}/miniflux/miniflux:v1",
        "image: postgres:17-alpine": f"image: {R}/library/postgres:17-alpine",
    }
    FIXES = ()

    def test_journey(self, journey: Journey) -> None:
        journey.journey(("--service", "miniflux:8080", "--health", "miniflux:/healthcheck"))


def migrations(journey: Journey) -> dict[str, int]:
    """The migrations chatwoot's database was told of, by version."""
    logs = journey.logs(journey.stack.container_ids(journey.name).get(f"{journey.name}-postgres-1", "none"))
    counts: dict[str, int] = {}
    for line in logs.splitlines():
        if "db: migration version=" in line:
            version = line.split("version=")[1].split("&")[0]
            counts[version] = counts.get(version, 0) + 1
    return counts


def migrated(expected: dict[str, int]) -> Check:
    def check(journey: Journey) -> None:
        assert migrations(journey) == expected, f"one-shot runs: {migrations(journey)}, expected {expected}"

    return check


def broken_migration_fails(journey: Journey) -> None:
    """A deploy whose one-shot exits 1 fails with nothing switched, under load."""
    color, version = journey.live(), journey.stack.version()
    with journey.load():
        failed = journey.watcher("deploy", "v3", check=False)
    assert failed.returncode != 0, "a failing one-shot must fail the deploy"
    assert (journey.live(), journey.stack.version()) == (color, version), "nothing switched"
    assert "migrate v3" in failed.stdout + failed.stderr, "the one-shot's last lines are in the output"
    assert migrations(journey).get("v3") == 1


class TestChatwoot:
    STACK = "chatwoot"
    IMAGES = [
        StandIn(
            "chatwoot/chatwoot",
            {"PORT": "3000", "STANDIN_PEER_VAR": "INTERNAL_API_URL"},
            tags=("v1", "v2", "v3"),
            broken=("v3",),
        ),
        StandIn("pgvector/pgvector", {"STANDIN_ROLE": "db", "PORT": "5432"}, tags=("pg16",)),
        redis("alpine"),
    ]
    REPLACE = {
        "image: chatwoot/chatwoot:v3.16.0": f"image: {R}/chatwoot/chatwoot:v1",
        "image: pgvector/pgvector:pg16": f"image: {R}/pgvector/pgvector:pg16",
        "image: redis:alpine": f"image: {R}/library/redis:alpine",
    }
    FIXES = (
        Fix(
            "named volume storage_data",
            "removed storage_data from the base anchor (uploads to object storage): two colours would write it",
            "compose.yml",
            "    volumes:\n      - storage_data:/app/storage\n",
        ),
    )

    def test_journey(self, journey: Journey) -> None:
        journey.journey(
            ("--service", "rails:3000", "--service", "sidekiq", "--service", "prepare", "--service", "base"),
            after={
                "v1": [migrated({"v1": 1})],
                "v2": [migrated({"v1": 1, "v2": 1}), sibling_by_name("sidekiq")],
                # a retained colour resumed (the rollback, then v2 again on the colour kept at v2)
                # does not run its one-shots again: they ran when it was deployed
                "rollback": [migrated({"v1": 1, "v2": 1})],
                "v2 again": [migrated({"v1": 1, "v2": 1})],
                "before cleanup": [broken_migration_fails],
            },
        )


class TestMastodon:
    STACK = "mastodon"
    STREAMING = "/api/v1/streaming"
    IMAGES = [
        StandIn("mastodon/mastodon", {"PORT": "3000"}),
        StandIn("mastodon/mastodon-streaming", {"PORT": "4000", "STANDIN_PREFIX": STREAMING}),
        postgres("14-alpine"),
        redis("7-alpine"),
    ]
    REPLACE = {
        "image: ghcr.io/mastodon/mastodon:v4.3.2": f"image: {R}/mastodon/mastodon:v1",
        "image: ghcr.io/mastodon/mastodon-streaming:v4.3.2": f"image: {R}/mastodon/mastodon-streaming:v1",
        "image: postgres:14-alpine": f"image: {R}/library/postgres:14-alpine",
        "image: redis:7-alpine": f"image: {R}/library/redis:7-alpine",
    }

    FIXES = ()

    def test_journey(self, journey: Journey) -> None:
        follows = compose_edit(
            f"{R}/mastodon/mastodon-streaming:v1",
            f"{R}/mastodon/mastodon-streaming:${{APP_VERSION:-unset}}",
            "streaming's image tag made ${APP_VERSION} (it must match web's)",
        )
        journey.journey(
            (
                "--service",
                "web:3000",
                "--service",
                f"streaming:4000:{self.STREAMING}",
                "--keep-prefix",
                "streaming",
                "--service",
                "sidekiq",
            ),
            paths=("", self.STREAMING),
            after={
                "config": [follows],
                "v1": [image_follows("streaming", "v1")],
                "v2": [image_follows("streaming", "v2")],
                "rollback": [image_follows("streaming", "v1")],
                "v2 again": [image_follows("streaming", "v2")],
            },
        )


class TestN8n:
    STACK = "n8n"
    IMAGES = [
        StandIn("n8nio/n8n", {"PORT": "5678", "STANDIN_PORTS": "5679"}),
        StandIn(
            "n8nio/runners", {"STANDIN_ROLE": "worker", "STANDIN_PEER_VAR": "N8N_RUNNERS_TASK_BROKER_URI"}
        ),
        postgres("16"),
        redis("6-alpine"),
    ]
    REPLACE = {
        "image: docker.n8n.io/n8nio/n8n:": f"image: {R}/n8nio/n8n:",
        "image: n8nio/runners:": f"image: {R}/n8nio/runners:",
        "N8N_VERSION=1.80.0\n": "N8N_VERSION=v1\n",
        "image: postgres:16\n": f"image: {R}/library/postgres:16\n",
        "image: redis:6-alpine": f"image: {R}/library/redis:6-alpine",
    }

    FIXES = ()

    def test_journey(self, journey: Journey) -> None:
        follows = compose_edit(
            f"{R}/n8nio/runners:${{N8N_VERSION}}",
            f"{R}/n8nio/runners:${{APP_VERSION:-unset}}",
            "the runners' image tag made ${APP_VERSION} (they must match n8n's)",
        )
        journey.journey(
            (
                "--service",
                "n8n:5678",
                "--service",
                "n8n-worker",
                "--service",
                "task-runners",
                # its settings come from N8N_ENCRYPTION_KEY: each colour's own copy of .n8n will do
                "--per-colour-volume",
                "n8n_storage",
            ),
            after={
                "config": [follows],
                "v1": [image_follows("task-runners", "v1")],
                "v2": [image_follows("task-runners", "v2"), sibling_by_name("task-runners")],
                "rollback": [image_follows("task-runners", "v1")],
                "v2 again": [image_follows("task-runners", "v2")],
            },
        )


class TestGitea:
    STACK = "gitea"
    IMAGES: list[StandIn] = []
    REPLACE: dict[str, str] = {}
    FIXES = ()

    def test_refused_for_its_state(self, journey: Journey) -> None:
        before = sorted(p.name for p in journey.root.iterdir())
        with journey.step("init"):
            refused = journey.watcher(
                "init",
                "--service",
                "server:3000",
                "--verify-url",
                f"{journey.stack.url}/version",
                "--yes",
                check=False,
            )
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert "named volume gitea is mounted read-write: two colours would write it" in refused.stderr, (
                refused.stderr
            )
            assert "Traceback" not in refused.stderr
            assert sorted(p.name for p in journey.root.iterdir()) == before, "init wrote nothing"
        journey.row.steps["init"] = "refused (state in volume gitea), nothing written"
