#!/usr/bin/env bash
# Development entry point: the README's two commands are 'bash deploy/dev.sh demo' and 'bash deploy/dev.sh test'.
# It creates .venv, installs the project, and makes sure RabbitMQ (and, for tests, PostgreSQL) are running,
# installing the Debian packages when they are missing. Run 'bash deploy/dev.sh help' for every sub-command.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PG_URL=${ORDER_WORKER_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'deploy/dev.sh: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install it by hand, or run as root)"; fi
}

apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get here. Install $* yourself and start it."
  say "installing $* (Debian packages)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

setup() {
  # The service is built, tested and shipped (deploy/Dockerfile) on 3.11; the client package is proven on
  # 3.11 and 3.13 by deploy/client-check.sh.
  if [ ! -x "$PY" ]; then
    command -v python3.11 >/dev/null || python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
      || die "Python 3.11 is required (found $(python3 --version 2>&1))"
    say "creating $VENV"
    "$(command -v python3.11 || command -v python3)" -m venv "$VENV"
  fi
  if ! "$PY" -c 'import worker, order_worker_client, order_worker_sandbox, dramatiq, psycopg, pytest' 2>/dev/null \
      || [ pyproject.toml -nt "$VENV/.installed" ] || [ sandbox/pyproject.toml -nt "$VENV/.installed" ] \
      || [ client/pyproject.toml -nt "$VENV/.installed" ]; then
    say "installing order-worker, its client package, the partner sandbox and the development tools into $VENV"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ./client -e ./sandbox -e '.[dev,sandbox,otel,postgres]'
    touch "$VENV/.installed"
  fi
}

broker() {
  if port_open 127.0.0.1 5672; then return 0; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 90); do port_open 127.0.0.1 5672 && return 0; sleep 1; done
  die "RabbitMQ did not start on 127.0.0.1:5672 (see /var/log/rabbitmq/)"
}

postgres() {
  if ! port_open 127.0.0.1 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    say "starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do port_open 127.0.0.1 5432 && break; sleep 1; done
    port_open 127.0.0.1 5432 || die "PostgreSQL did not start on 127.0.0.1:5432"
  fi
  if ! "$PY" -c "import psycopg,sys; psycopg.connect(sys.argv[1]).close()" "$PG_URL" 2>/dev/null; then
    say "preparing database 'test' (trust auth for local connections)"
    hba=$(as_root su postgres -c "psql -tAc 'show hba_file'")
    if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
      as_root su postgres -c "psql -qc 'select pg_reload_conf()'" >/dev/null
    fi
    as_root su postgres -c "psql -tAc \"select 1 from pg_database where datname='test'\"" | grep -q 1 \
      || as_root su postgres -c "createdb test"
    "$PY" -c "import psycopg,sys; psycopg.connect(sys.argv[1]).close()" "$PG_URL" \
      || die "cannot connect to $PG_URL; set ORDER_WORKER_TEST_POSTGRES_URL to a reachable database"
  fi
}

lint() {
  say "ruff"
  "$VENV/bin/ruff" check worker client sandbox tests bench deploy/tools
  say "mypy --strict worker/ client/ sandbox/ deploy/tools/"
  "$VENV/bin/mypy" worker client/order_worker_client sandbox/order_worker_sandbox deploy/tools
  say "import-linter (layering contracts in pyproject.toml)"
  "$VENV/bin/lint-imports"
}

# Node.js packages of one npm project of the repository (its package-lock.json), for the contract's tests
# and checks; Node.js itself comes from Debian's packages when missing.
node_packages() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  if [ ! -d "$1/node_modules" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    say "installing the Node.js packages of $1 (npm ci)"
    npm ci --prefix "$1" --no-audit --no-fund --loglevel=error
  fi
}

# The shipped AsyncAPI document, checked by the AsyncAPI project's own parser (warnings fail too). Its
# usage analytics are switched off: nothing leaves this machine.
asyncapi() {
  node_packages deploy/asyncapi
  say "AsyncAPI document (worker/schemas/asyncapi.json) validated by @asyncapi/cli"
  local settings
  settings=$(mktemp)
  printf '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"order-worker-ci"}' > "$settings"
  CI=true ASYNCAPI_METRICS_CONFIG_PATH="$settings" deploy/asyncapi/node_modules/.bin/asyncapi \
    validate worker/schemas/asyncapi.json --fail-severity warn || { rm -f "$settings"; exit 1; }
  rm -f "$settings"
}

case "${1:-help}" in
  setup) setup ;;
  broker) broker ;;
  postgres) setup; postgres ;;
  demo) setup; broker; shift; exec "$VENV/bin/order-worker" demo "$@" ;;
  run) setup; broker; shift; exec "$VENV/bin/order-worker" run "$@" ;;
  test) setup; broker; postgres; node_packages tests/contract; bash deploy/check.sh --install; shift
        exec "$PY" -m pytest "$@" ;;
  reliability) setup; broker; postgres; shift; exec "$PY" -m pytest --reliability -m reliability "$@" ;;
  lint) setup; lint; asyncapi ;;
  client-check) broker; shift; exec bash deploy/client-check.sh "$@" ;;
  ci) setup; broker; postgres; lint; asyncapi; node_packages tests/contract; bash deploy/check.sh --no-pytest
      say "the client package alone, on Python 3.11 and 3.13"
      bash deploy/client-check.sh
      say "the image for real: build, hygiene, every role from it, the compose stack"
      bash deploy/image-check.sh
      say "tests: the fast tier"
      "$PY" -m pytest -q -p no:cacheprovider
      say "tests: the reliability scenarios"
      "$PY" -m pytest -q -p no:cacheprovider --reliability -m reliability ;;
  help|-h|--help)
    cat <<'USAGE'
usage: bash deploy/dev.sh COMMAND [ARGS]
  demo [--orders N]   install, start RabbitMQ, run the whole stack and watch demo orders complete
  run                 install, start RabbitMQ, run the whole stack until Ctrl-C
  test [PYTEST ARGS]  install, start RabbitMQ and PostgreSQL, run the fast tier of the tests (a few minutes)
  reliability [ARGS]  the reliability scenarios (real processes killed, paused, starved; about 30 minutes)
  lint                ruff, mypy --strict, import-linter, the AsyncAPI document's validation
  client-check [VER]  the client package alone (only it and pytest in a fresh venv) on Python 3.11 and 3.13
  ci                  everything CI checks (lint, deployment checks, the image check, both tiers of tests)
  setup | broker | postgres   the individual steps
USAGE
    ;;
  *) die "unknown command '$1' (try: bash deploy/dev.sh help)" ;;
esac
