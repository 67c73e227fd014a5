"""Docker Swarm as a platform: a colour is a stack (`<project>-blue`, `-green`); see docs/platforms.md.
Being built (issue 22)."""

from __future__ import annotations

from watcher.config import AppConfig
from watcher.errors import ConfigError


class SwarmPlatform:
    """The app's colours as swarm stacks, on the swarm whose manager watcher runs on."""

    def __init__(self, config: AppConfig) -> None:
        raise ConfigError(f'{config.name}: platform = "swarm" is not built yet (issue 22)')
