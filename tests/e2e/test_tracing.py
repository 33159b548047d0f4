"""One trace across processes: a command published with a producer's trace context, handled by a real
worker, and its event read from the exchange with the same trace id in its ``traceparent`` header; with
spans on, the worker's spans reach an OTLP/HTTP receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.partners import zerotrace_command
from tests.support.stack import Stack, wait_until
from worker.bus.watcher import EventWatcher

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PRODUCER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PRODUCER_SPAN}-01"


def _created_event(watcher: EventWatcher, command_id: str, timeout: float) -> tuple[dict[str, Any], Any]:
    """The command's ``created`` event and its AMQP properties, as a consumer reads them."""
    deadline = time.monotonic() + timeout
    for method, properties, body in watcher.channel.consume(watcher.queue, inactivity_timeout=0.5):
        if method is not None:
            watcher.channel.basic_ack(method.delivery_tag)
            event = json.loads(body)
            if event["command_id"] == command_id and event["type"] == "created":
                watcher.channel.cancel()
                return event, properties
        if time.monotonic() > deadline:
            raise AssertionError(f"no created event for {command_id} within {timeout:.0f} s")
    raise AssertionError("the event consumer stopped")


def test_the_event_continues_the_producer_trace(stack: Stack) -> None:
    """Without spans (no OTEL_* exporter) the worker hands the producer's context on unchanged."""
    stack.start_worker(OTEL_SDK_DISABLED="true")
    stack.start_scheduler(OTEL_SDK_DISABLED="true")
    command = zerotrace_command()
    context = {"traceparent": TRACEPARENT, "tracestate": "shop=42"}
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command, trace_context=context)
        event, properties = _created_event(watcher, command["command_id"], timeout=60)
    assert properties.headers == context
    assert properties.message_id == event["event_id"]


@dataclass
class OtlpReceiver:
    """A stand-in OTLP/HTTP collector: accepts ``POST /v1/traces`` (protobuf) and keeps what it got."""

    spans: list[tuple[str, str, str]] = field(default_factory=list)
    """(trace id, span id, name) of every span received."""
    requests: int = 0
    content_types: set[str] = field(default_factory=set)

    def serve(self) -> Iterator[str]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    receiver.requests += 1
                    receiver.content_types.add(self.headers.get("Content-Type", ""))
                    request = ExportTraceServiceRequest.FromString(body)
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            receiver.spans.extend(
                                (span.trace_id.hex(), span.span_id.hex(), span.name) for span in scope.spans
                            )
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def otlp() -> Iterator[tuple[OtlpReceiver, str]]:
    pytest.importorskip("opentelemetry.sdk.trace", reason="the [otel] extra is not installed")
    receiver = OtlpReceiver()
    for url in receiver.serve():
        yield receiver, url


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_worker_spans_reach_an_otlp_receiver_in_the_producer_trace(
    stack: Stack, otlp: tuple[OtlpReceiver, str]
) -> None:
    receiver, url = otlp
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "order-worker-e2e",
    }
    stack.start_worker(**traced)
    stack.start_scheduler(OTEL_SDK_DISABLED="true")
    command = zerotrace_command()
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command, trace_context={"traceparent": TRACEPARENT})
        _event, properties = _created_event(watcher, command["command_id"], timeout=60)
    _version, trace_id, parent, _flags = properties.headers["traceparent"].split("-")
    assert trace_id == TRACE_ID and parent != PRODUCER_SPAN  # a span of the worker is the event's parent

    def ours() -> set[str]:
        return {name for trace, _span, name in receiver.spans if trace == TRACE_ID}

    wait_until(
        lambda: {"order-worker create_order", "partner 0trace create", "ledger transaction"} <= ours(),
        30,
        "the worker's spans at the OTLP receiver",
    )
    assert parent in {span for trace, span, _name in receiver.spans if trace == TRACE_ID}
    assert receiver.content_types == {"application/x-protobuf"}
