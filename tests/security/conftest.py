"""The attacks of docs/security.md replayed (issue 21). The Hypothesis profiles are the unit
tests' (fixed examples under CI=true, no deadline): imported, so that the property tests here run
under the same settings whichever directory pytest is given."""

from __future__ import annotations

from tests.unit.conftest import EXAMPLES  # noqa: F401  (registers and loads the profile)
