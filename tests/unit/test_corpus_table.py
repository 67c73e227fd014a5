"""The corpus table (tests/harness/corpus.py): one Markdown row per stack, in order, with its
steps, hand edits, failed/sent and leftovers; a failed step shows its reason."""

from __future__ import annotations

from dataclasses import asdict

from tests.harness.corpus import STEPS, Row, table


def test_a_row_per_stack_with_every_column() -> None:
    done = Row("umami", steps=dict.fromkeys(STEPS, "ok"), sent=950, seconds=71.5)
    failed = Row("authentik", hand_edits=["removed a host port"], sent=761, left_behind=["volume x-blue_db"])
    failed.steps.update(
        init="ok", up="ok", v1="ok", v2="ok", rollback="failed: server is missing dependency redis"
    )
    lines = table([asdict(done), asdict(failed)]).splitlines()
    assert lines[0].startswith("| stack | init | up | v1 | v2 | rollback | v2 again | cleanup | reset |")
    assert lines[2].startswith(
        "| authentik | ok | ok | ok | ok | FAIL: server is missing dependency redis | - |"
    )
    assert "| 1: removed a host port | 0/761 | volume x-blue_db |" in lines[2]
    assert lines[3] == "| umami | " + " | ".join(["ok"] * len(STEPS)) + " | 0 | 0/950 | nothing | 71.5 |"
