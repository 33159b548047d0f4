"""The receiver through HTTP: `build_app` on a real aiohttp runner on 127.0.0.1, a plain HTTP/1.1 client.

Covers what only the server adds: header collection (duplicates across spelling), the body limit enforced
while reading, JSON answers, /healthz, /readyz, /metrics, /openapi.yaml, and 503 when the ledger fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.webhooks.helpers import (
    CANARY_ITRX_SECRET,
    T0,
    AppServer,
    World,
    build_world,
    itrx_callback_payload,
    itrx_signed,
    zt_body,
    zt_dto,
    zt_http_headers,
)
from worker.webhooks import receiver as receiver_module
from worker.webhooks import server as server_module
from worker.webhooks.server import build_app


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[World, AppServer]]:
    world = build_world(tmp_path / "http")
    server = AppServer(build_app(world.receiver, threads=4))
    yield world, server
    server.close()
    world.close()


def _metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", re.M)
    for found_labels, value in pattern.findall(text):
        if all(part in found_labels.split(",") for part in wanted.split(",") if part):
            return float(value)
    return 0.0


def test_valid_pushes_over_http_are_applied_once(served: tuple[World, AppServer]) -> None:
    world, server = served
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    raw = zt_body(zt_dto(seeded.order_id, "PENDING", T0 + 10))

    first = server.request("POST", "/webhooks/0trace", raw, zt_http_headers(raw))
    again = server.request("POST", "/webhooks/0trace", raw, zt_http_headers(raw, now=T0 + 20))

    assert (first.status, first.json(), first.content_type) == (
        200,
        {"result": "accepted"},
        "application/json",
    )
    assert (again.status, again.json()) == (200, {"result": "duplicate"})
    assert len(world.events(seeded.command_id, "status_changed")) == 1

    itrx = world.seed_itrx()
    assert itrx.order_id is not None
    world.stub.set_order(itrx.order_id, 40)
    body, headers = itrx_signed(
        itrx_callback_payload(itrx.order_id, itrx.partner_ref, 40), CANARY_ITRX_SECRET, int(T0)
    )
    # itrx sends the header names upper case; HTTP header names are case-insensitive
    sent = [("TIMESTAMP", headers["timestamp"][0]), ("SIGNATURE", headers["signature"][0])]
    answer = server.request("POST", "/webhooks/itrx", body, [("Content-Type", "application/json"), *sent])
    assert (answer.status, answer.json()) == (200, {"result": "accepted"})
    [event] = world.events(itrx.command_id, "status_changed")
    assert (event["status"], event["source"]) == ("completed", "webhook")


def test_headers_repeated_under_any_spelling_are_refused(served: tuple[World, AppServer]) -> None:
    world, server = served
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    raw = zt_body(zt_dto(seeded.order_id, "PENDING", T0 + 10))
    headers = zt_http_headers(raw)
    repeated = [*headers, ("x-partner-webhook-sign", headers[-1][1])]  # same value, other spelling
    answer = server.request("POST", "/webhooks/0trace", raw, repeated)
    assert (answer.status, answer.json()) == (400, {"result": "missing_or_repeated_header"})
    missing = server.request("POST", "/webhooks/0trace", raw, headers[:-1])
    assert (missing.status, missing.json()) == (400, {"result": "missing_or_repeated_header"})
    assert world.events(seeded.command_id, "status_changed") == []


@pytest.mark.parametrize("path", ["/webhooks/0trace", "/webhooks/itrx"])
def test_body_limit_is_enforced_at_the_configured_size(served: tuple[World, AppServer], path: str) -> None:
    world, server = served
    limit = world.settings.serving.webhook_max_body
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    raw = zt_body(zt_dto(seeded.order_id, "PENDING", T0 + 10))
    exact = raw + b" " * (limit - len(raw))  # JSON may end in whitespace: still the same, valid push
    over = exact + b" "
    assert len(exact) == limit

    too_large = server.request("POST", path, over, zt_http_headers(over))
    assert (too_large.status, too_large.json()) == (413, {"result": "too_large"})
    if path == "/webhooks/0trace":
        at_limit = server.request("POST", path, exact, zt_http_headers(exact))
        assert (at_limit.status, at_limit.json()) == (200, {"result": "accepted"})
        assert len(world.events(seeded.command_id, "status_changed")) == 1
    huge = server.request("POST", path, b"x" * (4 * limit), zt_http_headers(b"x"))
    assert huge.status == 413


def test_healthz_readyz_and_metrics(served: tuple[World, AppServer]) -> None:
    world, server = served
    health = server.request("GET", "/healthz")
    ready = server.request("GET", "/readyz")
    assert (health.status, health.body) == (200, b"ok\n")
    assert (ready.status, ready.body) == (200, b"ready\n")

    before = server.request("GET", "/metrics").body.decode()
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    raw = zt_body(zt_dto(seeded.order_id, "EXCHANGE", T0 + 10))
    assert server.request("POST", "/webhooks/0trace", raw, zt_http_headers(raw)).status == 200
    assert server.request("POST", "/webhooks/0trace", raw, zt_http_headers(raw, secret="wrong")).status == 401
    metrics = server.request("GET", "/metrics")
    text = metrics.body.decode()

    assert metrics.status == 200 and "order_worker_pushes_total" in text
    accepted = {"provider": "0trace", "result": "accepted"}
    refused = {"provider": "0trace", "result": "bad_signature"}
    assert _metric(text, "order_worker_pushes_total", **accepted) == (
        _metric(before, "order_worker_pushes_total", **accepted) + 1
    )
    assert _metric(text, "order_worker_pushes_total", **refused) == (
        _metric(before, "order_worker_pushes_total", **refused) + 1
    )
    assert _metric(text, "order_worker_push_to_event_seconds_count") == (
        _metric(before, "order_worker_push_to_event_seconds_count") + 1
    )


def test_openapi_document_parses_and_lists_every_answer(served: tuple[World, AppServer]) -> None:
    _, server = served
    answer = server.request("GET", "/openapi.yaml")
    assert answer.status == 200 and (answer.content_type or "").startswith("application/yaml")
    text = answer.body.decode()
    doc = _load_yaml(text)

    assert str(doc["openapi"]).startswith("3.")
    assert {"/webhooks/0trace", "/webhooks/itrx", "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    produced = _results_in_source()
    enum = set(doc["components"]["schemas"]["Result"]["properties"]["result"]["enum"])
    assert {result for _, result in produced} <= enum, "results the receiver sends but the document omits"
    codes = {str(code) for code, _ in produced}
    for path, answered in (("/webhooks/0trace", codes), ("/webhooks/itrx", codes - {"202"})):
        # itrx redelivers anything but 200, so its recorded answers are 200 (see PushReceiver.itrx)
        assert answered <= set(map(str, doc["paths"][path]["post"]["responses"])), path
    for name in doc["components"]["responses"]:
        assert f"#/components/responses/{name}" in text


def _results_in_source() -> set[tuple[int, str]]:
    """Every (status, result) the receiver and the server can answer, read from their source."""
    found: set[tuple[int, str]] = set()
    for module in (receiver_module, server_module):
        source = Path(module.__file__ or "").read_text()
        found |= {(int(c), r) for c, r in re.findall(r'PushResult\((\d{3}), "([a-z_]+)"', source)}
        found |= {(int(c), r) for r, c in re.findall(r'\{"result": "([a-z_]+)"\}, status=(\d{3})', source)}
    assert (503, "unavailable") in found and (413, "too_large") in found
    return found


def _load_yaml(text: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # PyYAML is not a declared dev dependency: fall back to a structural reading
        return _structural_yaml(text)
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def _structural_yaml(text: str) -> dict[str, Any]:
    """Enough of the document for the assertions above, without a YAML library."""
    paths = re.findall(r"^  (/[\w/.]+):", text, re.M)
    enum_text = re.search(r"enum: \[([^\]]*)\]", text, re.S)
    assert enum_text is not None
    enum = [item.strip() for item in enum_text.group(1).replace("\n", " ").split(",")]
    responses: dict[str, dict[str, Any]] = {}
    for path in ("/webhooks/0trace", "/webhooks/itrx"):
        block = text.split(f"  {path}:", 1)[1].split("\n  /", 1)[0]
        responses[path] = {"post": {"responses": dict.fromkeys(re.findall(r'"(\d{3})":', block))}}
    names = re.findall(r"^    (\w+): \{description", text, re.M)
    version = re.search(r"^openapi: (\S+)", text, re.M)
    assert version is not None
    return {
        "openapi": version.group(1),
        "paths": {p: responses.get(p, {}) for p in paths},
        "components": {
            "schemas": {"Result": {"properties": {"result": {"enum": enum}}}},
            "responses": dict.fromkeys(names),
        },
    }


def test_ledger_failure_is_503_and_not_ready(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    world = build_world(tmp_path / "broken")
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    server = AppServer(build_app(world.receiver, threads=2))
    try:
        world.ledger.close()  # the database is gone from under the receiver
        raw = zt_body(zt_dto(seeded.order_id, "PENDING", T0 + 10))
        answer = server.request("POST", "/webhooks/0trace", raw, zt_http_headers(raw))
        ready = server.request("GET", "/readyz")
        health = server.request("GET", "/healthz")
    finally:
        server.close()
        world.close()
    assert (answer.status, answer.json()) == (503, {"result": "unavailable"})
    assert ready.status == 503 and ready.body.startswith(b"not ready: ")
    assert health.status == 200  # alive, just not ready
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)  # the traceback was logged
