"""The chart renders with Helm's engine, lints clean, and every object it renders is valid.

Core kinds are checked against the Kubernetes OpenAPI schemas in strict mode (unknown fields refused) for
the oldest supported version (the chart's kubeVersion) and the newest; custom resources against
deploy/schemas/. Default values and ci/full-values.yaml both, and the PostgreSQL/chart-Secret variant.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import (
    CHART,
    DEPLOY,
    FULL_VALUES,
    Rendered,
    RenderFn,
    load_json,
    load_yaml,
    require_module,
)

KUBE_VERSIONS = ("1.27.0", "1.37.0")
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.keda.sh_v1alpha1.json",
}


@pytest.fixture(scope="module", params=["default", "full", "postgres"])
def variant(request: pytest.FixtureRequest, render: RenderFn, postgres_values: dict[str, Any]) -> Rendered:
    if request.param == "default":
        return render()
    if request.param == "full":
        return render(files=(FULL_VALUES,))
    return render(postgres_values)


def test_chart_yaml_declares_what_the_templates_need() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "order-worker"
    assert chart["kubeVersion"].startswith(">=1.27")


def test_lint_is_clean_for_default_and_full_values(helmtool: ModuleType) -> None:
    assert helmtool.lint(CHART) == []
    assert helmtool.lint(CHART, helmtool.load_values([FULL_VALUES])) == []


def test_values_schema_is_a_valid_schema_and_the_values_files_follow_it() -> None:
    jsonschema = require_module("jsonschema")
    schema = load_json(CHART / "values.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in (CHART / "values.yaml", FULL_VALUES):
        errors = [
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(load_yaml(path))
        ]
        assert errors == [], f"{path.name}: {errors}"


def test_rendered_objects_are_valid_kubernetes(variant: Rendered) -> None:
    kubernetes_validate = require_module("kubernetes_validate")
    core = [d for d in variant.docs if (d["apiVersion"], d["kind"]) not in CRD_SCHEMAS]
    assert core
    for version in KUBE_VERSIONS:
        for doc in core:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {error.message}")


def test_rendered_custom_resources_match_their_schemas(variant: Rendered) -> None:
    jsonschema = require_module("jsonschema")
    for doc in variant.docs:
        key = (doc["apiVersion"], doc["kind"])
        if key not in CRD_SCHEMAS:
            continue
        schema = load_json(DEPLOY / "schemas" / CRD_SCHEMAS[key])
        errors = [
            f"{'/'.join(map(str, e.path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)
        ]
        assert errors == [], f"{doc['kind']}/{doc['metadata']['name']}: {errors}"


def test_crd_schemas_refuse_a_typo() -> None:
    jsonschema = require_module("jsonschema")
    schema = load_json(DEPLOY / "schemas" / CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")])
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"name": "x"},
            "minReplicas": 1,  # the HPA's spelling, not KEDA's
            "triggers": [{"type": "rabbitmq", "metadata": {"value": 50}}],  # metadata values are strings
        },
    }
    messages = " ".join(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert "minReplicas" in messages
    assert "50 is not of type 'string'" in messages


def test_every_object_carries_the_standard_labels(variant: Rendered) -> None:
    for doc in variant.docs:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "order-worker", doc["metadata"]["name"]
        assert labels.get("app.kubernetes.io/instance") == "order-worker", doc["metadata"]["name"]
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", doc["metadata"]["name"]


def test_no_whitespace_only_lines_in_the_output(variant: Rendered) -> None:
    for name, text in variant.files.items():
        blank = [n for n, line in enumerate(text.splitlines(), 1) if line and not line.strip()]
        assert blank == [], f"{name}: lines {blank} hold only spaces"


def test_full_values_exercise_every_optional_object(full: Rendered) -> None:
    kinds = {d["kind"] for d in full.docs}
    assert kinds >= {
        "Deployment",
        "Service",
        "Ingress",
        "ConfigMap",
        "ServiceAccount",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "ScaledObject",
        "TriggerAuthentication",
    }


def test_ci_values_files_are_the_ones_check_sh_renders() -> None:
    files = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
    assert "full-values.yaml" in files
    assert Path(CHART / ".helmignore").read_text().count("ci/") == 1
