#!/usr/bin/env bash
# The client package alone, as producers and consumers install it: for each Python it supports at the
# ends of its range (3.11 and 3.13), a throwaway virtual environment with ONLY ./client and pytest, a check
# that none of the service's dependencies came along, and the client's own tests (tests/client/unit, which
# import nothing of the service; the ones marked rabbitmq use the broker at ORDER_WORKER_TEST_BROKER_URL).
#
#   bash deploy/client-check.sh [VERSION ...]     default: 3.11 3.13
#
# An interpreter is looked for on PATH (pythonX.Y), then in pyenv's versions folder, then through uv
# (installed into a throwaway venv; 'uv python find', else 'uv python install'). If none can be had the
# check fails, saying so: the client's claim to run on that version is then unproven.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'deploy/client-check.sh: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FORBIDDEN="worker dramatiq aiohttp psycopg psycopg_pool cryptography structlog prometheus_client urllib3"

is_version() { [ -x "$1" ] && [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$2" ]; }

uv_bin() {
  if [ ! -x "$WORK/uv/bin/uv" ]; then
    python3 -m venv "$WORK/uv" && "$WORK/uv/bin/pip" install -q uv >&2 || return 1
  fi
  echo "$WORK/uv/bin/uv"
}

find_python() {
  local version=$1 candidate uv
  candidate=$(command -v "python$version" || true)
  if [ -n "$candidate" ] && is_version "$candidate" "$version"; then echo "$candidate"; return 0; fi
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version"*/bin/python"$version"; do
    if is_version "$candidate" "$version"; then echo "$candidate"; return 0; fi
  done
  uv=$(uv_bin) || return 1
  candidate=$("$uv" python find "$version" 2>/dev/null) \
    || { "$uv" python install "$version" >&2 && candidate=$("$uv" python find "$version"); } || return 1
  is_version "$candidate" "$version" && echo "$candidate"
}

check() {
  local version=$1 python venv
  python=$(find_python "$version") \
    || die "no Python $version found (PATH, ${PYENV_ROOT:-$HOME/.pyenv}/versions, uv): install one, e.g. 'pyenv install $version'"
  say "client package alone on $("$python" --version) ($python)"
  venv="$WORK/py$version"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q ./client pytest pytest-timeout
  # From another folder, so that the checkout's own packages are not importable by accident.
  (cd "$WORK" && "$venv/bin/python" - "$FORBIDDEN") <<'PY'
import importlib.util
import sys

present = [name for name in sys.argv[1].split() if importlib.util.find_spec(name) is not None]
if present:
    sys.exit(f"the client package brought in the service's dependencies: {', '.join(present)}")
import order_worker_client  # noqa: E402  (after the check: importing it must not need them either)

print(f"none of the service's dependencies installed; {order_worker_client.__name__} imports without them")
PY
  # --confcutdir: the repository's top conftest imports the service; the client's tests have their own.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --confcutdir tests/client/unit tests/client/unit
}

for version in "${@:-3.11 3.13}"; do
  for each in $version; do check "$each"; done
done
