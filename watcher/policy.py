"""Tag policies: which of a repository's tags an app should run, and why the others are not it.

- `semver`: the highest MAJOR.MINOR.PATCH tag (a leading `v` tolerated), within an optional range
  such as `>=1.2,<2`; pre-releases (`-alpha`, `-beta`, `-rc`, with an optional number) only when
  allowed.
- `regex`: tags that fully match `include`, ordered by its capture group (the named group `order`,
  else the only group, else the whole tag), compared in natural order (`build-10` after `build-9`).
- `digest`: one tag (`latest`, `main`); what changes is its digest, which the caller compares.

`exclude` patterns (full match) remove tags under every kind, e.g. `sha-.*` or `.*\\.sig`.

Why `packaging` for versions and ranges: PyPA's version and specifier code is maintained, heavily
used and tested (pip resolves with it), and range parsing is where a home-grown implementation
grows bugs. It implements PEP 440, not SemVer, and the two disagree in places; so a tag is first
held to SemVer's own grammar here, and only tags whose meaning is the same under both are handed
to it: `1.2.3`, `v1.2.3`, and pre-releases named alpha, beta or rc (`1.2.3-rc.1` is PEP 440's
`1.2.3rc1`, ordered the same way). A numeric pre-release like `1.2.3-1` (a pre-release to SemVer,
a post-release to PEP 440) or an unknown label (`-snapshot`) is refused with that reason rather
than ordered wrongly; a regex policy handles such schemes. Partial versions (`1`, `1.2`) are
refused too: on registries they are floating aliases of the newest patch, not releases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from watcher.config import PolicySettings
from watcher.validation import validate_tag

_SEMVER = re.compile(
    r"(?P<v>[vV]?)(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_PARTIAL = re.compile(r"[vV]?\d+(?:\.\d+)?")
_PRE = re.compile(r"(?P<label>alpha|beta|rc)\.?(?P<number>0|[1-9]\d*)?", re.IGNORECASE)
_PEP440_LABEL = {"alpha": "a", "beta": "b", "rc": "rc"}


@dataclass(frozen=True)
class Verdict:
    """One tag and what the policy made of it."""

    tag: str
    accepted: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """The tag the policy would deploy (None: none qualifies), why, and the verdict on every tag."""

    candidate: str | None
    reason: str
    verdicts: list[Verdict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "reason": self.reason,
            "tags": [{"tag": v.tag, "accepted": v.accepted, "reason": v.reason} for v in self.verdicts],
        }


class TagPolicy(Protocol):
    kind: str
    #: True when the followed tag moves (digest policy): compare digests, not tags.
    mutable: bool

    def describe(self) -> str: ...

    def refusal(self, tag: str) -> str | None:
        """Why `tag` is not deployable under this policy; None when it is."""

    def order(self, tag: str) -> Any | None:
        """Sort key of `tag` regardless of range, pre-release or exclude rules (None: unordered),
        to tell whether a tag is older than what is live."""

    def decide(self, tags: list[str]) -> Decision: ...


def _invalid(tag: str) -> str | None:
    try:
        validate_tag(tag)
    except ValueError as exc:
        return str(exc)
    return None


class _Ordered:
    """Shared by semver and regex: filter, order, pick the highest."""

    kind = ""
    mutable = False
    unit = "tags"

    def __init__(self, exclude: tuple[str, ...]) -> None:
        self.exclude = [(pattern, re.compile(pattern)) for pattern in exclude]

    def describe(self) -> str:
        raise NotImplementedError

    def order(self, tag: str) -> Any | None:
        raise NotImplementedError

    def _refusal(self, tag: str) -> str | None:
        raise NotImplementedError

    def refusal(self, tag: str) -> str | None:
        invalid = _invalid(tag)
        if invalid:
            return invalid
        for pattern, compiled in self.exclude:
            if compiled.fullmatch(tag):
                return f"excluded by '{pattern}'"
        return self._refusal(tag)

    def decide(self, tags: list[str]) -> Decision:
        accepted: list[str] = []
        refused: dict[str, str] = {}
        for tag in dict.fromkeys(tags):  # a registry may list a tag twice across pages
            why = self.refusal(tag)
            if why is None:
                accepted.append(tag)
            else:
                refused[tag] = why
        # Ties (v1.2.3 and 1.2.3) go to the greater tag string, so the choice never flips.
        ranked = sorted(accepted, key=lambda t: (self.order(t), t), reverse=True)
        verdicts = [
            Verdict(t, True, "candidate" if i == 0 else f"older than {ranked[0]}")
            for i, t in enumerate(ranked)
        ]
        verdicts += [Verdict(t, False, why) for t, why in refused.items()]
        if not ranked:
            return Decision(None, f"none of {len(refused)} tags qualifies under {self.describe()}", verdicts)
        skipped = f"; {len(refused)} other tags do not qualify" if refused else ""
        return Decision(
            ranked[0],
            f"{ranked[0]} is the highest of {len(ranked)} {self.unit} under {self.describe()}{skipped}",
            verdicts,
        )


@dataclass(frozen=True)
class _Semver:
    version: Version
    prerelease: bool


class SemverPolicy(_Ordered):
    kind = "semver"
    unit = "semver tags"

    def __init__(
        self, version_range: str | None = None, prereleases: bool = False, exclude: tuple[str, ...] = ()
    ) -> None:
        super().__init__(exclude)
        self.range = version_range
        self.specifiers = SpecifierSet(version_range or "")
        self.prereleases = prereleases

    def describe(self) -> str:
        parts = ["semver"]
        if self.range:
            parts.append(f"range {self.range}")
        parts.append("pre-releases allowed" if self.prereleases else "releases only")
        return ", ".join(parts)

    @staticmethod
    def parse(tag: str) -> _Semver | str:
        """The version a tag names, or why it names none we can order."""
        match = _SEMVER.fullmatch(tag)
        if match is None:
            if _PARTIAL.fullmatch(tag):
                return "a partial version (a floating alias like 1 or 1.2), not a release"
            return "not a semantic version (MAJOR.MINOR.PATCH, optional leading v and -pre-release)"
        release = f"{match['major']}.{match['minor']}.{match['patch']}"
        pre = match["pre"]
        if pre is None:
            return _Semver(Version(release), False)
        label = _PRE.fullmatch(pre)
        if label is None:
            if pre.isdigit():
                return (
                    f"pre-release -{pre} is ambiguous (a pre-release to SemVer, a build revision to "
                    "many image tags); use a regex policy to order such tags"
                )
            return (
                f"pre-release -{pre} is not alpha, beta or rc (with an optional number): it cannot be ordered"
            )
        pep440 = f"{release}{_PEP440_LABEL[label['label'].lower()]}{label['number'] or 0}"
        return _Semver(Version(pep440), True)

    def order(self, tag: str) -> Any | None:
        parsed = self.parse(tag)
        return parsed.version if isinstance(parsed, _Semver) else None

    def _refusal(self, tag: str) -> str | None:
        parsed = self.parse(tag)
        if isinstance(parsed, str):
            return parsed
        if parsed.prerelease and not self.prereleases:
            return "a pre-release (policy.prereleases = false)"
        if self.range and not self.specifiers.contains(parsed.version, prereleases=self.prereleases):
            return f"outside the range {self.range}"
        return None


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: digit runs compare as numbers (9 < 10), the rest as text."""
    return tuple((0, int(part)) if part.isdecimal() else (1, part) for part in re.findall(r"\d+|\D+", text))


