#!/usr/bin/env bash
# Builds the bank's images, bank/kafka, bank/postgres and bank/services; `make images` runs it.
#
# Every image starts from Debian bookworm. Where a registry answers, that is the official
# debian:bookworm-slim; where none does, a base this script makes: debootstrap of bookworm
# (from Debian's package mirror) imported with `docker import` as bank/base:bookworm.
# BANK_BASE_IMAGE names another base. Docker's layer cache makes a build of an unchanged
# image take seconds, so each run builds all three and only what changed is redone.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "images: $*" >&2; }

public_base=debian:bookworm-slim
local_base=bank/base:bookworm

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

make_local_base() {
  if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      say "no registry answers, and making a base image needs debootstrap:"
      say "sudo apt-get install debootstrap, then run make images again."
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  chmod 755 "$root" # it becomes the image's /, which every user must be able to enter
  say "making $local_base with debootstrap (about a minute)"
  debootstrap --variant=minbase bookworm "$root" >/dev/null
  # The updates and security suites too, as debian:bookworm-slim has them, from the same mirror.
  local mirror
  mirror=$(awk '$1 == "deb" { print $2; exit }' "$root/etc/apt/sources.list")
  printf 'deb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
    "$mirror" "$mirror" >>"$root/etc/apt/sources.list"
  # The package cache and lists are of no use in an image; each build step fetches its own.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$local_base" >/dev/null
}

choose_base() {
  if [ -n "${BANK_BASE_IMAGE:-}" ]; then
    say "base $BANK_BASE_IMAGE (BANK_BASE_IMAGE)"
    echo "$BANK_BASE_IMAGE"
  elif has_image "$public_base"; then
    say "base $public_base"
    echo "$public_base"
  elif has_image "$local_base"; then
    say "base $local_base, made earlier by debootstrap: no registry answered"
    echo "$local_base"
  elif timeout 120 docker pull -q "$public_base" >/dev/null 2>&1; then
    say "base $public_base, pulled from a registry"
    echo "$public_base"
  else
    make_local_base
    say "base $local_base, made by debootstrap from Debian's packages: no registry answers"
    echo "$local_base"
  fi
}

docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || {
  say "no Docker engine answers; start yours (\`sudo systemctl start docker\`) or Debian's (\`sudo make docker-engine\`)."
  exit 1
}
base=$(choose_base)

# Authorities this machine added to its trust, for the build steps that download.
rm -f deploy/docker/ca-certificates/*.crt
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt deploy/docker/ca-certificates/
fi

# Without the buildx plugin, the engine's own (classic) builder does the same work.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
logs=.bank/images
mkdir -p "$logs"
for image in kafka postgres services; do
  started=$SECONDS
  # --network host: the build steps reach the package registries as the host does.
  # --force-rm: a failed step leaves no container behind. BANK_KAFKA_VERSION, as the launcher.
  if ! docker build --network host --force-rm --build-arg "BASE_IMAGE=$base" \
    --build-arg "KAFKA_VERSION=${BANK_KAFKA_VERSION:-}" \
    --file "deploy/docker/$image/Dockerfile" --tag "bank/$image" . >"$logs/$image.log" 2>&1; then
    tail -n 30 "$logs/$image.log" >&2
    say "building bank/$image failed; the whole log is $logs/$image.log"
    exit 1
  fi
  say "bank/$image ready ($((SECONDS - started)) s)"
done
