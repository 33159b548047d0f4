"""Tracing in one process: the span tree of a command (producer -> command -> partner call and ledger
transactions), the trace context stored with its events, what a span may say, and the path without spans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.providers.partner_stubs import StubServer
from tests.providers.test_zerotrace_client import DTO, TOKEN, ok
from tests.tracing_support import API_KEY, SECRET, TRACE_ID, TRACEPARENT, kwargs, stub_pipeline
from worker import tracing
from worker.bus.envelope import envelope, parse_envelope
from worker.bus.relay import event_properties
from worker.ledger.base import Ledger
from worker.pipeline import OrderPipeline

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the [otel] extra is not installed")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield provider, exporter
    tracing.reset()
    provider.shutdown()


@pytest.fixture
def partner() -> Iterator[StubServer]:
    server = StubServer()
    server.reply(200, ok({**DTO, "token": TOKEN}))
    yield server
    server.close()


@pytest.fixture
def pipeline(ledger: Ledger, partner: StubServer) -> Iterator[OrderPipeline]:
    with stub_pipeline(ledger, partner.url) as built:
        yield built


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_one_trace_from_the_producer_span_to_the_event(
    spans: tuple[TracerProvider, InMemorySpanExporter], pipeline: OrderPipeline, ledger: Ledger
) -> None:
    provider, exporter = spans
    with provider.get_tracer("a producer").start_as_current_span("producer publish") as producer:
        body = envelope("orders.create", "create_order", kwargs("cmd-00000001"), None, _producer_options())
    fields = parse_envelope(body)
    assert isinstance(fields, dict)
    carrier = fields["options"]["trace_context"]
    with tracing.continued("order-worker create_order", carrier, {"messaging.system": "rabbitmq"}):
        outcome = pipeline.handle_create(fields["kwargs"], fields["message_id"])
    assert outcome.name == "created"

    finished = {span.name: span for span in exporter.get_finished_spans()}
    trace_id = producer.get_span_context().trace_id
    command_span = finished["order-worker create_order"]
    partner_span = finished["partner 0trace create"]
    ledger_spans = [span for span in exporter.get_finished_spans() if span.name == "ledger transaction"]
    assert {span.context.trace_id for span in exporter.get_finished_spans()} == {trace_id}
    assert (
        command_span.parent is not None and command_span.parent.span_id == producer.get_span_context().span_id
    )
    assert partner_span.parent is not None and partner_span.parent.span_id == command_span.context.span_id
    assert len(ledger_spans) >= 2  # the claim before the call and the record after it
    assert all(
        s.parent is not None and s.parent.span_id == command_span.context.span_id for s in ledger_spans
    )
    assert _attributes(partner_span) == {
        "order_worker.partner.provider": "0trace",
        "order_worker.partner.endpoint": "create",
        "http.request.method": "POST",
        "order_worker.partner.fate": "answered",
        "order_worker.partner.result": "ok",
    }
    everything = json.dumps([_attributes(span) for span in exporter.get_finished_spans()])
    for secret in (SECRET, API_KEY, TOKEN, DTO["id"]):
        assert secret not in everything

    (row,) = ledger.claim_outbox(2e9, 10, 30)
    headers = event_properties(row).headers
    assert headers is not None and headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    # The event's parent is a span of the worker (the ledger transaction that wrote it).
    assert int(headers["traceparent"].split("-")[2], 16) in {s.context.span_id for s in ledger_spans}


def _producer_options() -> dict[str, Any]:
    context = tracing.current()
    assert context is not None
    return {"trace_context": context}


def test_a_failed_partner_call_says_its_fate_and_code_only(
    spans: tuple[TracerProvider, InMemorySpanExporter], pipeline: OrderPipeline, partner: StubServer
) -> None:
    partner.reply(503, {"code": 503, "msg": f"upstream down {SECRET}"})
    with tracing.continued("order-worker create_order", {"traceparent": TRACEPARENT}, {}):
        outcome = pipeline.handle_create(kwargs("cmd-00000002"), "m-2")
    assert outcome.name in ("retry", "in_doubt")
    (call,) = [span for span in spans[1].get_finished_spans() if span.name.startswith("partner ")]
    assert f"{call.context.trace_id:032x}" == TRACE_ID
    attributes = _attributes(call)
    assert attributes["order_worker.partner.fate"] == "unknown"
    assert attributes["http.response.status_code"] == 503
    assert not call.status.is_ok and call.status.description == attributes["order_worker.partner.result"]
    assert SECRET not in json.dumps(attributes) and SECRET not in str(call.status.description)