class RegexPolicy(_Ordered):
    kind = "regex"

    def __init__(self, include: str, exclude: tuple[str, ...] = ()) -> None:
        super().__init__(exclude)
        self.pattern = include
        self.include = re.compile(include)
        if "order" in self.include.groupindex:
            self.group: int | str = "order"
        else:
            self.group = 1 if self.include.groups == 1 else 0

    def describe(self) -> str:
        return f"regex '{self.pattern}'"

    def _key(self, tag: str) -> str | None:
        match = self.include.fullmatch(tag)
        return match.group(self.group) if match else None

    def order(self, tag: str) -> Any | None:
        key = self._key(tag)
        return _natural(key) if key is not None else None

    def _refusal(self, tag: str) -> str | None:
        match = self.include.fullmatch(tag)
        if match is None:
            return f"does not match '{self.pattern}'"
        if match.group(self.group) is None:
            return f"the ordering group of '{self.pattern}' captured nothing"
        return None


class DigestPolicy:
    """Follow one tag; the caller compares its digest with the live one."""

    kind = "digest"
    mutable = True

    def __init__(self, tag: str) -> None:
        self.tag = validate_tag(tag)

    def describe(self) -> str:
        return f"digest of tag {self.tag}"

    def refusal(self, tag: str) -> str | None:
        return None if tag == self.tag else f"not the followed tag {self.tag}"

    def order(self, tag: str) -> Any | None:
        return None

    def decide(self, tags: list[str]) -> Decision:
        verdicts = [
            Verdict(t, t == self.tag, "the followed tag" if t == self.tag else f"not {self.tag}")
            for t in dict.fromkeys(tags)
        ]
        if self.tag in tags:
            return Decision(
                self.tag, f"{self.tag} is the followed tag; it deploys when its digest changes", verdicts
            )
        return Decision(None, f"the followed tag {self.tag} does not exist", verdicts)


def build_policy(settings: PolicySettings) -> TagPolicy:
    """The policy `[policy]` describes (already validated by the config reader)."""
    if settings.kind == "digest":
        return DigestPolicy(settings.tag)
    if settings.kind == "regex":
        assert settings.include is not None
        return RegexPolicy(settings.include, settings.exclude)
    return SemverPolicy(settings.range, settings.prereleases, settings.exclude)


def older(policy: TagPolicy, tag: str, than: str) -> bool:
    """Whether `tag` orders strictly below `than` under the policy (False when either is unordered)."""
    mine, theirs = policy.order(tag), policy.order(than)
    if mine is None or theirs is None:
        return False
    return bool(mine < theirs)
