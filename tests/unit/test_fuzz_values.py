"""Fuzzing the allow-lists and value parsers between untrusted text and watcher's commands: tag
and name validation against their grammars written out by hand, tag policies on random tag lists,
durations and sizes. Each property is what a caller may rely on for *any* input; the strategies
here (`tag_like`, `HOSTILE`) are shared by the other fuzz modules."""

from __future__ import annotations

import math
import string
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from watcher.config.values import MAX_BODY, MIN_BODY, Size, parse_duration
from watcher.errors import ConfigError
from watcher.http import size as limit_text
from watcher.policy import DigestPolicy, RegexPolicy, SemverPolicy, TagPolicy, older
from watcher.validation import TAG_PATTERN, validate_name, validate_tag

TAG_HEAD = string.ascii_letters + string.digits + "_"
TAG_TAIL = TAG_HEAD + ".-"
NAME_HEAD = string.ascii_lowercase + string.digits
NAME_TAIL = NAME_HEAD + "_-"
# What a shell, an argv parser, a URL or a log line gives meaning to, and look-alikes of allowed
# characters (Arabic-Indic and fullwidth digits, the long s and the Kelvin sign that case-fold to
# ASCII letters).
HOSTILE = " \t\n\r\x00\x1b;|&$`'\"\\/:@#?*=+~!<>(){}[]%é٣１ſK"
UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "ms": 0.001}
# TOML integers have no bound in tomllib, so a config value can be any int.
HUGE_INTS = st.integers(min_value=-(2**1100), max_value=2**1100)


def tag_like() -> st.SearchStrategy[str]:
    """Valid tags, near misses of the grammar (a hostile character, a trailing newline, one
    character too long), and any text."""
    valid = st.from_regex(TAG_PATTERN, fullmatch=True)
    return st.one_of(
        valid,
        st.text(st.sampled_from(TAG_TAIL + HOSTILE), max_size=130),
        valid.map(lambda tag: tag + "\n"),
        st.text(TAG_TAIL, min_size=126, max_size=130),
        st.text(),
    )


def in_tag_grammar(text: str) -> bool:
    """`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` spelled out, so the regex is checked, not restated."""
    return 1 <= len(text) <= 128 and text[0] in TAG_HEAD and all(char in TAG_TAIL for char in text)


def in_name_grammar(text: str) -> bool:
    return len(text) >= 1 and text[0] in NAME_HEAD and all(char in NAME_TAIL for char in text)


# -- tags and names --------------------------------------------------------------------------------


@given(st.one_of(tag_like(), st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=3)))
def test_a_tag_is_refused_or_in_the_oci_grammar(value: Any) -> None:
    """Whatever is accepted can be neither an option (`-x`) nor a path or a second argument."""
    try:
        accepted = validate_tag(value)
    except ValueError:
        assert not (isinstance(value, str) and in_tag_grammar(value))
        return
    assert accepted == value and in_tag_grammar(value)
    assert not value.startswith(("-", "."))


@given(
    st.one_of(
        st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
        st.text(st.sampled_from(NAME_TAIL + string.ascii_uppercase + HOSTILE + "."), max_size=20),
        st.text(),
    )
)
def test_a_name_is_refused_or_in_the_compose_grammar(value: str) -> None:
    try:
        accepted = validate_name(value, "service name")
    except ValueError as exc:
        assert not in_name_grammar(value)
        assert str(exc).startswith("invalid service name ")
        return
    assert accepted == value and in_name_grammar(value) and not value.startswith("-")


# -- tag policies ------------------------------------------------------------------------------------

POLICIES: list[TagPolicy] = [
    SemverPolicy(),
    SemverPolicy(prereleases=True),
    SemverPolicy(">=1.2,<2"),
    SemverPolicy("~=1.2", prereleases=True, exclude=(r"1\.2\..*",)),
    SemverPolicy("==1.*,!=1.3.0"),
    RegexPolicy(r"main-(\d+)-[0-9a-f]+"),
    RegexPolicy(r"(?P<order>\d+)?.*"),
    RegexPolicy(r".*", (r"sha-.*",)),
    DigestPolicy("latest"),
]


