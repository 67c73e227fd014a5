"""The corpus table: each stack's row is written by its journey (tests/harness/corpus.py); the
run's rows are cleared at its start and printed, with tests/artifacts/corpus.json, at its end."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.harness.corpus import ARTIFACTS, rows, table


def _controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")  # not an xdist worker


def pytest_sessionstart(session: pytest.Session) -> None:
    if _controller(session.config):
        shutil.rmtree(ARTIFACTS, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    found = rows()
    if not found or not _controller(config):
        return
    (ARTIFACTS.parent / "corpus.json").write_text(json.dumps(found, indent=1) + "\n")
    terminalreporter.section("corpus: stack x step (tests/artifacts/corpus.json)")
    terminalreporter.write_line(table(found))
