"""Trace context without OpenTelemetry spans (and without the [otel] extra): what the envelope keeps, and
the producer's context carried through a command to its events unchanged."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.providers.partner_stubs import StubServer
from tests.providers.test_zerotrace_client import DTO, TOKEN, ok
from tests.tracing_support import TRACE_ID, TRACEPARENT, kwargs, stub_pipeline
from worker import tracing
from worker.bus.envelope import envelope, parse_envelope
from worker.bus.relay import event_properties
from worker.ledger.base import Ledger

_OTEL = ("opentelemetry", "opentelemetry.trace", "opentelemetry.sdk", "opentelemetry.sdk.trace")


@pytest.fixture(params=["extra absent", "extra installed, not configured"])
def untraced(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "extra absent":
        for module in _OTEL:
            monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    tracing.reset()
    monkeypatch.setattr(tracing._state, "api", None)
    yield
    tracing.reset()
    tracing._state.api = None


@pytest.fixture
def partner() -> Iterator[StubServer]:
    server = StubServer()
    server.reply(200, ok({**DTO, "token": TOKEN}))
    yield server
    server.close()


def _options(body: bytes) -> dict[str, Any]:
    fields = parse_envelope(body)
    assert isinstance(fields, dict), fields
    options: dict[str, Any] = fields["options"]
    return options


def _with(trace_context: Any) -> bytes:
    return envelope(
        "orders.create", "create_order", kwargs("cmd-00000001"), None, {"trace_context": trace_context}
    )


def test_the_envelope_keeps_a_w3c_trace_context() -> None:
    context = {"traceparent": TRACEPARENT, "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}
    assert _options(_with(context)) == {"trace_context": context}
    assert tracing.trace_id(_options(_with(context))["trace_context"]) == TRACE_ID


@pytest.mark.parametrize(
    "bad",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # not an object
        {"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"},  # upper case
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},  # zero trace id
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"},  # zero parent id
        {"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},  # unknown version
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"},
        {"traceparent": 42},
        {"tracestate": "a=b"},
    ],
)
def test_a_malformed_trace_context_is_dropped_and_the_command_kept(bad: Any) -> None:
    assert _options(_with(bad)) == {}


def test_an_oversized_or_unprintable_tracestate_is_dropped_alone() -> None:
    for state in ("k=" + "v" * tracing.MAX_TRACESTATE_CHARS, "k=v\n", "k=\u00e9"):
        context = json.loads(json.dumps({"traceparent": TRACEPARENT, "tracestate": state}))
        assert _options(_with(context)) == {"trace_context": {"traceparent": TRACEPARENT}}


def test_the_producer_context_passes_through_to_the_event(
    untraced: None, ledger: Ledger, partner: StubServer
) -> None:
    carrier = {"traceparent": TRACEPARENT, "tracestate": "vendor=value"}
    with stub_pipeline(ledger, partner.url) as pipeline:
        with tracing.continued("order-worker create_order", carrier, {}) as span:
            span.set("order_worker.outcome", "nothing records it")
            span.fail("nothing records it either")
            assert pipeline.handle_create(kwargs("cmd-00000001"), "m-1").name == "created"
        assert tracing.current() is None  # the command's context ends with it
        (row,) = ledger.claim_outbox(2e9, 10, 30)
        assert event_properties(row).headers == carrier
        pipeline.handle_create(kwargs("cmd-00000002"), "m-2")  # outside any trace
        (row,) = ledger.claim_outbox(2e9, 10, 30)
        assert row.trace_context is None and event_properties(row).headers is None


def test_an_exporter_asked_for_without_the_extra_leaves_spans_off(
    untraced: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    for module in _OTEL:
        monkeypatch.setitem(sys.modules, module, None)
    with tracing.span("partner 0trace create", {}) as span:
        span.set("anything", 1)
    assert "extra is not installed" in caplog.text


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_spans_are_off_unless_the_environment_asks_for_an_exporter(
    environ: dict[str, str], enabled: bool
) -> None:
    assert tracing.enabled_by_environment(environ) is enabled
