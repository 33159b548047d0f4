#!/usr/bin/env bash
# The image for real: build deploy/Dockerfile, measure it, start every role from it and run orders through.
#
#   bash deploy/image-check.sh               engine, base stand-in, build, hygiene, role matrix, compose stack
#   bash deploy/image-check.sh --no-compose  everything but the compose stack
#   bash deploy/image-check.sh --clean       remove the images this check built (a from-scratch run follows)
#
# Container registries are out of reach from CI, so python:3.11-slim-bookworm is replaced by a stand-in
# made from Debian's own packages (debootstrap + python3 + python3-venv) and handed to the unchanged
# Dockerfile as PYTHON_IMAGE. The Docker engine is Debian's docker.io, started without a bridge and
# without iptables rules: every container uses the host's network, so nothing leaves the loopback range.
#
# Where no engine can be started (no root, no apt-get, no kernel support) it prints a SKIPPED line saying
# why and exits 0, unless IMAGE_CHECK_REQUIRED=1 (then it fails). Any misbehaving container fails it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
IMAGE=${IMAGE_CHECK_IMAGE:-order-worker:ci}
SANDBOX_IMAGE=${IMAGE_CHECK_SANDBOX_IMAGE:-order-worker-sandbox:ci}
BASE_IMAGE=order-worker-ci/python:3.11-bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# Debian's docker.io runs its state under /var/lib/docker; the engine's log and pid go here.
STATE=${IMAGE_CHECK_STATE:-/var/tmp/order-worker-image-check}
SIZE_TARGET_MB=250

run_compose=1 clean_only=0
for arg in "$@"; do
  case "$arg" in
    --no-compose) run_compose=0 ;;
    --clean) clean_only=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "deploy/image-check.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'deploy/image-check.sh: %s\n' "$*" >&2; exit 1; }
VERDICTS=()
verdict() { VERDICTS+=("$(printf '%-4s %s' "$1" "$2")"); printf '%s %s\n' "$1" "$2"; }

skip() {
  printf '\n\033[1;33m!! IMAGE CHECK SKIPPED: %s\033[0m\n' "$*" >&2
  printf '!! The Dockerfile was validated (deploy/check.sh) but no image was built and no container ran.\n' >&2
  [ "${IMAGE_CHECK_REQUIRED:-0}" = 1 ] && die "IMAGE_CHECK_REQUIRED=1: a skipped image check is a failure"
  exit 0
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null || return 1
  say "installing $* (Debian packages)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 && return 0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------- engine
engine() {
  if docker info >/dev/null 2>&1; then
    say "Docker engine: $(docker version --format '{{.Server.Version}}') (already running)"
    return 0
  fi
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    apt_install docker.io || skip "no Docker engine here and docker.io could not be installed (needs root and apt-get)"
  fi
  as_root mkdir -p "$STATE" || skip "cannot start dockerd: not root and no password-less sudo"
  say "starting dockerd (no bridge, no iptables: containers use the host network only)"
  # setsid: the engine outlives this script, like the broker deploy/dev.sh starts; CI reuses it.
  as_root setsid dockerd --bridge=none --iptables=false --ip6tables=false \
    --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { say "Docker engine $(docker version --format '{{.Server.Version}}') started"; return 0; }
    sleep 0.5
  done
  tail -n 20 "$STATE/dockerd.log" >&2 || true
  skip "dockerd did not start (see its log above)"
}

# ---------------------------------------------------------------------------------------------- base
# The recipe's hash is the stand-in's tag label: an unchanged recipe reuses the image a previous run built.
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
base_image() {
  local recipe have rootfs started=$SECONDS
  recipe=$(printf '%s %s %s' "$SUITE" "$BASE_PACKAGES" "$(sha256sum /etc/ssl/certs/ca-certificates.crt)" | sha256sum | cut -c1-16)
  have=$(docker image inspect --format '{{index .Config.Labels "order-worker.ci.recipe"}}' "$BASE_IMAGE" 2>/dev/null || true)
  if [ "$have" = "$recipe" ]; then
    say "base stand-in $BASE_IMAGE: reused (recipe $recipe)"
    return 0
  fi
  command -v debootstrap >/dev/null || apt_install debootstrap || die "debootstrap is needed for the base stand-in"
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/order-worker-rootfs.XXXXXX")
  say "base stand-in: debootstrap --variant=minbase $SUITE + $BASE_PACKAGES"
  if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$DEBIAN_MIRROR" \
      >"$STATE/debootstrap.log" 2>&1; then
    tail -n 20 "$STATE/debootstrap.log" >&2
    rm -rf "$rootfs"
    die "debootstrap failed (log above)"
  fi
  # What python:3.11-slim does not carry either: package caches, indexes and documentation.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  # pip in the build stage must trust what this machine trusts to reach the package index.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL order-worker.ci.recipe=$recipe" \
    --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  say "base stand-in $BASE_IMAGE built in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------------------------- build
# Without the buildx plugin the client uses the classic builder, which ignores the BuildKit-only
# deploy/Dockerfile.dockerignore (and the syntax line, whose frontend image lives on a registry). The
# context is therefore built here from that allow-list, out of the files git tracks.
build_context() {
  local includes=() excludes=() line
  while IFS= read -r line; do
    case "$line" in
      '#'*|'') ;;
      '!'*) includes+=("${line#!}") ;;
      '*') ;;
      *) excludes+=(":(exclude,glob)$line") ;;
    esac
  done < deploy/Dockerfile.dockerignore
  git ls-files -z -- "${includes[@]}" "${excludes[@]}" deploy/Dockerfile | tar --null -T - -c
}

