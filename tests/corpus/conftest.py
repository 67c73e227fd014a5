"""The corpus table: each stack's row is written by its journey (tests/harness/corpus.py); the
rows written during this run are printed at its end and saved as tests/artifacts/corpus.json.
(`make test` runs a second session for the serial tests: it writes no row, so prints nothing.)"""

from __future__ import annotations

import json
import time

import pytest

from tests.harness.corpus import ARTIFACTS, rows, table

STARTED = time.time()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prints
        return
    found = rows(since=STARTED)
    if not found:
        return
    (ARTIFACTS.parent / "corpus.json").write_text(json.dumps(found, indent=1) + "\n")
    terminalreporter.section("corpus: stack x step (tests/artifacts/corpus.json)")
    terminalreporter.write_line(table(found))
