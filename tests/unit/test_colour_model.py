"""watcher's overlay of a colour (platforms/colour_model.py), from a model as compose renders it."""

from __future__ import annotations

import yaml

from watcher.backends.instance import Instance, repository
from watcher.engine.reconcile import Observed
from watcher.platforms.color import Color
from watcher.platforms.colour_model import NETWORK, ColourModel, network_name, one_shots
from watcher.platforms.health import judge

#: umami-like: web waits for a shared db (healthy), a colour worker and a colour migration.
MODEL = {
    "services": {
        "db": {"image": "postgres:16", "volumes": [{"type": "volume", "source": "db-data"}]},
        "web": {
            "image": "127.0.0.1:5000/acme/web:1",
            "depends_on": {
                "db": {"condition": "service_healthy", "required": True, "restart": True},
                "worker": {"condition": "service_started", "required": True},
                "migrate": {"condition": "service_completed_successfully", "required": True},
            },
            "networks": {"default": None},
            "links": ["db:database", "worker"],
        },
        "worker": {
            "image": "127.0.0.1:5000/acme/web:1",
            "depends_on": {"db": {}},
            "networks": {"default": None},
        },
        "migrate": {"image": "127.0.0.1:5000/acme/web:1", "network_mode": "host"},
    },
    "volumes": {"db-data": {}, "cache": {}},
    "networks": {"default": {"name": "shop_default", "external": True}, "backend": {}},
}
COLOUR = ("web", "worker", "migrate")


class ResetTag(yaml.SafeLoader):
    """Reads `!reset` / `!override` as what they carry, marked."""


def _tagged(tag: str):  # noqa: ANN202
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> tuple[str, object]:
        value = loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode) else None
        if isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        return tag, value

    return construct


ResetTag.add_constructor("!reset", _tagged("reset"))
ResetTag.add_constructor("!override", _tagged("override"))


def overlay(images: dict[str, str] | None = None) -> dict:
    return yaml.load(ColourModel(MODEL, COLOUR, "shop-blue").overlay(images or {}), ResetTag)


def test_the_shared_services_and_what_only_they_use_leave_the_colour_project() -> None:
    out = overlay()
    assert out["services"]["db"] == ("reset", {})
    assert out["volumes"] == {"db-data": ("reset", {}), "cache": ("reset", {})}
    assert out["networks"]["backend"] == ("reset", {}) and "default" not in out["networks"]


def test_depends_on_keeps_the_colour_services_with_their_conditions() -> None:
    services = overlay()["services"]
    assert services["web"]["depends_on"] == (
        "override",
        {
            "worker": {"condition": "service_started", "required": True},
            "migrate": {"condition": "service_completed_successfully", "required": True},
        },
    )
    assert services["worker"]["depends_on"] == ("reset", {})
    assert services["web"]["links"] == ("override", ["worker"])


def test_every_colour_service_joins_the_colour_network_but_one_on_another_namespace() -> None:
    out = overlay()
    assert out["networks"][NETWORK] == {"name": "0-shop-blue"}
    assert out["services"]["web"]["networks"] == {NETWORK: {}}
    assert "networks" not in out["services"]["migrate"]  # network_mode: host


def test_the_colour_network_sorts_before_any_other_name() -> None:
    assert (
        sorted(["0shop", "a", "Shop_default", network_name("shop-blue"), "shop_default"])[0] == "0-shop-blue"
    )


def test_a_following_service_runs_its_repository_at_the_version() -> None:
    out = overlay({"worker": "127.0.0.1:5000/acme/streaming:2"})
    assert out["services"]["worker"]["image"] == "127.0.0.1:5000/acme/streaming:2"
    assert "image" not in out["services"]["web"]
    assert repository("127.0.0.1:5000/acme/streaming:1.2@sha256:ab") == "127.0.0.1:5000/acme/streaming"


def test_one_shots_are_declared_or_awaited_to_completion() -> None:
    assert one_shots(MODEL, COLOUR, {}) == {"migrate"}
    assert one_shots(MODEL, COLOUR, {"migrate": False, "worker": True}) == {"worker"}
    assert one_shots({"services": {"web": {"depends_on": ["worker"]}}}, ("web", "worker"), {}) == set()


def shot(service: str, state: str, code: int = 0) -> Instance:
    return Instance(service, f"shop-blue-{service}-1", service, "img:1", "sha", state, None, code)


def test_a_one_shot_that_exited_0_is_done_one_that_failed_fails_the_colour() -> None:
    web, done = shot("web", "running"), shot("migrate", "exited", 0)
    assert judge([web, done], ["web", "migrate"], one_shots={"migrate"}).healthy
    assert judge([web, done], ["web", "migrate"]).state == "exited"  # not a one-shot: it died
    failed = judge([web, shot("migrate", "exited", 1)], ["web", "migrate"], one_shots={"migrate"})
    assert failed.failed and "one-shot shop-blue-migrate-1 exited (code 1)" in failed.reason
    running = judge([web, shot("migrate", "running")], ["web", "migrate"], one_shots={"migrate"})
    assert running.state == "starting" and "one-shot shop-blue-migrate-1 is running" in running.reason
    stopped = judge([shot("web", "exited", 137), done], ["web", "migrate"], one_shots={"migrate"})
    assert stopped.state == "stopped"


def test_every_following_service_must_agree_on_the_colour_version() -> None:
    def of(service: str, image: str) -> Instance:
        return Instance(service, f"shop-blue-{service}-1", service, image, "sha", "running", None, 0)

    web = of("web", "127.0.0.1:5000/acme/web:2")
    for stream, version in (("127.0.0.1:5000/acme/stream:2", "2"), ("127.0.0.1:5000/acme/stream:1", None)):
        found = {Color.BLUE: [web, of("stream", stream)]}
        observed = Observed(
            Color.BLUE, found, ("web", "stream"), "127.0.0.1:5000/acme/web", following=frozenset({"stream"})
        )
        assert observed.version(Color.BLUE) == version
    sidecar = Observed(
        Color.BLUE, {Color.BLUE: [web, of("logs", "vector:0.40")]}, ("web", "logs"), "127.0.0.1:5000/acme/web"
    )
    assert sidecar.version(Color.BLUE) == "2"  # a sidecar on an image of its own never makes it unknown


def test_only_the_volumes_the_colour_created_for_itself_go_with_it() -> None:
    """A per-colour volume (compose's own name for it in the colour project) goes with the colour;
    the shared project's, external or named by the user, and those only shared services use, stay."""
    model = {
        "services": {
            "db": {"volumes": [{"type": "volume", "source": "db-data"}]},
            "web": {
                "volumes": [
                    {"type": "volume", "source": "scratch"},
                    {"type": "volume", "source": "assets", "read_only": True},
                    {"type": "volume", "source": "named"},
                    {"type": "bind", "source": "/srv/config"},
                ]
            },
        },
        "volumes": {
            "db-data": {"name": "shop-blue_db-data"},
            "scratch": {"name": "shop-blue_scratch"},
            "assets": {"name": "shop_assets", "external": True},
            "named": {"name": "shop_named"},
        },
    }
    assert ColourModel(model, ("web",), "shop-blue").own_volumes == ["shop-blue_scratch"]


def test_a_resumed_colour_waits_no_more_for_the_one_shots_that_ran() -> None:
    """An instant rollback must not run an old migration again over a newer schema."""
    out = yaml.load(ColourModel(MODEL, COLOUR, "shop-blue").overlay({}, ran={"migrate"}), ResetTag)
    assert out["services"]["web"]["depends_on"] == (
        "override",
        {"worker": {"condition": "service_started", "required": True}},
    )
