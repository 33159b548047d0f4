"""Distributed tracing: W3C trace context carried from a command to the events it causes, and OpenTelemetry
spans when the ``[otel]`` extra is installed and the standard ``OTEL_*`` variables ask for an exporter.

This is the only module that imports ``opentelemetry``, and only on first use, so a worker without the
extra (or without the variables) pays nothing and behaves exactly as before. It imports nothing of the
service either: the transport, the ledger and the bus all use it without gaining a dependency on each
other.

The trace context a producer sent travels even when no span is recorded: the worker then hands the
producer's own ``traceparent`` on to the events, so a consumer still joins the producer's trace. With
spans on, the events carry the worker's span as their parent instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_TRACESTATE_CHARS = 512
"""W3C allows 32 list members and recommends propagating at least 512 characters; longer state is cut off
rather than carried, so a producer cannot grow every event it causes."""

_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(r"[\x20-\x7e]*")
_DEFAULT_SERVICE = "order-worker"

TraceContext = dict[str, str]
Attributes = Mapping[str, str | int | float | bool]

_received: ContextVar[TraceContext | None] = ContextVar("order_worker_trace_context", default=None)


def checked(value: object) -> TraceContext | None:
    """The usable W3C trace context in ``value`` (``traceparent`` and, when well-formed, ``tracestate``).

    Anything else is None: as W3C Trace Context prescribes, a receiver ignores a context it cannot parse
    and starts a new trace; refusing the command over it would lose an order for the sake of a trace.
    Only version 00 is accepted, so the header handed on is one every consumer can read."""
    if not isinstance(value, Mapping):
        return None
    traceparent = value.get(TRACEPARENT)
    if not isinstance(traceparent, str) or not _TRACEPARENT.fullmatch(traceparent):
        return None
    context = {TRACEPARENT: traceparent}
    state = value.get(TRACESTATE)
    if isinstance(state, str) and 0 < len(state) <= MAX_TRACESTATE_CHARS and _TRACESTATE.fullmatch(state):
        context[TRACESTATE] = state
    return context


def trace_id(context: Mapping[str, str] | None) -> str | None:
    usable = checked(context)
    return usable[TRACEPARENT].split("-")[1] if usable else None


def to_text(context: TraceContext | None) -> str | None:
    """How an outbox row stores the context: short JSON, or NULL."""
    return json.dumps(context, separators=(",", ":"), sort_keys=True) if context else None


def from_text(text: str | None) -> TraceContext | None:
    if not text:
        return None
    try:
        return checked(json.loads(text))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------- OpenTelemetry


class Span:
    """What the service does with a span; the same calls whether or not one is being recorded."""

    __slots__ = ("_span", "failed")

    def __init__(self, span: Any = None) -> None:
        self._span = span
        self.failed = False

    def set(self, key: str, value: str | int | float | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def fail(self, code: str) -> None:
        """Marks the span failed with a code only: an exception's text may quote a partner's answer."""
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self.failed = True
            self._span.set_status(Status(StatusCode.ERROR, code))


_NO_SPAN = Span()


class _State:
    """The tracer of this process, built on first use: Dramatiq's worker processes are forked, and an
    exporter's thread does not survive a fork, so each process builds its own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.tracer: Any = None
        self.provider: Any = None
        self.api: bool | None = None


_state = _State()


def enabled_by_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Off unless an exporter is asked for (``OTEL_TRACES_EXPORTER`` other than ``none``, or an OTLP
    endpoint); ``OTEL_SDK_DISABLED=true`` wins over both, as in every OpenTelemetry SDK."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return bool(exporters or endpoint)


