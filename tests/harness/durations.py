"""The slowest tests of a `make test` run, read from the JUnit XML of each of its pytest runs (the
tests run side by side, then the serial ones alone), so one list covers the whole run.

A test's time is its setup, call and teardown together; a module-scoped fixture counts towards
the first test of its module.

    python -m tests.harness.durations [--top N] RESULTS.xml...
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET


def read(path: str) -> list[tuple[float, str]]:
    """(seconds, test id) of every test case in one JUnit XML file."""
    cases = []
    for case in ET.parse(path).iter("testcase"):
        cases.append((float(case.get("time") or 0), f"{case.get('classname')}::{case.get('name')}"))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.durations", description=__doc__)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("results", nargs="+")
    args = parser.parse_args(argv)
    cases = sorted((case for path in args.results for case in read(path)), reverse=True)
    print(f"\n{'=' * 20} slowest {min(args.top, len(cases))} of {len(cases)} tests {'=' * 20}")
    for seconds, name in cases[: args.top]:
        print(f"{seconds:8.2f}s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
