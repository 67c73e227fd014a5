"""The deploy's hooks, each an argv with no shell: the pre-deploy hook runs before the new colour
starts (expand-phase migrations); the smoke hook (smoke.py) runs against the previewed new colour.

The pre-deploy hook runs while the old version still serves, so it must only make changes the old version
tolerates (expand); the contract step belongs to a later deploy. A failure aborts the deploy
before anything is started or switched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from watcher.errors import DeployFailed


def run_hook(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float, what: str = "pre-deploy hook"
) -> str:
    """Run the hook; return its output, or raise DeployFailed with the tail of it."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env),  # the whole of it: config/child_env.py keeps watcher's secrets out
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise DeployFailed(f"{what} {argv[0]!r} not found") from exc
    except OSError as exc:  # not executable, a directory, ...
        raise DeployFailed(f"{what} {argv[0]!r} cannot run: {exc.strerror or exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeployFailed(f"{what} timed out after {timeout:.0f}s") from exc
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = " | ".join(output.splitlines()[-5:])
        raise DeployFailed(f"{what} exited {proc.returncode}: {tail}")
    return output
