"""Reading events from ``orders.events``: the demo's printer and the tests' witness.

Consumers must dedupe on ``message_id`` (= event_id): delivery is at-least-once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from worker.bus.connection import BlockingLink
from worker.bus.topology import declare_events_exchange


def event_line(routing_key: str, event: dict[str, Any]) -> str:
    """One event as a person reads it in a terminal: what changed, for which command, seen by whom."""
    return (
        f"event {routing_key:<28} {event.get('command_id') or '-':<18} "
        f"{event.get('previous_status') or '-':>16} -> {event.get('status')!s:<16} "
        f"({event.get('source')}, id {str(event.get('event_id'))[:8]})"
    )


class EventWatcher:
    """Binds a queue to the events exchange; an exclusive auto-deleted one unless ``queue`` is named.

    The channel is opened once and never again: an exclusive queue lives and dies with its connection, so a
    watcher whose connection broke has lost its events and must be made anew."""

    def __init__(
        self, broker_url: str, exchange: str = "orders.events", binding: str = "#", queue: str = ""
    ) -> None:
        self._link = BlockingLink(broker_url)
        self.channel = self._link.open()
        declare_events_exchange(self.channel, exchange)
        durable = bool(queue)
        result = self.channel.queue_declare(
            queue, durable=durable, exclusive=not durable, auto_delete=not durable
        )
        self.queue = result.method.queue
        self.channel.queue_bind(self.queue, exchange, routing_key=binding)

    def __enter__(self) -> EventWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._link.close()

    def events(self, inactivity_timeout: float = 1.0) -> Iterator[tuple[str, dict[str, Any]] | None]:
        """Yields (routing_key, body) per event, or None after ``inactivity_timeout`` seconds of silence."""
        for method, _properties, body in self.channel.consume(
            self.queue, inactivity_timeout=inactivity_timeout
        ):
            if method is None:
                yield None
                continue
            # Acknowledged once the reader asks for the next one: an event it never got back from (it
            # raised, or the process died) is still the broker's to deliver again.
            yield method.routing_key, json.loads(body)
            self.channel.basic_ack(method.delivery_tag)
