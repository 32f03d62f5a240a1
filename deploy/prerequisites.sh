#!/usr/bin/env bash
# What `make run` and `make test` need before anything else, checked in one place.
#
#   deploy/prerequisites.sh run    uv, Java 17+, Maven, the PostgreSQL server binaries
#   deploy/prerequisites.sh test   the same, and Chromium (the web UI tests)
#
# What is missing is installed with apt-get when this user is root or has passwordless sudo;
# otherwise the script stops at once and prints the one command that installs it.
set -euo pipefail

purpose="${1:-run}"
case "$purpose" in
  run | test) ;;
  *)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac

say() { echo "prerequisites: $*" >&2; }

java_major() {
  # `java -version` prints e.g. 'openjdk version "17.0.15"' (or "1.8.0_392" for Java 8).
  local version
  version=$(java -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1)
  version=${version#1.}
  echo "${version%%[.+-]*}"
}

has_pg_server() {
  if [ -n "${BANK_PG_BIN_DIR:-}" ]; then
    [ -x "$BANK_PG_BIN_DIR/pg_ctl" ]
    return
  fi
  command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

has_chromium() {
  if [ -n "${BANK_TEST_CHROMIUM:-}" ]; then
    [ -x "$BANK_TEST_CHROMIUM" ]
    return
  fi
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11 or newer is needed as python3 (found: $(python3 --version 2>&1 || echo none))."
  say "Install it (Debian 12 and Ubuntu 24.04 ship it as python3), then run make again."
  exit 1
fi

# Debian/Ubuntu package names of what is missing.
packages=()
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  packages+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null 2>&1 || packages+=(maven)
has_pg_server || packages+=(postgresql)
if [ "$purpose" = test ]; then
  has_chromium || packages+=(chromium)
fi

if [ ${#packages[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${packages[*]} (Debian/Ubuntu package names)."
    say "Install Java 17+, Maven, the PostgreSQL server and Chromium with your system's"
    say "package manager, then run make again."
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    say "missing: ${packages[*]}. Install them with:"
    echo "  sudo apt-get update && sudo apt-get install -y ${packages[*]}" >&2
    say "then run make again."
    exit 1
  fi
  say "installing ${packages[*]} with apt-get"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

# uv is a Python package: pip installs it for this user, or, where the system's Python refuses
# (PEP 668), into a virtual environment of its own that the Makefile knows (UV_VENV).
UV_VENV="${UV_VENV:-$HOME/.cache/bank/uv}"
if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1 \
  && ! [ -x "$UV_VENV/bin/uv" ]; then
  say "installing uv with pip"
  if ! python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null; then
    if ! { python3 -m venv "$UV_VENV" && "$UV_VENV/bin/pip" install --quiet uv; }; then
      say "pip could not install uv. Install it (https://docs.astral.sh/uv/), for example:"
      echo "  python3 -m pip install --user uv" >&2
      exit 1
    fi
  fi
fi
