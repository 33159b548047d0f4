"""What the chart renders, field by field: probes, security, secrets, scaling, monitoring, refusals."""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import (
    CHART,
    DEPLOY,
    NAMESPACE,
    RELEASE,
    Rendered,
    RenderFn,
    load_json,
    load_yaml,
    refused,
)

ROLES = ("worker", "scheduler", "webhooks")
SECRET_KEYS = {
    "order_worker_broker_url",
    "order_worker_ledger_url",
    "order_worker_zerotrace_api_key",
    "order_worker_zerotrace_api_secret",
    "order_worker_zerotrace_webhook_secrets",
    "order_worker_itrx_api_key",
    "order_worker_itrx_api_secret",
    "order_worker_itrx_previous_api_secrets",
    "order_worker_token_keys",
}
ACTOR_TIME_LIMIT = 60


def container(doc: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name is None or c["name"] == name)


def arg_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def variants(default: Rendered, full: Rendered) -> list[Rendered]:
    return [default, full]


# --------------------------------------------------------------------------------------------- probes
@pytest.mark.parametrize(
    "role,port_name,port",
    [("worker", "metrics", 9191), ("scheduler", "metrics", 9191), ("webhooks", "http", 8091)],
)
def test_probes_hit_healthz_and_readyz_on_the_serving_port(
    default: Rendered, full: Rendered, role: str, port_name: str, port: int
) -> None:
    for rendered in variants(default, full):
        c = container(rendered.deployment(role))
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {port_name: port}
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
        if role == "webhooks":
            assert arg_value(c["args"], "--port") == str(port)
        else:  # the process binds what the pod declares
            assert {"name": "ORDER_WORKER_METRICS_PORT", "value": str(port)} in c["env"]


def test_a_moved_metrics_port_moves_everything(render: RenderFn) -> None:
    rendered = render({"scheduler": {"metricsPort": 9292}})
    c = container(rendered.deployment("scheduler"))
    assert c["ports"] == [{"name": "metrics", "containerPort": 9292, "protocol": "TCP"}]
    assert {"name": "ORDER_WORKER_METRICS_PORT", "value": "9292"} in c["env"]
    assert c["readinessProbe"]["httpGet"]["port"] == "metrics"


def test_roles_run_their_commands(default: Rendered) -> None:
    assert container(default.deployment("worker"))["args"][:1] == ["worker"]
    assert container(default.deployment("scheduler"))["args"][:1] == ["scheduler"]
    assert container(default.deployment("webhooks"))["args"][:3] == ["webhooks", "--port", "8091"]
    image = container(default.deployment("worker"))["image"]
    assert image == "ghcr.io/example/order-worker:" + load_yaml(CHART / "Chart.yaml")["appVersion"]


def test_image_digest_wins_over_the_tag(full: Rendered) -> None:
    values = load_yaml(CHART / "ci" / "full-values.yaml")["image"]
    for _, pod in full.pod_templates():
        for c in pod["containers"]:
            assert c["image"] == f"{values['repository']}@{values['digest']}"


# ------------------------------------------------------------------------------------------- timeouts
def test_timeouts_nest_inside_the_grace_period(default: Rendered, full: Rendered) -> None:
    for rendered in variants(default, full):
        worker = rendered.deployment("worker")
        args = container(worker)["args"]
        shutdown = float(arg_value(args, "--shutdown-timeout"))
        read_timeout = float(rendered.one("ConfigMap", RELEASE)["data"]["ORDER_WORKER_HTTP_READ_TIMEOUT"])
        grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert read_timeout < ACTOR_TIME_LIMIT < shutdown < grace
        assert (shutdown, grace) == (90, 120)