build() {
  local started=$SECONDS version revision source
  version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
  revision=$(git rev-parse HEAD)
  git diff --quiet HEAD -- . 2>/dev/null || revision="$revision-dirty"
  source=$(git config --get remote.origin.url || echo "order-worker")
  for target in runtime sandbox; do
    local tag=$IMAGE
    [ "$target" = sandbox ] && tag=$SANDBOX_IMAGE
    say "docker build --target $target -t $tag (PYTHON_IMAGE=$BASE_IMAGE)"
    if ! build_context | docker build --network host --force-rm -f deploy/Dockerfile --target "$target" \
        --build-arg PYTHON_IMAGE="$BASE_IMAGE" --build-arg VERSION="$version" \
        --build-arg REVISION="$revision" --build-arg SOURCE="$source" -t "$tag" - \
        >"$STATE/build-$target.log" 2>&1; then
      tail -n 30 "$STATE/build-$target.log" >&2
      verdict FAIL "build ($target): docker build failed (log above)"
      return 1
    fi
  done
  verdict PASS "build: $IMAGE and $SANDBOX_IMAGE in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------------------------- hygiene
hygiene() {
  local size base_size fails=0 found
  size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
  base_size=$(docker image inspect --format '{{.Size}}' "$BASE_IMAGE")
  size=$((size / 1000000)) base_size=$((base_size / 1000000))
  printf '     image %s: %d MB = base stand-in %d MB + %d MB of order-worker (target <= %d MB on python:3.11-slim)\n' \
    "$IMAGE" "$size" "$base_size" "$((size - base_size))" "$SIZE_TARGET_MB"
  if [ "$size" -gt "$SIZE_TARGET_MB" ]; then verdict FAIL "image size: $size MB > $SIZE_TARGET_MB MB"; fails=1
  else verdict PASS "image size: $size MB (base $base_size MB, order-worker layers $((size - base_size)) MB)"; fi

  # Run as the image runs: its own entry point is replaced by the interpreter, still UID 10001, read-only.
  found=$(docker run --rm --network host --read-only --cap-drop ALL --entrypoint python "$IMAGE" -c '
import importlib.util, os, shutil, sys
bad = [t for t in ("gcc", "cc", "c++", "g++", "clang", "make", "pip", "pip3") if shutil.which(t)]
bad += [m for m in ("pip", "order_worker_sandbox", "setuptools") if importlib.util.find_spec(m)]
print(" ".join(bad) or "-", os.getuid())')
  if [ "${found% *}" != "-" ]; then verdict FAIL "hygiene: found at runtime: ${found% *}"; fails=1
  else verdict PASS "hygiene: no compiler, no pip, no setuptools, no sandbox module; runs as UID ${found##* }"; fi
  if docker run --rm --network host --entrypoint python "$SANDBOX_IMAGE" -c 'import order_worker_sandbox'; then
    verdict PASS "hygiene: the sandbox target does carry the simulator"
  else verdict FAIL "hygiene: the sandbox target has no simulator"; fails=1; fi

  local labels missing=()
  labels=$(docker image inspect --format '{{json .Config.Labels}}' "$IMAGE")
  for key in source revision version title licenses; do
    "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get("org.opencontainers.image."+sys.argv[2]); sys.exit(not v or v=="unknown")' \
      "$labels" "$key" || missing+=("$key")
  done
  if [ "${#missing[@]}" -gt 0 ]; then verdict FAIL "OCI labels missing: ${missing[*]}"; fails=1
  else verdict PASS "OCI labels: $("$PY" -c 'import json,sys; l=json.loads(sys.argv[1]); print(", ".join(k + "=" + l["org.opencontainers.image." + k] for k in ("version", "revision", "source")))' "$labels")"; fi
  return "$fails"
}

clean() {
  say "removing $IMAGE, $SANDBOX_IMAGE, $BASE_IMAGE and the compose stand-ins"
  docker image rm -f "$IMAGE" "$SANDBOX_IMAGE" "$BASE_IMAGE" \
    order-worker-ci/rabbitmq:bookworm order-worker-ci/postgres:bookworm order-worker-ci/prometheus:bookworm \
    >/dev/null 2>&1 || true
  docker image prune -f >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------------- main
[ -x "$PY" ] || die "no Python at $PY: create the venv first (bash deploy/dev.sh setup) or set VENV"
mkdir -p "$STATE" 2>/dev/null || true
engine
if [ "$clean_only" = 1 ]; then clean; exit 0; fi
started=$SECONDS
status=0
rm -f "$STATE/roles.verdicts" "$STATE/compose.verdicts"
base_image
if build; then
  hygiene || status=1
  say "roles from the image: read-only root, UID 10001, no capabilities, secrets as files"
  if "$PY" deploy/tools/image_roles.py --image "$IMAGE" --sandbox-image "$SANDBOX_IMAGE" \
      --orders "${IMAGE_CHECK_ORDERS:-200}" --verdicts "$STATE/roles.verdicts"; then :; else status=1; fi
  [ -f "$STATE/roles.verdicts" ] && while IFS= read -r line; do VERDICTS+=("$line"); done < "$STATE/roles.verdicts"
  if [ "$run_compose" = 1 ]; then
    say "the compose stack with deploy/docker-compose.ci.yml"
    if bash deploy/compose-check.sh --image "$IMAGE" --sandbox-image "$SANDBOX_IMAGE" \
        --verdicts "$STATE/compose.verdicts"; then :; else status=1; fi
    [ -f "$STATE/compose.verdicts" ] && while IFS= read -r line; do VERDICTS+=("$line"); done < "$STATE/compose.verdicts"
  fi
else
  status=1
fi

printf '\n\033[1m==> image check verdicts (%d s)\033[0m\n' "$((SECONDS - started))"
printf '  %s\n' "${VERDICTS[@]}"
if [ "$status" = 0 ]; then printf 'image check: PASS\n'; else printf 'image check: FAIL\n'; fi
exit "$status"
