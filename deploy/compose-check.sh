#!/usr/bin/env bash
# The compose stack up for real: deploy/docker-compose.yml unchanged, plus deploy/docker-compose.ci.yml.
#
#   bash deploy/compose-check.sh --image order-worker:ci --sandbox-image order-worker-sandbox:ci \
#        --verdicts FILE
#
# Called by deploy/image-check.sh after it built the images (and the Debian base the third-party
# stand-ins are built on). Builds those stand-ins (RabbitMQ, PostgreSQL, Prometheus from Debian's
# packages), runs 'docker compose up --wait', sends demo orders through the stack, asks its Prometheus
# for the targets and the alert rules, and takes the stack down with its volumes whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
BASE_IMAGE=${BASE_IMAGE:-order-worker-ci/python:3.11-bookworm}
image="" sandbox_image="" verdicts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image=$2; shift 2 ;;
    --sandbox-image) sandbox_image=$2; shift 2 ;;
    --verdicts) verdicts=$2; shift 2 ;;
    *) echo "deploy/compose-check.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$image" ] || [ -z "$sandbox_image" ] || [ -z "$verdicts" ]; then sed -n '2,5p' "$0"; exit 2; fi
: > "$verdicts"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
verdict() { printf '%s %s\n' "$1" "$2" | tee -a "$verdicts"; }

# deploy/check.sh installs the docker compose v2 binary into the venv.
COMPOSE_BIN="$VENV/bin/docker-compose"
[ -x "$COMPOSE_BIN" ] || bash deploy/check.sh --install >/dev/null
export ORDER_WORKER_IMAGE=$image ORDER_WORKER_SANDBOX_IMAGE=$sandbox_image ORDER_WORKER_SANDBOX_SPEED=120
compose() { "$COMPOSE_BIN" -f deploy/docker-compose.yml -f deploy/docker-compose.ci.yml "$@"; }
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/order-worker-compose.XXXXXX")
trap 'compose down -v --remove-orphans >/dev/null 2>&1 || true; rm -rf "$LOGS"' EXIT

started=$SECONDS
for service in rabbitmq postgres prometheus; do
  say "stand-in image order-worker-ci/$service:bookworm (Debian's package)"
  if ! docker build --network host --force-rm -f deploy/ci/services.Dockerfile --target "$service" \
      --build-arg BASE="$BASE_IMAGE" -t "order-worker-ci/$service:bookworm" deploy/ci >"$LOGS/build-$service.log" 2>&1; then
    tail -n 30 "$LOGS/build-$service.log" >&2
    verdict FAIL "compose: the $service stand-in did not build (log above)"
    exit 1
  fi
done
say "stand-ins ready in $((SECONDS - started)) s"

compose down -v --remove-orphans >/dev/null 2>&1 || true
up_started=$SECONDS
say "docker compose up --wait (deploy/docker-compose.yml + deploy/docker-compose.ci.yml)"
if ! compose up --detach --wait --wait-timeout 240 --no-build 2>"$LOGS/up.log"; then
  tail -n 20 "$LOGS/up.log" >&2
  compose ps -a >&2 || true
  compose logs --tail 30 >&2 || true
  verdict FAIL "compose: 'up --wait' did not become healthy"
  exit 1
fi
verdict PASS "compose: up --wait healthy in $((SECONDS - up_started)) s: $(compose ps --format '{{.Service}}={{.Health}}' | sort | paste -sd' ')"

status=0
"$PY" deploy/tools/compose_orders.py \
  --broker 'amqp://order-worker:order-worker-dev@127.0.0.1:27672/%2F' \
  --ledger 'postgresql://order_worker:order-worker-dev@127.0.0.1:27432/order_worker' \
  --sandbox http://127.0.0.1:27090 --prometheus http://127.0.0.1:27990 \
  --alerts deploy/prometheus/alerts.yml --verdicts "$LOGS/orders.verdicts" || status=1
cat "$LOGS/orders.verdicts" >> "$verdicts"

# Every order-worker service still up, none restarted behind the healthy status.
mapfile -t containers < <(compose ps -q)
restarts=$(docker inspect --format '{{.Name}}={{.RestartCount}}' "${containers[@]}" | grep -v '=0$' || true)
if [ -n "$restarts" ]; then verdict FAIL "compose: restarted containers: $restarts"; status=1; fi
if [ "$status" != 0 ]; then compose logs --tail 30 worker scheduler webhooks >&2 || true; fi

down_started=$SECONDS
compose down -v --remove-orphans >/dev/null 2>&1 || status=1
say "compose stack down in $((SECONDS - down_started)) s; the compose check took $((SECONDS - started)) s"
exit "$status"