def test_webhooks_grace_covers_prestop_and_receiver_shutdown(default: Rendered) -> None:
    pod = default.deployment("webhooks")["spec"]["template"]["spec"]
    sleep = int(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > sleep + 15


@pytest.mark.parametrize(
    "values,message",
    [
        ({"worker": {"terminationGracePeriodSeconds": 90}}, "must exceed worker.shutdownTimeoutSeconds"),
        (
            {"worker": {"shutdownTimeoutSeconds": 60, "terminationGracePeriodSeconds": 120}},
            "shutdownTimeoutSeconds",
        ),
        ({"config": {"httpReadTimeout": 75}}, "httpReadTimeout"),
        ({"webhooks": {"terminationGracePeriodSeconds": 10}}, "preStopSleepSeconds"),
    ],
)
def test_timeouts_that_do_not_nest_are_refused(
    render: RenderFn, helmtool: ModuleType, values: dict[str, Any], message: str
) -> None:
    assert message in refused(render, helmtool, values)


# ------------------------------------------------------------------------------------------- security
def test_every_pod_and_container_is_restricted(
    default: Rendered, full: Rendered, render: RenderFn, postgres_values: dict[str, Any]
) -> None:
    for rendered in (default, full, render(postgres_values)):
        for name, pod in rendered.pod_templates():
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True, name
            assert psc["runAsUser"] == 10001, name
            assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert pod["automountServiceAccountToken"] is False, name
            assert "hostNetwork" not in pod and "hostPID" not in pod, name
            for c in pod["containers"] + pod.get("initContainers", []):
                sc = c["securityContext"]
                assert sc["runAsNonRoot"] is True, name
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert "add" not in sc["capabilities"], name
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                assert mounts.get("/tmp") == "tmp", name
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes["tmp"], name
            assert not any("hostPath" in v for v in pod["volumes"]), name


# -------------------------------------------------------------------------------------------- secrets
def secrets_volume(pod: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in pod["volumes"] if v["name"] == "secrets")


def test_existing_secret_is_referenced_everywhere_and_no_secret_is_rendered(full: Rendered) -> None:
    existing = load_yaml(CHART / "ci" / "full-values.yaml")["secrets"]["existingSecret"]
    assert full.all("Secret") == []
    for name, pod in full.pod_templates():
        assert secrets_volume(pod)["secret"]["secretName"] == existing, name
    auth = full.one("TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": existing, "key": "order_worker_broker_url"}
    ]


def test_secrets_are_files_in_the_secrets_dir_never_environment(default: Rendered, full: Rendered) -> None:
    for rendered in variants(default, full):
        data = rendered.one("ConfigMap", RELEASE)["data"]
        secrets_dir = data["ORDER_WORKER_SECRETS_DIR"]
        secret_env = {"ORDER_WORKER_" + key.removeprefix("order_worker_").upper() for key in SECRET_KEYS}
        assert not (secret_env - {"ORDER_WORKER_LEDGER_URL"}) & set(data)
        if "ORDER_WORKER_LEDGER_URL" in data:  # only the SQLite path, never a database URL
            assert data["ORDER_WORKER_LEDGER_URL"].startswith("sqlite:////")
        for name, pod in rendered.pod_templates():
            for c in pod["containers"]:
                mount = next(m for m in c["volumeMounts"] if m["name"] == "secrets")
                assert mount["readOnly"] is True
                assert mount["mountPath"] == secrets_dir or any(
                    e == {"name": "ORDER_WORKER_SECRETS_DIR", "value": mount["mountPath"]}
                    for e in c.get("env", [])
                ), name
                assert not {e["name"] for e in c.get("env", [])} & secret_env, name
            assert secrets_volume(pod)["secret"]["defaultMode"] == 0o440


