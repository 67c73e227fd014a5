#!/usr/bin/env bash
# Start/stop/inspect the services the real-service tests need:
#   dockerd (only if `docker info` fails), Redis on 127.0.0.1:6379,
#   an OCI registry on 127.0.0.1:5000 (config/test-registry.yml).
# A service that already answers is left alone; `stop` stops only what this
# script started (pid files in /var/tmp/watcher-services).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status" >&2; exit 2; }
[[ $# -eq 1 ]] || usage

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=/var/tmp/watcher-services
REGISTRY_CONFIG=$ROOT/config/test-registry.yml
REGISTRY_URL=http://127.0.0.1:5000/v2/
REDIS_PORT=6379

log() { echo "services: $*"; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

docker_ok() { docker info >/dev/null 2>&1; }
redis_ok() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
registry_ok() { curl -fsS -o /dev/null --max-time 2 "$REGISTRY_URL" 2>/dev/null; }

# wait_for SECONDS CHECK NAME PID: poll CHECK every 0.5 s; fail early if PID died.
wait_for() {
  local deadline=$((SECONDS + $1)) check=$2 name=$3 pid=${4:-}
  until $check; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited during start-up (see $STATE/$name.log)"
    fi
    (( SECONDS < deadline )) || die "$name did not answer within $1 s (see $STATE/$name.log)"
    sleep 0.5
  done
}

# Pid from NAME.pid if that process is still alive and is COMM.
tracked_pid() {
  local file=$STATE/$1.pid pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$2"* ]] || return 1
  echo "$pid"
}

start_dockerd() {
  if docker_ok; then return; fi
  command -v dockerd >/dev/null || die "docker is unreachable and dockerd is not installed (run scripts/install.sh)"
  [[ $EUID -eq 0 ]] || die "docker is unreachable; start it (dockerd needs root) or fix DOCKER_HOST/permissions"
  log "starting dockerd (log: $STATE/dockerd.log)"
  setsid dockerd >>"$STATE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/dockerd.pid"
  wait_for 60 docker_ok dockerd $!
  log "dockerd is up"
}

start_redis() {
  if redis_ok; then return; fi
  command -v redis-server >/dev/null || die "redis-server is not installed (run scripts/install.sh)"
  mkdir -p "$STATE/redis"
  log "starting redis-server on 127.0.0.1:$REDIS_PORT (dir $STATE/redis)"
  rm -f "$STATE/redis.pid"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" \
    --appendonly yes --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" \
    >/dev/null || die "redis-server failed to start (see $STATE/redis.log)"
  wait_for 20 redis_ok redis
  log "redis is up"
}

start_registry() {
  if registry_ok; then return; fi
  command -v docker-registry >/dev/null || die "docker-registry is not installed (run scripts/install.sh)"
  mkdir -p "$STATE/registry"
  log "starting docker-registry on 127.0.0.1:5000 (config $REGISTRY_CONFIG)"
  setsid docker-registry serve "$REGISTRY_CONFIG" >>"$STATE/registry.log" 2>&1 </dev/null &
  echo $! >"$STATE/registry.pid"
  wait_for 30 registry_ok registry $!
  log "registry is up"
}

stop_one() { # NAME COMM
  local pid i
  if pid=$(tracked_pid "$1" "$2"); then
    log "stopping $1 (pid $pid)"
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "$1 still running, sending SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$STATE/$1.pid"
}

status_one() { # NAME CHECK COMM
  local how="not started by services.sh" pid
  pid=$(tracked_pid "$1" "$3") && how="started by services.sh, pid $pid"
  if $2; then echo "$1: up ($how)"; else echo "$1: DOWN"; return 1; fi
}

mkdir -p "$STATE"
case $1 in
  start)
    start_dockerd
    start_redis
    start_registry
    ;;
  stop)
    stop_one registry docker-registry
    stop_one redis redis-server
    stop_one dockerd dockerd
    ;;
  status)
    rc=0
    status_one dockerd docker_ok dockerd || rc=1
    status_one redis redis_ok redis-server || rc=1
    status_one registry registry_ok docker-registry || rc=1
    exit $rc
    ;;
  *) usage ;;
esac
