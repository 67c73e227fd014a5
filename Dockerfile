# watcher's image: `watcher run` by default (webhook receiver + registry poller + queue worker in
# one process); `watcher serve`, `watcher worker` and every CLI command work too.
#
#   docker build -t watcher .
#   docker compose --profile watcher up -d watcher      # see the watcher service in compose.yml
#
# Inside: Python 3.11 with watcher (the watcher-bluegreen distribution) and its dependencies (from
# PyPI), the docker CLI and the Compose v2 plugin (watcher drives deploys through `docker compose`,
# over the host's Docker socket, which compose.yml mounts). Pinned versions; bump them together.
#
# NOTE: the machine it was written on has no Docker Hub; there it was built only against offline
# stand-ins of the three base images (same names and layout), not the real ones.

ARG PYTHON_VERSION=3.11
ARG DOCKER_VERSION=27.5.1
ARG COMPOSE_VERSION=v2.40.3

# The docker CLI (a static binary) and the Compose plugin, from Docker's own images.
FROM docker:${DOCKER_VERSION}-cli AS docker-cli
FROM docker/compose-bin:${COMPOSE_VERSION} AS compose

# Install watcher into a virtualenv in a build stage; the final stage copies the venv only (the
# same base image, so the same interpreter path).
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watcher ./watcher
RUN python -m venv /opt/watcher \
 && /opt/watcher/bin/pip install --no-cache-dir . \
 && /opt/watcher/bin/watcher --version

FROM python:${PYTHON_VERSION}-slim-bookworm
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=compose /docker-compose /usr/local/lib/docker/cli-plugins/docker-compose
COPY --from=build /opt/watcher /opt/watcher
ENV PATH=/opt/watcher/bin:$PATH
RUN docker --version && docker compose version

# Runs as root: watcher needs the Docker socket, which is root-equivalent whatever the user, and
# writes .watcher/ in the mounted project directory, whose owner varies from host to host.
ENV PYTHONUNBUFFERED=1 \
    WEBHOOK_LISTEN=0.0.0.0:9000
EXPOSE 9000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["watcher"]
CMD ["run"]