def test_chart_managed_secret_holds_only_the_given_values(
    render: RenderFn, postgres_values: dict[str, Any]
) -> None:
    rendered = render(postgres_values)
    secret = rendered.one("Secret", RELEASE)
    assert set(secret["data"]) == {
        "order_worker_broker_url",
        "order_worker_ledger_url",
        "order_worker_zerotrace_api_secret",
        "order_worker_token_keys",
    }
    assert (
        base64.b64decode(secret["data"]["order_worker_ledger_url"]).decode()
        == postgres_values["secrets"]["ledgerUrl"]
    )
    for name, pod in rendered.pod_templates():
        if name.endswith("-migrate"):
            continue
        assert secrets_volume(pod)["secret"]["secretName"] == RELEASE, name
        annotations = rendered.deployment(name.removeprefix(f"{RELEASE}-"))["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert "checksum/secret" in annotations and "checksum/config" in annotations


@pytest.mark.parametrize("key", ["BROKER_URL", "token_keys", "ZEROTRACE_API_SECRET"])
def test_secrets_are_refused_in_the_configmap(render: RenderFn, helmtool: ModuleType, key: str) -> None:
    assert "is a secret" in refused(render, helmtool, {"config": {"extraEnv": {key: "x"}}})


def test_token_keys_shape_is_checked_by_the_schema(render: RenderFn, helmtool: ModuleType) -> None:
    message = refused(render, helmtool, {"secrets": {"tokenKeys": "k1:not-base64-32-bytes"}})
    assert "tokenKeys" in message


# ------------------------------------------------------------------------------------ ledger backends
def test_sqlite_default_shares_one_claim_on_one_node(default: Rendered) -> None:
    claim = default.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    ledger_url = default.one("ConfigMap", RELEASE)["data"]["ORDER_WORKER_LEDGER_URL"]
    for role in ROLES:
        deployment = default.deployment(role)
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        volume = next(v for v in pod["volumes"] if v["name"] == "ledger")
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ledger")
        assert ledger_url == f"sqlite:///{mount['mountPath']}/ledger.db"
        term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert selects(
            term["labelSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
        )
    assert default.all("Job") == []  # every role migrates the SQLite file itself at start
    assert "--no-migrate" not in container(default.deployment("worker"))["args"]


@pytest.mark.parametrize(
    "values",
    [
        {"worker": {"replicaCount": 2}},
        {"scheduler": {"replicaCount": 3}},
        {"webhooks": {"replicaCount": 2}},
        {"worker": {"keda": {"enabled": True}}},
        {"worker": {"autoscaling": {"enabled": True}}},
    ],
)
def test_sqlite_with_more_than_one_replica_is_refused(
    render: RenderFn, helmtool: ModuleType, values: dict[str, Any]
) -> None:
    message = refused(render, helmtool, values)
    assert "more than one replica requires PostgreSQL" in message
    assert "ledger.backend is sqlite" in message


def test_a_sqlite_url_with_the_postgresql_backend_is_refused(render: RenderFn, helmtool: ModuleType) -> None:
    message = refused(
        render,
        helmtool,
        {
            "ledger": {"backend": "postgresql"},
            "secrets": {"ledgerUrl": "sqlite:////data/l.db"},
            "worker": {"replicaCount": 3},
        },
    )
    assert "SQLite URL" in message and "more replicas require PostgreSQL" in message


def test_postgresql_needs_a_ledger_url(render: RenderFn, helmtool: ModuleType) -> None:
    assert "needs the ledger URL" in refused(render, helmtool, {"ledger": {"backend": "postgresql"}})


def test_postgresql_runs_migrations_in_a_hook_before_any_pod(
    render: RenderFn, postgres_values: dict[str, Any]
) -> None:
    rendered = render(postgres_values)
    job = rendered.one("Job", f"{RELEASE}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert container(job)["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The release's Secret does not exist yet at pre-install: the Job has its own hook Secret, created first.
    hook_secret = rendered.one("Secret", f"{RELEASE}-migrate")
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )
    assert set(hook_secret["data"]) == {"order_worker_ledger_url"}
    assert secrets_volume(job["spec"]["template"]["spec"])["secret"]["secretName"] == f"{RELEASE}-migrate"
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    for role in ("worker", "scheduler"):
        assert "--no-migrate" in container(rendered.deployment(role))["args"]
    assert rendered.all("PersistentVolumeClaim") == []
    for role in ROLES:
        deployment = rendered.deployment(role)
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert "affinity" not in deployment["spec"]["template"]["spec"]
        assert "ORDER_WORKER_LEDGER_URL" not in rendered.one("ConfigMap", RELEASE)["data"]


# ------------------------------------------------------------------------------------------- scaling
def test_keda_scales_the_worker_on_both_queues_and_never_to_zero(full: Rendered) -> None:
    scaled = full.one("ScaledObject")
    spec = scaled["spec"]
    worker = full.deployment("worker")
    assert spec["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert spec["minReplicaCount"] >= 1
    assert "idleReplicaCount" not in spec
    assert "replicas" not in worker["spec"]  # the HPA KEDA creates owns the replica count
    triggers = spec["triggers"]
    assert {t["metadata"]["queueName"] for t in triggers} == {
        "orders.create",
        "orders.poll",
        "orders.actions",
    }
    for trigger in triggers:
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
        assert trigger["authenticationRef"]["name"] == full.one("TriggerAuthentication")["metadata"]["name"]


def test_keda_follows_renamed_queues(render: RenderFn, postgres_values: dict[str, Any]) -> None:
    values = json.loads(json.dumps(postgres_values))
    values["config"] = {"createQueue": "eu.create", "pollQueue": "eu.poll", "actionsQueue": "eu.actions"}
    values["worker"]["keda"] = {"enabled": True}
    rendered = render(values)
    queues = [t["metadata"]["queueName"] for t in rendered.one("ScaledObject")["spec"]["triggers"]]
    assert queues == ["eu.create", "eu.poll", "eu.actions"]
    assert rendered.one("ConfigMap", RELEASE)["data"]["ORDER_WORKER_CREATE_QUEUE"] == "eu.create"
    auth = rendered.one("TriggerAuthentication")["spec"]["secretTargetRef"][0]
    assert auth == {"parameter": "host", "name": RELEASE, "key": "order_worker_broker_url"}


def test_keda_min_replica_count_zero_is_refused(
    render: RenderFn, helmtool: ModuleType, postgres_values: dict[str, Any]
) -> None:
    values = json.loads(json.dumps(postgres_values))
    values["worker"]["keda"] = {"enabled": True, "minReplicaCount": 0}
    with pytest.raises(helmtool.ChartError, match="minReplicaCount"):
        render(values)


def test_keda_and_hpa_together_are_refused(
    render: RenderFn, helmtool: ModuleType, postgres_values: dict[str, Any]
) -> None:
    values = json.loads(json.dumps(postgres_values))
    values["worker"]["keda"] = {"enabled": True}
    values["worker"]["autoscaling"] = {"enabled": True}
    assert "not both" in refused(render, helmtool, values)


def test_hpa_targets_an_existing_deployment(full: Rendered) -> None:
    for hpa in full.all("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = full.one("Deployment", target["name"])
        assert "replicas" not in deployment["spec"]
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_disruption_budgets_select_their_pods(default: Rendered, full: Rendered) -> None:
    for rendered in variants(default, full):
        budgets = rendered.all("PodDisruptionBudget")
        assert len(budgets) == 3
        for pdb in budgets:
            deployment = rendered.one("Deployment", pdb["metadata"]["name"])
            assert selects(
                pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
            )
            assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"])


# ------------------------------------------------------------------------------------ services and monitoring
def pods_behind(rendered: Rendered, service: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        d
        for d in rendered.all("Deployment")
        if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    ]


def test_service_monitor_scrapes_every_role_through_a_port_named_metrics(full: Rendered) -> None:
    monitor = full.one("ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    services = [
        s
        for s in full.all("Service")
        if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    scraped = set()
    for service in services:
        port = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
        for deployment in pods_behind(full, service):
            c = container(deployment)
            named = {p["name"] for p in c["ports"]}
            assert port["targetPort"] in named, (service["metadata"]["name"], deployment["metadata"]["name"])
            scraped.add(deployment["metadata"]["labels"]["app.kubernetes.io/component"])
    assert scraped == set(ROLES)


def test_webhooks_service_and_ingress(full: Rendered) -> None:
    service = full.one("Service", f"{RELEASE}-webhooks")
    assert [d["metadata"]["name"] for d in pods_behind(full, service)] == [f"{RELEASE}-webhooks"]
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert http["targetPort"] == "http"
    ingress = full.one("Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert [p["path"] for p in paths] == ["/webhooks"]  # /metrics and the probes stay inside the cluster
    assert paths[0]["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == ["hooks.payments.example.com"]


def test_prometheus_rule_ships_the_compose_rules_with_extra_labels(full: Rendered) -> None:
    # One source: the chart's file is a symbolic link, which Helm follows and packages as content.
    assert (CHART / "files" / "alerts.yml").resolve() == (DEPLOY / "prometheus" / "alerts.yml").resolve()
    source = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    groups = full.one("PrometheusRule")["spec"]["groups"]
    assert [g["name"] for g in groups] == [g["name"] for g in source]
    for group, original in zip(groups, source, strict=True):
        assert len(group["rules"]) == len(original["rules"])
        for rule, want in zip(group["rules"], original["rules"], strict=True):
            assert rule["expr"] == want["expr"]
            # runbookBaseUrl makes the relative runbook link absolute (its trailing slash is not doubled).
            base = "https://git.payments.example.com/order-worker/-/blob/main/deploy/prometheus"
            runbook = f"{base}/{want['annotations']['runbook_url']}"
            assert rule["annotations"] == {**want["annotations"], "runbook_url": runbook}
            assert rule["labels"] == {**want["labels"], "team": "payments"}


def test_service_monitor_labels_each_series_with_its_release(full: Rendered) -> None:
    endpoint = full.one("ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["relabelings"][0] == {
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
        "targetLabel": "release",
    }


def test_grafana_dashboard_configmap_is_the_compose_dashboard(full: Rendered) -> None:
    source = DEPLOY / "grafana" / "dashboards" / "order-worker.json"
    assert (CHART / "files" / "order-worker-dashboard.json").resolve() == source.resolve()
    configmap = full.one("ConfigMap", f"{RELEASE}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["order-worker.json"]) == load_json(source)


def test_monitoring_objects_are_off_by_default(default: Rendered) -> None:
    kinds = {d["kind"] for d in default.docs}
    assert not kinds & {
        "ServiceMonitor",
        "PrometheusRule",
        "ScaledObject",
        "Ingress",
        "HorizontalPodAutoscaler",
    }


def test_network_policy(default: Rendered, full: Rendered) -> None:
    policy = default.one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == {"metrics", "http"}
    policy = full.one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 5671, 5432, 443}
    partners = next(r for r in policy["spec"]["egress"] if r["ports"] == [{"port": 443, "protocol": "TCP"}])
    assert "10.0.0.0/8" in partners["to"][0]["ipBlock"]["except"]
    sources = [rule.get("from") for rule in policy["spec"]["ingress"]]
    assert all(sources)  # the full values restrict every ingress rule to named namespaces


def test_notes_warn_about_missing_production_settings(default: Rendered, full: Rendered) -> None:
    assert "no broker URL" in default.notes
    assert "WARNINGS" not in full.notes
    assert "https://hooks.payments.example.com/webhooks/0trace" in full.notes
