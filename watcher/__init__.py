"""watcher: blue-green deploys of Docker Compose apps behind Caddy.

The distribution's name on a package index is not the import package's: `watcher` on PyPI is an
unrelated file watcher. The command and the import package stay `watcher`.
"""

DISTRIBUTION = "watcher-bluegreen"