def _build_provider() -> Any:
    """A TracerProvider with the exporters ``OTEL_TRACES_EXPORTER`` names (``otlp``, the default, over
    HTTP/protobuf; ``console``), or None when the extra is missing."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* variables ask for traces but the [otel] extra is not installed; tracing is off")
        return None
    env = os.environ
    named = "OTEL_SERVICE_NAME" in env or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": _DEFAULT_SERVICE}))
    exporters = (name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(","))
    for name in filter(None, exporters):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER names %r, which is not supported (otlp, console)", name)
    return provider


def _tracer() -> Any:
    pid = os.getpid()
    if _state.pid == pid:
        return _state.tracer
    with _state.lock:
        if _state.pid != pid:
            provider = _build_provider() if enabled_by_environment() else None
            _install(provider, pid)
    return _state.tracer


def _install(provider: Any, pid: int | None) -> None:
    _state.provider = provider
    _state.tracer = provider.get_tracer("order-worker") if provider is not None else None
    _state.pid = pid


def use_provider(provider: Any) -> None:
    """Record spans with ``provider`` (an SDK ``TracerProvider``) instead of the one the environment
    describes: for tests, and for a program embedding the worker that configures OpenTelemetry itself.
    None turns spans off."""
    with _state.lock:
        _install(provider, os.getpid())


def reset() -> None:
    """Forget the tracer, so that the next span reads the environment again."""
    with _state.lock:
        _state.pid = _state.tracer = _state.provider = None


def _api() -> bool:
    """Whether the OpenTelemetry API can be imported: a producer may trace with its own SDK set-up, and its
    current span is then the context to send, whatever this module's own configuration."""
    if _state.api is None:
        try:
            import opentelemetry.trace  # noqa: F401
        except ImportError:
            _state.api = False
        else:
            _state.api = True
    return _state.api


def current() -> TraceContext | None:
    """The trace context to hand on: the current OpenTelemetry span's, else the context the command being
    handled arrived with."""
    if _api():
        from opentelemetry.trace import get_current_span
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if get_current_span().get_span_context().is_valid:
            carrier: TraceContext = {}
            TraceContextTextMapPropagator().inject(carrier)
            context = checked(carrier)
            if context is not None:
                return context
    return _received.get()


@contextmanager
def carried(context: TraceContext | None) -> Iterator[None]:
    """Work done on behalf of something that arrived with ``context`` (an outbox row being published):
    its log lines carry that trace, and no span is started."""
    token = _received.set(checked(context))
    try:
        yield
    finally:
        _received.reset(token)


@contextmanager
def continued(name: str, carrier: Mapping[str, Any] | None, attributes: Attributes) -> Iterator[Span]:
    """The span of one unit of work that continues a trace from outside (a command, a partner's push):
    its context is what events written inside it carry, with or without spans being recorded."""
    received = checked(carrier)
    token = _received.set(received)
    try:
        tracer = _tracer()
        if tracer is None:
            yield _NO_SPAN
            return
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(received) if received else Context()
        with _started(tracer, name, attributes, SpanKind.CONSUMER, parent) as started:
            yield started
    finally:
        _received.reset(token)


@contextmanager
def span(name: str, attributes: Attributes, client: bool = False) -> Iterator[Span]:
    """A span of its own, the child of the current one if any (a partner call made by the scheduler is
    a trace of its own)."""
    tracer = _tracer()
    if tracer is None:
        yield _NO_SPAN
        return
    from opentelemetry.trace import SpanKind

    with _started(tracer, name, attributes, SpanKind.CLIENT if client else SpanKind.INTERNAL) as started:
        yield started


@contextmanager
def child_span(name: str, attributes: Attributes) -> Iterator[Span]:
    """A span only inside a traced unit of work: ledger transactions of the relay or the scheduler alone
    would be a flood of one-span traces."""
    tracer = _tracer()
    if tracer is None:
        yield _NO_SPAN
        return
    from opentelemetry.trace import SpanKind, get_current_span

    if not get_current_span().is_recording():
        yield _NO_SPAN
        return
    with _started(tracer, name, attributes, SpanKind.INTERNAL) as started:
        yield started


@contextmanager
def _started(tracer: Any, name: str, attributes: Attributes, kind: Any, parent: Any = None) -> Iterator[Span]:
    """A current span whose failure is recorded by the exception's type alone: its text may hold a
    partner's answer or a connection string."""
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as otel_span:
        started = Span(otel_span)
        try:
            yield started
        except BaseException as error:
            if not started.failed:
                started.fail(type(error).__name__)
            raise
