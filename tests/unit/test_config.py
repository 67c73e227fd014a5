"""The configuration file: what loads, what is refused, and that every refusal names the file
and the key (or the environment variable) a user has to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from watcher.config import DEFAULT_LOCATIONS, Service, find_config, load_config, load_host, parse_duration
from watcher.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "watcher.toml"

MINIMAL = """\
[app]
name = "shop"
image = "ghcr.io/acme/shop"

[services.web]
port = 8080

[verify]
url = "http://127.0.0.1:8080/version"
"""


def make_project(
    tmp_path: Path,
    toml: str = MINIMAL,
    *,
    compose: tuple[str, ...] = ("compose.yml", "compose.blue.yml", "compose.green.yml"),
) -> Path:
    """A project dir with (empty) compose files and watcher.toml; returns the config path."""
    for name in compose:
        (tmp_path / name).write_text("")
    path = tmp_path / "watcher.toml"
    path.write_text(toml)
    return path


def refused(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    return str(caught.value)


# -- the example ----------------------------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE, {}, "demo")
    assert config.name == "demo"
    assert config.image == "127.0.0.1:5000/watcher/demo-app"
    assert config.project_dir == REPO
    assert config.compose_files == ("compose.yml",)
    assert config.services == (Service("web", 8080),)
    assert config.shared_services == ("caddy", "redis")
    assert config.caddy.admin == f"unix://{REPO}/.watcher/run/caddy-admin.sock"
    assert config.caddy.route_file == REPO / ".watcher" / "run" / "demo.live"
    assert config.state.dir == REPO / ".watcher" / "demo"
    assert (config.health.timeout, config.health.interval) == (300.0, 3.0)
    assert (config.verify.timeout, config.verify.window, config.drain.timeout) == (30.0, 10.0, 30.0)
    assert config.hooks.pre_deploy == []
    assert config.hooks.pre_deploy_timeout == 600.0
    assert config.drain.retain_old is True
    assert config.state.deployment_color_file is None  # two apps share the project directory


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {})
    assert config.project_dir == tmp_path
    assert config.health.timeout == 300.0
    assert config.health.interval == 3.0
    assert config.drain.timeout == 30.0
    assert config.version_env == "APP_VERSION"
    assert config.project() == "shop" and config.project("blue") == "shop-blue"
    assert config.services[0].upstream(config.name, "green") == "shop-web-green:8080"


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (300, 300.0),
        ("300", 300.0),
        ("300s", 300.0),
        ("5m", 300.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("1h", 3600.0),
        (2.5, 2.5),
        (" 10s ", 10.0),
    ],
)
def test_durations_parse(value: object, seconds: float) -> None:
    assert parse_duration(value, "health.timeout") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["5x", "-1", -1, True, "", "s", "5 minutes", "1e3"])
def test_junk_durations_are_rejected(value: object) -> None:
    with pytest.raises(ConfigError, match="health.timeout"):
        parse_duration(value, "health.timeout")


@pytest.mark.parametrize(
    ("toml_value", "seconds"),
    [
        ("300", 300.0),
        ('"300s"', 300.0),
        ('"5m"', 300.0),
        ('"1.5s"', 1.5),
        ('"250ms"', 0.25),
    ],
)
def test_durations_in_the_file(tmp_path: Path, toml_value: str, seconds: float) -> None:
    path = make_project(tmp_path, MINIMAL + f"\n[drain]\ntimeout = {toml_value}\n")
    assert load_config(path, {}).drain.timeout == pytest.approx(seconds)


@pytest.mark.parametrize("toml_value", ['"5x"', '"-1"', "-1", "true"])
def test_junk_duration_in_the_file_names_file_and_key(tmp_path: Path, toml_value: str) -> None:
    path = make_project(tmp_path, MINIMAL + f"\n[health]\ntimeout = {toml_value}\n")
    message = refused(path)
    assert str(path) in message
    assert "health.timeout" in message


def test_zero_health_interval_is_rejected(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + '\n[health]\ninterval = "0s"\n')
    assert "health.interval" in refused(path)


@pytest.mark.parametrize("toml_value", ["nan", "inf"])
def test_non_finite_duration_is_rejected(tmp_path: Path, toml_value: str) -> None:
    path = make_project(tmp_path, MINIMAL + f"\n[health]\ninterval = {toml_value}\n")
    assert "health.interval" in refused(path)


# -- environment overrides ------------------------------------------------------------------


def test_environment_overrides_durations(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + '\n[health]\ntimeout = "300s"\ninterval = "3s"\n')
    config = load_config(
        path, {"HEALTH_CHECK_TIMEOUT": "2m", "HEALTH_CHECK_INTERVAL": "500ms", "DRAIN_TIMEOUT": "45"}
    )
    assert config.health.timeout == 120.0
    assert config.health.interval == 0.5
    assert config.drain.timeout == 45.0


def test_empty_environment_value_does_not_override(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {"HEALTH_CHECK_TIMEOUT": ""})
    assert config.health.timeout == 300.0


def test_environment_override_beats_a_bad_file_value(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + '\n[drain]\ntimeout = "junk"\n')
    assert load_config(path, {"DRAIN_TIMEOUT": "5s"}).drain.timeout == 5.0


@pytest.mark.parametrize("name", ["HEALTH_CHECK_TIMEOUT", "HEALTH_CHECK_INTERVAL", "DRAIN_TIMEOUT"])
def test_bad_environment_value_names_the_variable(tmp_path: Path, name: str) -> None:
    message = refused(make_project(tmp_path), {name: "5x"})
    assert f"environment {name}" in message
    assert "'5x'" in message


def test_default_os_environ_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAIN_TIMEOUT", "7s")
    assert load_config(make_project(tmp_path)).drain.timeout == 7.0


# -- required keys and structure ------------------------------------------------------------


@pytest.mark.parametrize(
    ("remove", "key"),
    [
        ('name = "shop"\n', "app.name"),
        ('image = "ghcr.io/acme/shop"\n', "app.image"),
        ('url = "http://127.0.0.1:8080/version"\n', "verify.url"),
        ("[services.web]\nport = 8080\n", "services"),
    ],
)
def test_missing_required_key_is_named(tmp_path: Path, remove: str, key: str) -> None:
    assert remove in MINIMAL
    path = make_project(tmp_path, MINIMAL.replace(remove, ""))
    message = refused(path)
    assert str(path) in message
    assert f": {key}:" in message


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + '\n[helth]\ntimeout = "5m"\n')
    message = refused(path)
    assert "helth" in message and "unknown section" in message


def test_unknown_key_in_a_section_is_rejected(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + '\n[health]\ntimout = "5m"\n')
    assert "timout" in refused(path)


@pytest.mark.parametrize(
    ("typo", "key", "meant"),
    [
        ('imagee = "ghcr.io/acme/shop"', "apps.shop.imagee", "image"),  # a required key mistyped
        ('image = "ghcr.io/acme/shop"\n[apps.shop.services.web]\nprot = 8080', "services.web.prot", "port"),
        (
            'image = "ghcr.io/acme/shop"\n[apps.shop.services.web]\nport = 80\nhealth = { pth = "/up" }',
            "services.web.health.pth",
            "path",
        ),
    ],
)
def test_a_typo_is_named_before_the_key_it_leaves_missing(
    tmp_path: Path, typo: str, key: str, meant: str
) -> None:
    """`imagee` is the error, not the `image` it leaves missing: the message names the unknown key
    and the close match."""
    path = make_project(tmp_path, f"[apps.shop]\n{typo}\n")
    message = refused(path)
    assert key.removeprefix("apps.shop.") + ": unknown key" in message
    assert f"did you mean {meant!r}?" in message
    assert "is required" not in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + "\n[app\n")
    message = refused(path)
    assert str(path) in message and "not valid TOML" in message


@pytest.mark.parametrize(
    "image",
    ["ghcr.io/acme/shop:1.0", "shop:latest", "localhost:5000/shop:1", "ghcr.io/acme/shop@sha256:" + "a" * 64],
)
def test_image_with_tag_or_digest_is_rejected(tmp_path: Path, image: str) -> None:
    path = make_project(tmp_path, MINIMAL.replace("ghcr.io/acme/shop", image))
    message = refused(path)
    assert "app.image" in message and "without a tag" in message


def test_image_with_registry_port_is_accepted(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL.replace("ghcr.io/acme/shop", "localhost:5000/acme/shop"))
    assert load_config(path, {}).image == "localhost:5000/acme/shop"


def test_invalid_app_name_is_rejected(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL.replace('name = "shop"', 'name = "Shop;rm"'))
    assert "app.name" in refused(path)


def test_service_port_must_be_a_port(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL.replace("port = 8080", "port = 70000"))
    assert "services.web.port" in refused(path)


def test_verify_url_must_be_http(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL.replace("http://127.0.0.1:8080/version", "ftp://x/version"))
    assert "verify.url" in refused(path)


# -- caddy admin ----------------------------------------------------------------------------


@pytest.mark.parametrize("admin", ["http://127.0.0.1:2019", "http://localhost:2019/", "http://[::1]:2019"])
def test_loopback_admin_is_accepted(tmp_path: Path, admin: str) -> None:
    path = make_project(tmp_path, MINIMAL + f'\n[caddy]\nadmin = "{admin}"\n')
    assert load_config(path, {}).caddy.admin == admin.rstrip("/")


@pytest.mark.parametrize(
    "admin",
    [
        "http://0.0.0.0:2019",
        "http://10.0.0.5:2019",
        "http://caddy:2019",
        "http://127.0.0.1.evil.example:2019",
        "tcp://127.0.0.1:2019",
        "https://example.com:2019",
    ],
)
def test_non_loopback_admin_is_rejected(tmp_path: Path, admin: str) -> None:
    path = make_project(tmp_path, MINIMAL + f'\n[caddy]\nadmin = "{admin}"\n')
    message = refused(path)
    assert str(path) in message and "caddy.admin" in message


def test_unix_admin_is_resolved_against_the_project(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + '\n[caddy]\nadmin = "unix://run/admin.sock"\n')
    assert load_config(path, {}).caddy.admin == f"unix://{tmp_path}/run/admin.sock"


def test_caddy_admin_from_environment(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {"CADDY_ADMIN": "http://127.0.0.1:2999"})
    assert config.caddy.admin == "http://127.0.0.1:2999"


def test_non_loopback_caddy_admin_from_environment_is_rejected(tmp_path: Path) -> None:
    assert "environment CADDY_ADMIN" in refused(
        make_project(tmp_path), {"CADDY_ADMIN": "http://10.1.2.3:2019"}
    )


# -- compose files --------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["compose.blue.yml", "compose.green.yml"])
def test_missing_colour_overlay_is_rejected(tmp_path: Path, missing: str) -> None:
    files = tuple(f for f in ("compose.yml", "compose.blue.yml", "compose.green.yml") if f != missing)
    message = refused(make_project(tmp_path, compose=files))
    assert missing in message and str(tmp_path) in message


def test_missing_base_compose_file_is_rejected(tmp_path: Path) -> None:
    message = refused(make_project(tmp_path, compose=("compose.blue.yml", "compose.green.yml")))
    assert "app.compose_files" in message and "compose.yml" in message


def test_project_dir_must_exist(tmp_path: Path) -> None:
    path = make_project(
        tmp_path,
        MINIMAL.replace(
            'image = "ghcr.io/acme/shop"\n', 'image = "ghcr.io/acme/shop"\nproject_dir = "nope"\n'
        ),
    )
    assert "app.project_dir" in refused(path)


# -- secrets --------------------------------------------------------------------------------


def test_registry_password_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = load_config(
        make_project(tmp_path), {"REGISTRY_USERNAME": "bot", "REGISTRY_PASSWORD_FILE": str(secret)}
    )
    assert config.registry.username == "bot"
    assert config.registry.password == "s3cret"
    assert "s3cret" not in repr(config)


def test_registry_password_beats_the_file(tmp_path: Path) -> None:
    config = load_config(
        make_project(tmp_path),
        {
            "REGISTRY_USERNAME": "robot",
            "REGISTRY_PASSWORD": "direct",
            "REGISTRY_PASSWORD_FILE": "/nonexistent",
        },
    )
    assert config.registry.password == "direct"


def test_unreadable_password_file_names_the_variable(tmp_path: Path) -> None:
    message = refused(make_project(tmp_path), {"REGISTRY_PASSWORD_FILE": str(tmp_path / "missing")})
    assert "REGISTRY_PASSWORD_FILE" in message


def test_no_registry_credentials(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {})
    assert config.registry.username is None and config.registry.password is None


# -- redis ----------------------------------------------------------------------------------


def test_without_redis_the_queue_is_off(tmp_path: Path) -> None:
    config = load_host(make_project(tmp_path), {})
    assert config.redis.url is None and config.redis.lock_ttl == 30.0


def test_redis_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = make_project(tmp_path, MINIMAL + '[redis]\nurl = "redis://10.0.0.5:6379/2"\nlock_ttl = "10s"\n')
    config = load_host(path, {})
    assert (config.redis.url, config.redis.lock_ttl) == ("redis://10.0.0.5:6379/2", 10.0)
    secret = tmp_path / "redis-password"
    secret.write_text("pw\n")
    config = load_host(
        path,
        {
            "REDIS_URL": "rediss://cache.example:6380/0",
            "WATCHER_LOCK_TTL": "5s",
            "REDIS_PASSWORD_FILE": str(secret),
        },
    )
    assert (config.redis.url, config.redis.lock_ttl, config.redis.password) == (
        "rediss://cache.example:6380/0",
        5.0,
        "pw",
    )
    assert "pw" not in repr(config) and "cache.example" not in repr(config)


def test_bad_redis_settings_are_named_without_the_password(tmp_path: Path) -> None:
    message = refused(make_project(tmp_path, MINIMAL + '[redis]\nurl = "http://u:hunter2@host:6379"\n'))
    assert "redis.url" in message and "hunter2" not in message
    assert "WATCHER_LOCK_TTL" in refused(make_project(tmp_path), {"WATCHER_LOCK_TTL": "500ms"})
    assert "REDIS_URL" in refused(make_project(tmp_path), {"REDIS_URL": "localhost:6379"})


# -- finding the file -----------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_explicit_config_wins(in_tmp: Path) -> None:
    explicit = in_tmp / "explicit.toml"
    env_file = in_tmp / "env.toml"
    for path in (explicit, env_file, in_tmp / "watcher.toml"):
        path.write_text("")
    assert find_config(str(explicit), {"WATCHER_CONFIG": str(env_file)}) == explicit.resolve()


def test_watcher_config_beats_defaults(in_tmp: Path) -> None:
    env_file = in_tmp / "env.toml"
    env_file.write_text("")
    (in_tmp / "watcher.toml").write_text("")
    assert find_config(None, {"WATCHER_CONFIG": str(env_file)}) == env_file.resolve()


def test_defaults_in_order(in_tmp: Path) -> None:
    (in_tmp / "config").mkdir()
    (in_tmp / "config" / "watcher.toml").write_text("")
    assert find_config(None, {}) == (in_tmp / "config" / "watcher.toml").resolve()
    (in_tmp / "watcher.toml").write_text("")
    assert find_config(None, {}) == (in_tmp / "watcher.toml").resolve()


def test_explicit_missing_does_not_fall_back(in_tmp: Path) -> None:
    (in_tmp / "watcher.toml").write_text("")
    with pytest.raises(ConfigError, match="no configuration file found") as caught:
        find_config("missing.toml", {})
    assert "missing.toml" in str(caught.value)


def test_watcher_config_missing_does_not_fall_back(in_tmp: Path) -> None:
    (in_tmp / "watcher.toml").write_text("")
    with pytest.raises(ConfigError, match="no configuration file found") as caught:
        find_config(None, {"WATCHER_CONFIG": "elsewhere.toml"})
    assert "elsewhere.toml" in str(caught.value)


def test_no_configuration_file_message(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        find_config(None, {})
    message = str(caught.value)
    assert message.startswith("no configuration file found")
    for location in DEFAULT_LOCATIONS:
        assert location in message
    assert "--config" in message and "WATCHER_CONFIG" in message


def test_a_directory_is_not_a_config_file(in_tmp: Path) -> None:
    os.mkdir(in_tmp / "watcher.toml")
    with pytest.raises(ConfigError, match="no configuration file found"):
        find_config(None, {})


# -- the bake -------------------------------------------------------------------------------


def test_the_bake_is_on_by_default_and_each_check_can_be_turned_off(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {})
    assert (config.bake.duration, config.bake.max_error_rate, config.bake.max_latency_ratio) == (
        None,
        0.01,
        3.0,
    )
    assert config.caddy.access_log == tmp_path / ".watcher" / "run" / "access.log"
    off = load_config(
        make_project(tmp_path, MINIMAL + '[bake]\nmax_latency_ratio = 0\nduration = "2m"\n'), {}
    )
    assert (off.bake.duration, off.bake.max_latency_ratio, off.bake.judges) == (120.0, None, True)
    disabled = load_config(make_project(tmp_path, MINIMAL + "[bake]\nenabled = false\n"), {})
    assert not disabled.bake.judges


@pytest.mark.parametrize(
    ("toml_value", "wanted"),
    [
        (
            "max_error_rate = 5",
            "bake.max_error_rate: must be a fraction between 0 and 1 (0.01 is 1 %), got 5",
        ),
        (
            "max_latency_ratio = 0.5",
            "bake.max_latency_ratio: must be at least 1 (0 turns the latency check off)",
        ),
        ("min_requests = 0", "bake.min_requests: must be between 1 and 1000000"),
    ],
)
def test_bad_bake_thresholds_are_named(tmp_path: Path, toml_value: str, wanted: str) -> None:
    assert wanted in refused(make_project(tmp_path, MINIMAL + f"[bake]\n{toml_value}\n"))
