"""Validators for untrusted names before they reach URLs, file paths or docker/compose command lines.

Tags arrive from webhooks and registries; project and service names from configuration. Both are
interpolated into registry URLs and compose invocations, so they are checked against strict
allow-lists here, in one place the engine and the registry client share.
"""

from __future__ import annotations

import re

# OCI distribution-spec tag grammar.
TAG_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
# Compose project names; service names are held to the same rule so they are safe everywhere.
NAME_PATTERN = r"[a-z0-9][a-z0-9_-]*"

_TAG = re.compile(TAG_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_SHOWN = 80


def _shown(value: object) -> str:
    """Quote a rejected value for an error message: repr escapes control characters, and the
    cut keeps a hostile payload from flooding logs."""
    if isinstance(value, str) and len(value) > _SHOWN:
        return f"{value[:_SHOWN]!r}..."
    return repr(value)


def validate_tag(tag: str) -> str:
    """Return `tag` unchanged if it is a valid image tag, else raise ValueError.

    fullmatch, not match with `$`: `$` also matches before a trailing newline. Non-strings (a null
    tag in a JSON payload) are rejected with ValueError too, so callers handle one exception type.
    """
    if not isinstance(tag, str) or _TAG.fullmatch(tag) is None:
        raise ValueError(
            f"invalid tag {_shown(tag)}: a tag is 1-128 characters of letters, digits, '_', '.'"
            " and '-', and must not start with '.' or '-'"
        )
    return tag


def validate_name(name: str, kind: str = "name") -> str:
    """Return `name` unchanged if it is a valid compose project/service name, else raise ValueError.

    `kind` ("project name", "service name") makes the message say which setting is wrong.
    """
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"invalid {kind} {_shown(name)}: use lowercase letters, digits, '_' and '-',"
            " starting with a letter or digit"
        )
    return name