def semver_like() -> st.SearchStrategy[str]:
    """Tags built from semver's parts, so that most reach the version parsing and the range."""
    number = st.one_of(st.integers(0, 20), st.integers(0, 10**30)).map(str) | st.sampled_from(
        ["01", "00", ""]
    )
    pre = st.sampled_from(
        ["", "-alpha", "-beta.2", "-rc.1", "-RC1", "-rc.01", "-1", "-snapshot", "-rc..1", "-"]
    )
    return st.builds(
        lambda v, parts, suffix: v + ".".join(parts) + suffix,
        st.sampled_from(["", "v", "V"]),
        st.lists(number, min_size=1, max_size=4),
        pre,
    )


def policy_tags() -> st.SearchStrategy[list[str]]:
    return st.lists(
        st.one_of(semver_like(), tag_like(), st.sampled_from(["latest", "main-9-abc", "sha-1"])), max_size=15
    )


@given(st.sampled_from(POLICIES), policy_tags())
def test_a_policy_picks_the_highest_valid_tag_it_was_given(policy: TagPolicy, tags: list[str]) -> None:
    """Never a tag of its own making, never one that fails validation, never a refused one."""
    decision = policy.decide(tags)
    accepted = [tag for tag in tags if policy.refusal(tag) is None]
    assert {verdict.tag for verdict in decision.verdicts} == set(tags)
    assert (decision.candidate is None) == (not accepted)
    if decision.candidate is not None:
        assert decision.candidate in accepted
        assert validate_tag(decision.candidate) == decision.candidate
        assert not any(older(policy, decision.candidate, tag) for tag in accepted)


@given(st.sampled_from(POLICIES), st.one_of(semver_like(), tag_like()), st.one_of(semver_like(), tag_like()))
@example(RegexPolicy(r".*"), "²", "1")  # superscript two: str.isdigit, but no \d and no int(): ValueError
def test_older_is_a_strict_order_on_any_two_tags(policy: TagPolicy, tag: str, than: str) -> None:
    """`than` is a live version read back from state: whatever it is, comparing raises nothing."""
    assert not (older(policy, tag, than) and older(policy, than, tag))
    assert not older(policy, tag, tag)


# -- durations -------------------------------------------------------------------------------------

DURATION_TEXT = st.text(st.sampled_from("0123456789.smh \t\n-+eE_,x٣"), max_size=12)


@given(
    st.one_of(
        DURATION_TEXT,
        st.text(),
        HUGE_INTS,
        st.floats(),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
@example(2**1024 - 2**970)  # the smallest int float() cannot hold: OverflowError
def test_a_duration_is_seconds_or_an_error_naming_the_key(value: Any) -> None:
    """A ValueError for the schema to place, or with `where` a ConfigError naming it; a result
    is never negative, infinite or NaN."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        try:
            parse_duration(value, "health.timeout")
        except ConfigError as exc:
            assert str(exc).startswith("health.timeout: ")
            return
        raise AssertionError("with `where`, the same value was accepted") from None
    assert isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0


@given(st.integers(0, 10**9), st.sampled_from(sorted(UNITS)), st.sampled_from(["", " ", "\t"]))
def test_a_whole_number_of_units_reads_back_as_that_many_seconds(count: int, unit: str, space: str) -> None:
    assert math.isclose(parse_duration(f"{space}{count}{space}{unit}{space}"), count * UNITS[unit])
    assert parse_duration(count) == count


# -- sizes -----------------------------------------------------------------------------------------

SIZES = TypeAdapter(Size)
SIZE_TEXT = st.text(st.sampled_from("0123456789 KkMmGgIiBb-.x٣"), max_size=12)


@given(st.one_of(SIZE_TEXT, st.text(), HUGE_INTS, st.booleans(), st.floats(), st.none()))
def test_a_size_is_within_the_body_limits_or_refused(value: Any) -> None:
    try:
        size = SIZES.validate_python(value)
    except ValidationError:
        return
    assert isinstance(size, int) and MIN_BODY <= size <= MAX_BODY


@given(st.integers(MIN_BODY, MAX_BODY))
def test_the_limit_a_413_names_reads_back_as_the_configured_size(size: int) -> None:
    """The 413 says the limit "as it was likely configured" (`512 KiB`): so it must parse back."""
    configured = limit_text(size).split(" (")[0].removesuffix(" bytes")
    assert SIZES.validate_python(configured) == size
