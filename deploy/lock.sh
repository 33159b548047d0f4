#!/usr/bin/env bash
# Regenerates deploy/requirements.lock: every third-party package the image installs (order-worker with
# its postgres and otel extras, and order-worker-client), pinned with the hashes of every file of each
# release, resolved for the image's Python 3.11 on linux x86_64. The image installs it with
# 'pip install --require-hashes --no-deps', then the two local packages without dependencies.
#
#   bash deploy/lock.sh            after changing a dependency in pyproject.toml or client/pyproject.toml
#   bash deploy/lock.sh --upgrade  to move every pin to the newest release the specifiers allow
#
# tests/deploy/test_requirements_lock.py fails when the lock no longer satisfies the pyprojects.
# The resolver is uv (a pinned release, in a throwaway venv), which resolves for another Python and
# platform than its own; the client package is not on the index, so it is built into a local folder
# for the resolver to read its dependencies, and left out of the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/tool"
"$tmp/tool/bin/pip" install -q "uv==$UV_VERSION"
"$tmp/tool/bin/pip" wheel -q --no-deps -w "$tmp/wheels" ./client
upgrade=()
[ "${1:-}" = --upgrade ] && upgrade=(--upgrade)
"$tmp/tool/bin/uv" pip compile pyproject.toml --extra postgres --extra otel "${upgrade[@]}" \
  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --find-links "$tmp/wheels" --no-emit-package order-worker-client \
  --custom-compile-command 'bash deploy/lock.sh' -o deploy/requirements.lock
