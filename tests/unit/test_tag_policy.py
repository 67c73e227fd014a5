"""Tag policies: which tag each kind picks from a realistic tag list, and the reason given for
every tag it does not pick; plus the `[policy]` section of the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import MINIMAL, make_project, refused
from watcher.config import PolicySettings, load_config
from watcher.policy import DigestPolicy, RegexPolicy, SemverPolicy, build_policy, older

# What a real repository accumulates: releases, pre-releases, floating aliases, CI tags,
# cosign signatures and attestations, a v-prefixed duplicate.
TAGS = [
    "latest",
    "main",
    "1",
    "1.2",
    "v1.2.3",
    "1.2.3",
    "1.2.10",
    "1.10.0",
    "1.9.9",
    "2.0.0-rc.1",
    "2.0.0-beta",
    "1.3.0-alpha.2",
    "1.3.0-rc1",
    "0.9.0",
    "sha-1a2b3c4",
    "sha256-" + "a" * 64 + ".sig",
    "sha256-" + "b" * 64 + ".att",
    "1.2.4-1",
    "1.2.5-snapshot",
    "01.2.3",
    "main-41-abc1234",
    "main-9-def5678",
    "main-100-0a1b2c3",
    "pr-77",
]


def verdicts(policy, tags=TAGS) -> dict[str, str]:
    return {v.tag: v.reason for v in policy.decide(tags).verdicts}


# -- semver ---------------------------------------------------------------------------------


def test_semver_picks_the_highest_release() -> None:
    decision = SemverPolicy().decide(TAGS)
    assert decision.candidate == "1.10.0"  # numeric, not lexical: 1.10 > 1.9 > 1.2.10
    assert "1.10.0 is the highest" in decision.reason


def test_semver_explains_every_refusal() -> None:
    why = verdicts(SemverPolicy())
    assert why["1.10.0"] == "candidate"
    assert why["1.9.9"] == "older than 1.10.0"
    assert "partial version" in why["1"] and "partial version" in why["1.2"]
    assert "pre-release" in why["2.0.0-rc.1"] and "prereleases = false" in why["2.0.0-rc.1"]
    assert "ambiguous" in why["1.2.4-1"]  # SemVer pre-release or image revision?
    assert "not alpha, beta or rc" in why["1.2.5-snapshot"]
    assert "not a semantic version" in why["latest"]
    assert "not a semantic version" in why["01.2.3"]  # leading zero: not SemVer
    assert "not a semantic version" in why["sha-1a2b3c4"]


def test_semver_range() -> None:
    policy = SemverPolicy(">=1.2,<1.10")
    assert policy.decide(TAGS).candidate == "1.9.9"
    assert verdicts(policy)["1.10.0"] == "outside the range >=1.2,<1.10"
    assert verdicts(policy)["0.9.0"] == "outside the range >=1.2,<1.10"
    assert SemverPolicy("~=1.2.0").decide(TAGS).candidate == "1.2.10"
    assert SemverPolicy("==1.2.*").decide(TAGS).candidate == "1.2.10"
    assert SemverPolicy(">=3").decide(TAGS).candidate is None


def test_semver_prereleases_only_when_allowed() -> None:
    assert SemverPolicy(prereleases=True).decide(TAGS).candidate == "2.0.0-rc.1"  # beta < rc
    assert SemverPolicy(">=1.3.0-a0,<2", prereleases=True).decide(TAGS).candidate == "1.10.0"
    # A range capped below 2 admits none of 2's pre-releases, allowed or not (PEP 440 and SemVer agree).
    assert SemverPolicy("<2", prereleases=True).decide(["1.9.0", "2.0.0-rc.1"]).candidate == "1.9.0"
    # A release beats its own pre-releases; rc beats beta beats alpha; rc.2 beats rc.1.
    tags = ["1.3.0-alpha.2", "1.3.0-beta.1", "1.3.0-rc.1", "1.3.0-rc.2"]
    assert SemverPolicy(prereleases=True).decide(tags).candidate == "1.3.0-rc.2"
    assert SemverPolicy(prereleases=True).decide([*tags, "1.3.0"]).candidate == "1.3.0"


def test_semver_leading_v_tolerated_and_ties_are_stable() -> None:
    assert SemverPolicy().decide(["v1.0.0", "v2.1.0", "v2.0.9"]).candidate == "v2.1.0"
    # The same version under two tags: the choice does not depend on the order listed.
    assert (
        SemverPolicy().decide(["1.2.3", "v1.2.3"]).candidate
        == SemverPolicy().decide(["v1.2.3", "1.2.3"]).candidate
    )


def test_exclude_applies_before_anything_else() -> None:
    policy = SemverPolicy(exclude=(r"1\.10\..*",))
    assert policy.decide(TAGS).candidate == "1.9.9"
    assert verdicts(policy)["1.10.0"] == "excluded by '1\\.10\\..*'"


def test_empty_and_duplicate_lists() -> None:
    assert SemverPolicy().decide([]).candidate is None
    decision = SemverPolicy().decide(["1.0.0", "1.0.0"])  # listed twice across pages
    assert decision.candidate == "1.0.0" and len(decision.verdicts) == 1


# -- regex ----------------------------------------------------------------------------------


def test_regex_orders_by_the_capture_naturally() -> None:
    policy = RegexPolicy(r"main-(\d+)-[0-9a-f]{7}", exclude=(r"sha-.*", r".*\.sig"))
    decision = policy.decide(TAGS)
    assert decision.candidate == "main-100-0a1b2c3"  # 100 > 41 > 9, not lexical
    why = verdicts(policy)
    assert why["main-41-abc1234"] == "older than main-100-0a1b2c3"
    assert why["sha-1a2b3c4"] == "excluded by 'sha-.*'"
    assert why["pr-77"].startswith("does not match")


def test_regex_named_group_and_no_group() -> None:
    named = RegexPolicy(r"(?P<branch>main)-(?P<order>\d+)-.*")
    assert named.decide(TAGS).candidate == "main-100-0a1b2c3"
    whole = RegexPolicy(r"\d{8}T\d{6}")  # timestamps: the whole tag orders
    assert whole.decide(["20240101T000000", "20250101T000000", "2024x"]).candidate == "20250101T000000"


def test_regex_must_match_whole_tag() -> None:
    assert RegexPolicy(r"v(\d+)").decide(["v2", "v10", "v3-broken", "xv99"]).candidate == "v10"


# -- digest ---------------------------------------------------------------------------------


def test_digest_follows_one_tag() -> None:
    policy = DigestPolicy("main")
    assert policy.mutable
    assert policy.decide(TAGS).candidate == "main"
    assert policy.refusal("main") is None and policy.refusal("latest") == "not the followed tag main"
    assert DigestPolicy("stable").decide(TAGS).candidate is None


# -- ordering against what is live ------------------------------------------------------------


def test_older() -> None:
    semver = SemverPolicy()
    assert older(semver, "1.2.3", "1.10.0")
    assert not older(semver, "1.10.0", "1.2.3")
    assert not older(semver, "1.2.3", "1.2.3")
    assert not older(semver, "1.2.3", "hotfix")  # unordered: no opinion
    assert older(semver, "1.9.0", "2.0.0")  # live outside the range still counts
    assert not older(DigestPolicy("latest"), "latest", "latest")


def test_invalid_tags_are_refused() -> None:
    assert "invalid tag" in SemverPolicy().refusal("-1.0.0")
    assert "invalid tag" in RegexPolicy(".*").refusal("a" * 200)


# -- the [policy] section -----------------------------------------------------------------------


def test_policy_defaults_and_build(tmp_path: Path) -> None:
    config = load_config(make_project(tmp_path), {})
    assert config.policy == PolicySettings()
    assert isinstance(build_policy(config.policy), SemverPolicy)


@pytest.mark.parametrize(
    "section, expected",
    [
        (
            '[policy]\nkind = "semver"\nrange = ">=1.2,<2"\nprereleases = true\nexclude = ["sha-.*"]',
            SemverPolicy,
        ),
        ('[policy]\nkind = "regex"\ninclude = "^main-(\\\\d+)$"\nexclude = [".*\\\\.sig"]', RegexPolicy),
        ('[policy]\nkind = "digest"\ntag = "main"', DigestPolicy),
    ],
)
def test_policy_kinds_load(tmp_path: Path, section: str, expected: type) -> None:
    config = load_config(make_project(tmp_path, MINIMAL + section), {})
    assert isinstance(build_policy(config.policy), expected)


@pytest.mark.parametrize(
    "section, message",
    [
        ('[policy]\nkind = "newest"', "policy.kind: expected semver, regex or digest"),
        ('[policy]\nrange = "^1.2"', "policy.range: not a version range"),
        ('[policy]\nkind = "regex"', "policy.include: is required"),
        ('[policy]\nkind = "regex"\ninclude = "("', "policy.include: not a valid regular expression"),
        ('[policy]\nkind = "regex"\ninclude = "(a)-(b)"', "name the one that orders tags"),
        ('[policy]\nexclude = ["["]', "policy.exclude: not a valid regular expression"),
        ('[policy]\nkind = "digest"\ntag = "-bad"', "policy.tag: invalid tag"),
        ('[policy]\nkind = "digest"\nrange = ">=1"', "policy.range: only applies"),
        ("[policy]\nfoo = 1", "policy.foo: unknown key"),
    ],
)
def test_bad_policy_is_refused_with_file_and_key(tmp_path: Path, section: str, message: str) -> None:
    path = make_project(tmp_path, MINIMAL + section)
    error = refused(path)
    assert str(path) in error and message in error
