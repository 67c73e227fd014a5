"""Hypothesis profiles for the fuzz tests (tests/unit/test_fuzz_*.py).

Under CI=true the examples are fixed (derandomized, no example database), so a red build is
reproducible and never flaky; locally they are random, and a failure found once is kept in
.hypothesis/ and tried first on the next run. No deadline anywhere: the 2-core host is shared
with Docker tests, and a slow example is not a bug. `EXAMPLES` keeps every fuzz test together
within a minute on that host; HYPOTHESIS_PROFILE=deep runs twenty times as many, to hunt.
"""

from __future__ import annotations

import os

from hypothesis import settings

EXAMPLES = 100

settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=EXAMPLES)
settings.register_profile("dev", deadline=None, max_examples=EXAMPLES)
settings.register_profile("deep", deadline=None, max_examples=20 * EXAMPLES)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)
