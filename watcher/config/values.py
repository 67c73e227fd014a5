"""The value types of the configuration file: durations, sizes, names and addresses, each parsed
with the message a user needs ("expected a duration like 300, 300s or 5m, got '5x'")."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from watcher.validation import validate_name, validate_tag

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"\s*(\d+)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
MIN_BODY, MAX_BODY = 1024, 64 * 1024**2


def parse_duration(value: Any, where: str | None = None) -> float:
    """Seconds from `300`, `300s`, `5m`, `1.5s`, `250ms`, `90d`. With `where`, a ConfigError naming it;
    without, a ValueError (the schema adds file and key)."""
    try:
        return _duration(value)
    except ValueError as exc:
        if where is None:
            raise
        from watcher.errors import ConfigError

        raise ConfigError(f"{where}: {exc}") from None


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration like 300, 300s or 5m, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range (TOML integers are unbounded): refused below
            seconds = math.inf
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected a duration like 300, 300s or 5m, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite, non-negative number, got {value!r}")
    return seconds


def _size(value: Any) -> int:
    """Bytes from 1048576, "512KiB", "1MiB"; within the webhook body limits."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size like 1048576, 512KiB or 1MiB, got {value!r}")
    match = _SIZE.fullmatch(str(value))
    if isinstance(value, int):
        size = value
    elif match and match.group(2).lower() in _SIZE_UNITS:
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    else:
        raise ValueError(f"expected a size like 1048576, 512KiB or 1MiB, got {value!r}")
    if size > MAX_BODY:
        raise ValueError(f"{value!r} is over the 64 MiB maximum")
    if size < MIN_BODY:
        raise ValueError(f"{value!r} is under the 1 KiB minimum")
    return size


def at_least(minimum: float) -> AfterValidator:
    def check(seconds: float) -> float:
        if seconds < minimum:
            raise ValueError(f"must be at least {minimum:g}s" if minimum else "must be greater than zero")
        return seconds

    return AfterValidator(check)


def between(low: int, high: int, what: str = "") -> AfterValidator:
    """An integer within [low, high], said as the docs say it."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(
                f"expected a port number, got {value!r}"
                if what == "port"
                else f"must be between {low} and {high}, got {value!r}"
            )
        return value

    return AfterValidator(check)


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        raise ValueError(f"not an environment variable name: {value!r}")
    return value


def _image(value: str) -> str:
    if not value or value != value.strip() or " " in value:
        raise ValueError(f"not an image repository: {value!r}")
    if ":" in value.rsplit("/", 1)[-1] or "@" in value:
        raise ValueError("give the repository without a tag or digest; the version selects the tag")
    return value


def _path(value: str) -> str:
    """A file or directory: any text the OS can name (a NUL byte it cannot, and pathlib raises)."""
    if "\x00" in value:
        raise ValueError(f"a path cannot contain a NUL character, got {value!r}")
    return value


def _admin(value: str) -> str:
    if value.startswith("unix://"):
        return _path(value)
    if not re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/?$", value):
        raise ValueError(
            "must be unix://PATH or http://127.0.0.1:PORT: Caddy's admin API is never "
            "reached over a public address"
        )
    return value.rstrip("/")


def _listen(value: str) -> str:
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:9000 or 0.0.0.0:9000, got {value!r}")
    return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://", value):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


def _redis_url(value: str) -> str:
    if not re.match(r"^(redis|rediss|unix)://[^\s]+$", value):
        shown = re.sub(r"//[^@/]*@", "//***@", value)  # never echo a password
        raise ValueError(f"expected redis://HOST:PORT/DB, rediss://... or unix://PATH, got {shown!r}")
    return value


def _route_path(value: str) -> str:
    """A path prefix Caddy routes to an app or service: `/api`, never a pattern."""
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        raise ValueError(
            f"expected a path prefix like /api (letters, digits, '.', '_', '~', '-'), got {value!r}"
        )
    return value


def _site(value: str) -> str:
    """A Caddy site address: `:80`, `shop.example.com`, `http://shop.localhost:8080`."""
    if not re.fullmatch(r"((https?://)?[A-Za-z0-9.*-]+)?(:\d{1,5})?", value) or not value:
        raise ValueError(f"expected a Caddy site address like :80 or shop.example.com, got {value!r}")
    return value


_HOSTNAME = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"


def _registry_host(value: str) -> str:
    """A registry as an image names it: `registry.gitlab.com`, `127.0.0.1:5000`."""
    if not re.fullmatch(rf"{_HOSTNAME}(:\d{{1,5}})?", value):
        raise ValueError(
            f"expected a registry HOST[:PORT] in lowercase, like registry.example.com, got {value!r}"
        )
    return value


def _token_host(value: str) -> str:
    """The host of a registry's token service, without scheme, port or path: `auth.example.com`."""
    if not re.fullmatch(_HOSTNAME, value):
        raise ValueError(f"expected a host name in lowercase, like auth.example.com, got {value!r}")
    return value


def _key_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]*", value):
        raise ValueError(f"expected letters, digits, '_', '.' or '-', got {value!r}")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
Size = Annotated[int, BeforeValidator(_size)]
Name = Annotated[str, AfterValidator(validate_name)]
Tag = Annotated[str, AfterValidator(validate_tag)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Image = Annotated[str, AfterValidator(_image)]
Admin = Annotated[str, AfterValidator(_admin)]
Listen = Annotated[str, AfterValidator(_listen)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
RedisUrl = Annotated[str, AfterValidator(_redis_url)]
RoutePath = Annotated[str, AfterValidator(_route_path)]
Site = Annotated[str, AfterValidator(_site)]
KeyPrefix = Annotated[str, AfterValidator(_key_prefix)]
PathText = Annotated[str, AfterValidator(_path)]
RegistryHost = Annotated[str, AfterValidator(_registry_host)]
TokenHost = Annotated[str, AfterValidator(_token_host)]
