"""Tag and compose-name validators: the allow-lists between untrusted input and URLs/commands."""

from __future__ import annotations

import pytest

from watcher.validation import validate_name, validate_tag


@pytest.mark.parametrize("tag", ["1.0.0", "latest", "v1.2.3-rc.1", "_x", "sha-abc123", "A" * 128, "1__2"])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "A" * 129, "1.0;rm", "1.0\n", "a b", "a/b", "é", None])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(ValueError, match="invalid tag"):
        validate_tag(tag)


def test_tag_message_quotes_and_cuts_the_value() -> None:
    with pytest.raises(ValueError, match=r"^invalid tag '1\.0;rm': "):
        validate_tag("1.0;rm")
    with pytest.raises(ValueError) as caught:
        validate_tag("x;" * 5000)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("name", ["app", "my-app_2", "0day"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "App", "-app", "_app", "a.b", "a b", "a\n", "../x"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid project name"):
        validate_name(name, "project name")
