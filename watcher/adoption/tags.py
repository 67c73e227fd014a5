"""The tag policy init proposes from the registry's own tags: semver needs none (the default);
a prefixed version (`postgresql-v2.13.0`), a date stamp (`2026.12.07-abc123`) or a build number
become a regex whose `order` group holds the numbers; tags that carry no order (`main-<sha>`)
mean following the digest of the moving tag, when there is one. The proposal is checked on the
same tags with the policy watcher will run, so init never writes one that picks wrong."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

from watcher.policy import RegexPolicy, SemverPolicy

#: A commit hash in a tag: hex with at least one letter (all digits is a number).
_SHA = re.compile(r"(?=[0-9a-f]*[a-f])[0-9a-f]{6,40}")
_SHA_PATTERN = "[0-9a-f]{6,40}"
#: Tags that name a branch or a channel, not a build: what a digest policy may follow.
MOVING = ("latest", "main", "master", "stable", "edge", "nightly", "develop")


@dataclass(frozen=True)
class TagProposal:
    """What init found in the registry: a `[policy]` table to write (None: none needed or none
    found) and the sentence that says why."""

    table: dict[str, str] | None
    said: str


def propose(image: str, current: str | None) -> TagProposal:
    """The policy for `image`'s tags, `current` being the tag the compose file runs today."""
    tags = registry_tags(image)
    if isinstance(tags, str):
        return TagProposal(None, f"could not list the tags of {image} ({tags}): no tag policy proposed")
    return from_tags(tags, current)


def from_tags(tags: list[str], current: str | None) -> TagProposal:
    sample = _sample(tags, current)
    if sample is None:
        return TagProposal(None, "the registry lists no tags yet: no tag policy proposed")
    if SemverPolicy().refusal(sample) is None:
        picked = SemverPolicy().decide(tags).candidate
        return TagProposal(
            None, f"its tags are semantic versions: the default policy (semver) picks {picked}"
        )
    include = scheme(sample)
    if include is not None:
        decision = RegexPolicy(include).decide(tags)
        matched = sum(1 for verdict in decision.verdicts if verdict.accepted)
        return TagProposal(
            {"kind": "regex", "include": include},
            f"its tags look like {sample}: regex policy '{include}' orders {matched} of {len(tags)} "
            f"tags by their numbers and picks {decision.candidate}",
        )
    # What moves with each build: the tag the file runs, else the branch the tags are built from
    # (`main` for main-<sha>), else a channel.
    branch = re.split(r"[-_.+]", sample)[0]
    moving = next((tag for tag in (current, branch, *MOVING) if tag in tags and _moves(tag)), None)
    if moving is not None:
        return TagProposal(
            {"kind": "digest", "tag": moving},
            f"its tags look like {sample}, which carries no order: follow the digest of {moving}, "
            "which moves with each build",
        )
    return TagProposal(
        None,
        f"its tags look like {sample}, which carries no order and there is no moving tag to follow: "
        "no tag policy proposed (tag builds with a number or a date, or push a moving tag)",
    )


def _sample(tags: list[str], current: str | None) -> str | None:
    """The tag whose scheme the policy follows: the one the file runs, or, when that one moves
    (`latest`, `postgresql-latest`), the commonest scheme of the numbered tags of its family;
    without a tag in the file, the commonest scheme of all."""
    numbered = [tag for tag in tags if _numbered(tag)]
    if current in tags and _numbered(current):
        return current
    if current in tags:
        family = current.rpartition("-")[0] if "-" in current else ""
        kin = [tag for tag in numbered if tag.startswith(family)]
        return _commonest(kin) if kin else current
    return _commonest(numbered or tags) if tags else None


def _numbered(tag: str | None) -> bool:
    return tag is not None and any(kind == "num" for kind, _ in _parts(tag))


def _moves(tag: str | None) -> bool:
    """A tag with neither a number nor a commit hash names a branch or a channel: it moves."""
    return tag is not None and all(kind == "text" for kind, _ in _parts(tag))


def scheme(tag: str) -> str | None:
    """A regex for the tags shaped like `tag`, its numbers (up to a commit hash) in the `order`
    group; None when it has no number to order by."""
    parts = _parts(tag)
    numbers = [i for i, (kind, _) in enumerate(parts) if kind == "num"]
    hashes = [i for i, (kind, _) in enumerate(parts) if kind == "sha"]
    ordered = [i for i in numbers if not hashes or i < hashes[0]]
    if not ordered:
        return None
    pattern = {"sha": _SHA_PATTERN, "num": r"\d+"}
    out = [pattern.get(kind) or re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text) for kind, text in parts]
    first, last = ordered[0], ordered[-1]
    return (
        "".join(out[:first]) + "(?P<order>" + "".join(out[first : last + 1]) + ")" + "".join(out[last + 1 :])
    )


def _parts(tag: str) -> list[tuple[str, str]]:
    """`tag` cut into commit hashes, numbers and the text between, each with its kind."""
    parts: list[tuple[str, str]] = []
    for segment in re.split(r"([-_.+])", tag):
        if _SHA.fullmatch(segment):
            parts.append(("sha", segment))
            continue
        parts += [("num" if run.isdigit() else "text", run) for run in re.findall(r"\d+|\D+", segment)]
    return parts


def _commonest(tags: list[str]) -> str:
    """A tag of the most common shape (digits and hashes blurred), the newest-looking of them."""
    shape = Counter(_shape(tag) for tag in tags).most_common(1)[0][0]
    return max(tag for tag in tags if _shape(tag) == shape)


def _shape(tag: str) -> str:
    return "".join({"sha": "h", "num": "9"}.get(kind, text) for kind, text in _parts(tag))


def registry_tags(image: str) -> list[str] | str:
    """The repository's tags, or why they could not be listed (one quick try: init waits on it)."""
    from watcher.backends.registry import ImageRef, RegistryClient, RegistryError

    username, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
    credentials = {"username": username, "password": password} if username and password else {}
    try:
        with RegistryClient(timeout=5.0, max_retries=0, **credentials) as client:
            return client.list_tags(ImageRef.parse(image))
    except RegistryError as exc:
        return str(exc) or type(exc).__name__
