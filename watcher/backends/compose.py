"""`docker compose` run as a subprocess: argv lists only, never a shell.

Compose, not the Docker API, starts and stops services so that users' compose files mean
exactly what they mean to `docker compose` (overlays, profiles, healthchecks, init).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from watcher.errors import DockerUnavailable, WatcherError


class ComposeError(WatcherError):
    """A compose command failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class ComposeProject:
    """One compose project: a name, a directory and the files that define it."""

    name: str
    directory: Path
    files: tuple[str, ...]
    profiles: tuple[str, ...] = ()

    def run(self, args: Sequence[str], env: Mapping[str, str], *, timeout: float = 600.0) -> str:
        argv = ["docker", "compose", "-p", self.name, "--project-directory", str(self.directory)]
        for name in self.files:
            argv += ["-f", str(self.directory / name)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        argv += list(args)
        try:
            proc = subprocess.run(
                argv,
                cwd=self.directory,
                env=dict(env),  # the whole of it: config/child_env.py keeps watcher's secrets out
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise DockerUnavailable("the docker CLI is not installed (need docker with Compose v2)") from exc
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"docker compose {' '.join(args)} timed out after {timeout:.0f}s") from exc
        if proc.returncode != 0:
            output = (proc.stderr or proc.stdout).strip().splitlines()
            tail = " | ".join(line.strip() for line in output[-6:])
            raise ComposeError(f"docker compose -p {self.name} {' '.join(args)} failed: {tail}")
        return proc.stdout
