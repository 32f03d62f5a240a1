#!/usr/bin/env bash
# A Docker engine that answers; `make docker-engine` runs it.
#
#   engine.sh           start Debian's engine where none answers (as root)
#   engine.sh compose   the same, and `docker compose` (built from the Go module proxy if missing)
#   engine.sh stop      stop a dockerd this script started
#
# Where no engine answers and this user is root, it installs Debian's engine (docker.io) when
# missing and starts dockerd in the background, its data under ~/.cache/bank/docker, so the
# images built once stay for the next run.
set -euo pipefail

cache="${BANK_CACHE_DIR:-$HOME/.cache/bank}"
state="$cache/docker"
pid_file="$state/dockerd.pid"
compose_version="v5.6.0"

say() { echo "docker-engine: $*" >&2; }

engine_answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

stop_engine() {
  local pid
  pid=$(cat "$pid_file" 2>/dev/null || true)
  # Only a dockerd: after a reboot, the file's PID may be another process's.
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    kill "$pid"
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "dockerd did not stop within 60 s of SIGTERM; killing it"
      kill -9 "$pid"
    fi
    say "stopped the engine this script started"
  fi
  rm -f "$pid_file"
}

start_engine() {
  if [ "$(id -u)" -ne 0 ]; then
    say "no Docker engine answers; start yours (\`sudo systemctl start docker\`) or Debian's (\`sudo make docker-engine\`)."
    exit 1
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing Debian's Docker engine (apt-get install docker.io)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  mkdir -p "$state"
  # vfs works on any file system, inside containers and sandboxes too. Published ports listen on
  # 127.0.0.1 only; without iptables, containers reach each other on their own networks and the
  # host through those ports. setsid: a Ctrl-C of the make that started it does not stop it.
  setsid dockerd --data-root "$state/data" --storage-driver "${BANK_DOCKER_STORAGE_DRIVER:-vfs}" \
    --ip 127.0.0.1 --iptables=false --pidfile "$pid_file" \
    </dev/null >>"$state/dockerd.log" 2>&1 &
  local dockerd=$!
  for _ in $(seq 1 120); do
    if engine_answers; then
      say "started dockerd (data in $state/data, log in $state/dockerd.log)"
      return
    fi
    kill -0 "$dockerd" 2>/dev/null || break
    sleep 0.5
  done
  say "dockerd did not start; its log, $state/dockerd.log, says why:"
  tail -n 20 "$state/dockerd.log" >&2
  exit 1
}

install_compose() {
  local plugin="$HOME/.docker/cli-plugins/docker-compose"
  local built="$cache/docker-compose-$compose_version"
  if [ ! -x "$built" ]; then
    if ! command -v go >/dev/null 2>&1; then
      say "\`docker compose\` is missing: install Docker's docker-compose-plugin, or Go to build it."
      exit 1
    fi
    say "building the compose plugin $compose_version from the Go module proxy (about a minute)"
    local module="github.com/docker/compose/v5@$compose_version" listing source
    listing=$(go mod download -json "$module") || {
      say "fetching $module failed: $listing"
      exit 1
    }
    source=$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$listing")
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # Built as the main module: its go.mod's replace and exclude lines then apply.
    cp -r "$source" "$work/src"
    chmod -R u+w "$work/src"
    (cd "$work/src" && go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$compose_version" \
      -o "$built" ./cmd)
  fi
  mkdir -p "$(dirname "$plugin")"
  ln -sf "$built" "$plugin"
  say "installed the compose plugin: $(docker compose version)"
}

case "${1:-start}" in
  start) engine_answers || start_engine ;;
  compose)
    engine_answers || start_engine
    docker compose version >/dev/null 2>&1 || install_compose
    ;;
  stop) stop_engine ;;
  *)
    echo "usage: $0 [start|compose|stop]" >&2
    exit 2
    ;;
esac
