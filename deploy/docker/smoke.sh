#!/usr/bin/env bash
# The container smoke test, `make docker-smoke`, which CI runs too:
#   1. a Docker engine (Debian's, started here if none answers) and the bank's images;
#   2. the login material (`bank-infra credentials`, as `make compose-up`), `docker compose up`,
#      the tutorial's story (`make demo`) through it, `docker compose down -v`, and a check that
#      nothing of the cluster is left;
#   3. the integration tests that use Kafka and PostgreSQL together, on testcontainers.
# It stops an engine it started. Each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/../.."
uv=${UV:-uv}

say() { echo "docker-smoke: $*" >&2; }
timed() {
  local started=$SECONDS
  "$@"
  say "$* took $((SECONDS - started)) s"
}

engine_was_running=yes
docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || engine_was_running=no
finish() {
  local status=$?
  if [ "$status" -ne 0 ] && [ -n "$(docker compose ps --all --quiet 2>/dev/null)" ]; then
    say "failed; the cluster's containers and the end of their logs:"
    docker compose ps --all >&2 || true
    docker compose logs --no-color --tail 40 >&2 || true
  fi
  docker compose down --volumes --remove-orphans >/dev/null 2>&1 || true
  if [ "$engine_was_running" = no ]; then deploy/docker/engine.sh stop; fi
}
trap finish EXIT

timed deploy/docker/engine.sh compose
timed deploy/docker/images.sh

timed "$uv" run bank-infra credentials
timed docker compose up --detach --wait --wait-timeout 300
timed "$uv" run python -m bank_deploy.demo
timed docker compose down --volumes --remove-orphans
left=$(docker ps --all --quiet --filter label=com.docker.compose.project=bank)
left+=$(docker volume ls --quiet --filter label=com.docker.compose.project=bank)
left+=$(docker network ls --quiet --filter label=com.docker.compose.project=bank)
if [ -n "$left" ]; then
  say "docker compose down -v left containers, volumes or networks of the bank behind"
  exit 1
fi
say "the compose cluster came up, told the story and left nothing behind"

# The tests that exercise Kafka and PostgreSQL together: the outbox relay, the saga and
# the projector against the broker and databases, in containers this time.
timed env BANK_TEST_INFRA=docker "$uv" run pytest -q -p no:cacheprovider \
  tests/integration/test_infrastructure.py tests/integration/test_outbox_relay.py \
  tests/integration/test_transfers_saga.py tests/integration/test_projector.py
left=$(docker ps --all --quiet --filter label=bank.test-infra.pid)
if [ -n "$left" ]; then
  say "the test session left containers behind: $left"
  exit 1
fi
say "the test session removed its containers"
