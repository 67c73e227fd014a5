"""`watcher init --platform swarm`: the compose file as init's diff leaves it (no container_name,
no host ports on the services Caddy fronts), checked for what `docker stack deploy` would silently
break (platforms/swarm_checks.py). Refusals join init's own; warnings are printed with the report."""

from __future__ import annotations

from watcher.adoption.answers import Answers
from watcher.adoption.compose_file import ComposeFile
from watcher.adoption.proposal import dropped_keys
from watcher.platforms.swarm_checks import Finding, check


def swarm_findings(compose: ComposeFile, answers: Answers) -> list[Finding]:
    """What Swarm would do with the colour services otherwise than the file says (none for
    Compose). The swarm's node count is not known here: what depends on it is a warning."""
    if answers.platform != "swarm":
        return []
    dropped = dropped_keys(compose, answers)
    services = {
        name: {key: value for key, value in spec.items() if key not in dropped.get(name, [])}
        for name, spec in compose.services.items()
    }
    one_shots = [s.name for s in answers.stateless if s.one_shot]
    return check({**compose.data, "services": services}, answers.names, one_shots=one_shots)
