"""Dramatiq actors: thin adapters from messages to the pipeline.

Validation failures are answered inside the actor (a ``rejected`` event) and the message is acked, so
bad input is never retried. A ledger that is out (unreachable, or its disk full) is waited for: the
command is held, and handled again once the ledger answers, so an outage spends neither retries nor
deliveries; held past ``ledger_outage_hold_seconds``, it goes back to the queue without counting a retry.
Other infrastructure failures raise, and those are retried by Dramatiq's Retries middleware and, past
that, dead-lettered.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dramatiq
from dramatiq.middleware import CurrentMessage
from dramatiq.middleware.prometheus import Prometheus
from order_worker_client.quotes import QUOTE_REPLY

from worker import failpoints, metrics, tracing
from worker.bus.broker import RestartableTimeLimit, build_broker
from worker.bus.envelope import REJECT_ACTOR, RESOLVE_ACTOR
from worker.bus.quotes import QuoteConsumer, QuoteServing
from worker.ledger import outage
from worker.logs import command_scope
from worker.messages import COMMAND_ID_PATTERN
from worker.quotes import QuoteCache, QuoteService
from worker.resolution import handle_resolve
from worker.runtime import get_runtime
from worker.settings import Settings, get_settings


class DramatiqMetrics(Prometheus):
    @property
    def forks(self) -> list[Callable[[], int]]:
        return []


_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)
T = TypeVar("T")

failpoints.hit("worker_boot")
_settings = get_settings()
broker = build_broker(_settings)
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Dramatiq's own message metrics; their exposition is served by worker.observability, not its fork.
    broker.add_middleware(DramatiqMetrics())
for _middleware in broker.middleware:
    if isinstance(_middleware, RestartableTimeLimit):
        outage.on_every_wait(_middleware.restart)


def _held(actor: str, handle: Callable[[], T]) -> T:
    """``handle()``, held and tried again while the ledger is out (see the module's docstring)."""
    deadline = time.monotonic() + _settings.ledger.ledger_outage_hold_seconds
    return get_runtime().pipeline.waiter.hold(handle, f"a {actor} command", deadline)


def _quote_consumer(settings: Settings) -> QuoteConsumer:
    """The quote service of this worker process, on its own connection; the runtime (partners, budgets)
    is the process's, built on the first request."""
    cache = QuoteCache(settings.quotes.quote_cache_seconds)
    service: list[QuoteService] = []

    def handle(body: bytes, waited: float) -> bytes:
        if not service:
            pipeline = get_runtime().pipeline
            service.append(QuoteService(pipeline.partners, pipeline.budgets, cache))
        return QUOTE_REPLY.dump_json(service[0].answer(body, waited))

    return QuoteConsumer(
        settings.bus.broker_url.get_secret_value(),
        settings.bus.quotes_queue,
        handle,
        settings.quotes.quote_threads,
    )


if _settings.quotes.quotes_enabled:
    broker.add_middleware(QuoteServing(lambda: _quote_consumer(_settings)))


def _subject(kwargs: dict[str, Any]) -> str | None:
    """The command_id, for failpoints that target one command (never used for anything else)."""
    command_id = kwargs.get("command_id")
    return command_id if isinstance(command_id, str) else None


def _message_id_and_wait(actor: str) -> str:
    message = CurrentMessage.get_current_message()
    if message is None:
        return "direct"
    waited = max(0.0, time.time() - message.message_timestamp / 1000)
    metrics.child(metrics.COMMAND_WAIT, actor).observe(waited)
    return str(message.message_id)


@contextmanager
def _command_span(actor: str, kwargs: dict[str, Any]) -> Iterator[tracing.Span]:
    """The command's span, continuing the trace its envelope names (``options.trace_context``)."""
    message = CurrentMessage.get_current_message()
    options = message.options if message is not None else {}
    attributes: dict[str, str | int] = {"messaging.system": "rabbitmq", "messaging.operation.type": "process"}
    if message is not None:
        attributes["messaging.destination.name"] = message.queue_name
        attributes["messaging.message.id"] = str(message.message_id)
        attributes["order_worker.retries"] = int(options.get("retries", 0))
    command_id = _subject(kwargs)
    if command_id is not None and _COMMAND_ID.fullmatch(command_id):
        attributes["order_worker.command_id"] = command_id
    with tracing.continued(f"order-worker {actor}", options.get("trace_context"), attributes) as span:
        yield span


@contextmanager
def _handling(actor: str, kwargs: dict[str, Any]) -> Iterator[tuple[str, tracing.Span]]:
    """One command's context: its message id (its wait measured), its log fields, its span."""
    message_id = _message_id_and_wait(actor)
    with command_scope(actor=actor, message_id=message_id), _command_span(actor, kwargs) as span:
        yield message_id, span


@dramatiq.actor(actor_name="create_order", queue_name=_settings.bus.create_queue, max_retries=5)
def create_order(*args: Any, **kwargs: Any) -> None:
    failpoints.hit("on_message", _subject(kwargs))
    with _handling("create_order", kwargs) as (message_id, span):
        outcome = _held("create_order", lambda: get_runtime().pipeline.handle_create(kwargs, message_id))
        span.set("order_worker.outcome", outcome.name)
    metrics.child(metrics.COMMANDS, "create_order", outcome.name).inc()
    failpoints.hit("before_ack")


@dramatiq.actor(actor_name="poll_order", queue_name=_settings.bus.poll_queue, max_retries=3)
def poll_order(*args: Any, **kwargs: Any) -> None:
    failpoints.hit("on_message", _subject(kwargs))
    with _handling("poll_order", kwargs) as (message_id, span):
        outcome = _held("poll_order", lambda: get_runtime().pipeline.handle_poll(kwargs, message_id))
        span.set("order_worker.outcome", outcome.name)
    metrics.child(metrics.COMMANDS, "poll_order", outcome.name).inc()
    failpoints.hit("after_poll")


@dramatiq.actor(actor_name=REJECT_ACTOR, queue_name=_settings.bus.create_queue, max_retries=5)
def reject_malformed(
    code: str, reason: str, body_sha256: str, body_bytes: int, command_id: str | None = None
) -> None:
    with (
        command_scope(actor=REJECT_ACTOR, command_id=command_id, code=code),
        _command_span(REJECT_ACTOR, {"command_id": command_id}) as span,
    ):
        detail = {"body_sha256": body_sha256, "body_bytes": body_bytes}
        outcome = _held(
            REJECT_ACTOR, lambda: get_runtime().pipeline.handle_malformed(code, reason, detail, command_id)
        )
        span.set("order_worker.outcome", outcome.name)
    metrics.child(metrics.COMMANDS, REJECT_ACTOR, outcome.name).inc()


@dramatiq.actor(actor_name=RESOLVE_ACTOR, queue_name=_settings.bus.actions_queue, max_retries=8)
def resolve_order(*args: Any, **kwargs: Any) -> None:
    """An operator's choice on an order; ``ActionDeferred`` (raised by the flow) is retried with backoff."""
    failpoints.hit("on_message", _subject(kwargs))
    with _handling(RESOLVE_ACTOR, kwargs) as (message_id, span):
        outcome = _held(RESOLVE_ACTOR, lambda: handle_resolve(get_runtime().pipeline, kwargs, message_id))
        span.set("order_worker.outcome", outcome.name)
    metrics.child(metrics.COMMANDS, RESOLVE_ACTOR, outcome.name).inc()
