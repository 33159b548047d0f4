"""Operator commands that look: one order, lists of orders by state, dead letters, live events, and a
replay of stored events.

Each reads the ledger only once it is known to be migrated, so pointing a command at the wrong place says
so in one line instead of leaving an empty SQLite file and a traceback behind. Each prints lines for a
person by default and JSON with ``--json``, one object per line, for scripts; no output carries a token.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from typing import Any

from worker.cli.common import load_settings, open_ready_ledger, unreachable_broker
from worker.ledger.base import EventQuery, Ledger, OrderQuery, OrderRecord, OutboxRow
from worker.partners import registry
from worker.status import Status

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LISTED_STATUSES = (*(status.value for status in Status), "untrackable")


def duration(text: str) -> float:
    """``90s``, ``10m``, ``2h``, ``7d`` as seconds (argparse type: a bad value is a usage error)."""
    found = _DURATION.match(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 10m, 2h or 7d")
    return float(found.group(1)) * _UNITS[found.group(2)]


def moment(text: str) -> float:
    """An ISO 8601 time (``2026-12-06T10:00:00Z``) or a duration ago (``2h``) as unix seconds."""
    try:
        return time.time() - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO 8601 time nor a duration ago") from None


def _cursor(text: str) -> tuple[float, str]:
    at, sep, key = text.partition("/")
    try:
        if sep and key:
            return float(at), key
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a cursor printed by a previous page")


def order_view(record: OrderRecord) -> dict[str, Any]:
    """What an operator may see of an order: everything but the sealed token (only whether one is kept)."""
    return {
        "command_id": record.command_id,
        "provider": record.provider,
        "status": record.status,
        "provider_status": record.provider_status,
        "order_id": record.order_id,
        "untrackable": record.untrackable,
        "token_stored": record.sealed_token is not None,
        "attempts": record.attempts,
        "last_error": record.last_error.model_dump() if record.last_error else None,
        "next_action_at": record.next_action_at,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "order": record.order,
    }


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def cmd_status(args: argparse.Namespace) -> int:
    ledger = open_ready_ledger("status")
    record = ledger.get(args.command_id)
    ledger.close()
    if record is None:
        print(f"order-worker status: no order for command_id {args.command_id!r}", file=sys.stderr)
        return 1
    view = order_view(record)
    if args.json:
        print(json.dumps(view))
        return 0
    for key, value in view.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"{key + ':':<17} {'-' if value is None else shown}")
    return 0


def cmd_orders(args: argparse.Namespace) -> int:
    query = OrderQuery(
        statuses=tuple(args.status),
        provider=args.provider,
        changed_before=time.time() - args.older_than if args.older_than is not None else None,
        after=args.after,
        limit=args.limit,
    )
    ledger = open_ready_ledger("orders")
    records = ledger.list_orders(query)
    ledger.close()
    now = time.time()
    if args.json:
        for record in records:
            print(json.dumps(order_view(record)))
    else:
        print(
            f"{'command_id':<36} {'provider':<8} {'status':<17} {'partner order':<36} "
            f"{'changed':>7}  last error"
        )
        for record in records:
            status = record.status + (" (untrackable)" if record.untrackable else "")
            error = f"{record.last_error.code}: {record.last_error.reason}" if record.last_error else ""
            print(
                f"{record.command_id:<36} {record.provider:<8} {status:<17} {record.order_id or '-':<36} "
                f"{_age(now - record.updated_at):>7}  {error[:60]}"
            )
    if len(records) == query.limit:
        last = records[-1]
        print(f"more: --after {last.updated_at!r}/{last.command_id}", file=sys.stderr)
    elif not args.json:
        print(f"{len(records)} orders", file=sys.stderr)
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    ledger = open_ready_ledger("dead-letters")
    rows = ledger.dead_letters(args.limit)
    ledger.close()
    for row in rows:
        if args.json:
            print(json.dumps(row, default=str))
        else:
            when = datetime.fromtimestamp(float(row["created_at"])).isoformat(timespec="seconds")
            print(
                f"{when}  {row['code']:<20} {row['command_id'] or '-':<36} {row['provider'] or '-':<8} "
                f"{row['reason']}"
            )
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """Watches until interrupted. A watcher's queue lives and dies with its connection, so when that breaks
    (its node failed) a new watcher is made on whichever node answers, saying on stderr that events
    published meanwhile are not shown; when no node answers, the command exits 2."""
    from pika.exceptions import AMQPChannelError, AMQPConnectionError

    from worker.bus.watcher import EventWatcher, event_line

    settings = load_settings()
    with unreachable_broker("events", settings):
        while True:
            with EventWatcher(
                settings.bus.broker_url.get_secret_value(), settings.bus.events_exchange, args.binding
            ) as watcher:
                try:
                    for item in watcher.events():
                        if item is not None:
                            print(json.dumps(item[1]) if args.json else event_line(*item), flush=True)
                except (AMQPConnectionError, AMQPChannelError) as error:
                    print(
                        f"order-worker events: connection lost ({type(error).__name__}); reconnecting, "
                        "events published meanwhile are not shown",
                        file=sys.stderr,
                    )
                    continue
            return 0


def _events_to_replay(ledger: Ledger, args: argparse.Namespace) -> list[OutboxRow]:
    """Every stored event the filters select, oldest first; by status, the events of each order in it."""
    command_ids: list[str | None] = list(args.command_id)
    if args.status:
        after = None
        while True:
            query = OrderQuery(statuses=(args.status,), provider=args.provider, after=after)
            orders = ledger.list_orders(query)
            command_ids += [record.command_id for record in orders]
            if len(orders) < query.limit:
                break
            after = (orders[-1].updated_at, orders[-1].command_id)
    if not command_ids:
        command_ids = [None]
    rows: list[OutboxRow] = []
    for command_id in command_ids:
        cursor = None
        while True:
            events = EventQuery(command_id=command_id, since=args.since, until=args.until, after=cursor)
            page = ledger.stored_events(events)
            rows += page
            if len(page) < events.limit:
                break
            cursor = (page[-1].created_at, page[-1].event_id)
    return sorted(rows, key=lambda row: (row.created_at, row.event_id))


def cmd_republish(args: argparse.Namespace) -> int:
    from worker.bus.relay import EventPublisher

    if not (args.command_id or args.since or args.status):
        print("order-worker republish: say which events: --command-id, --since or --status", file=sys.stderr)
        return 2
    settings = load_settings()
    ledger = open_ready_ledger("republish")
    rows = _events_to_replay(ledger, args)
    ledger.close()
    target = f"queue {args.to_queue}" if args.to_queue else f"exchange {settings.bus.events_exchange}"
    if args.dry_run or not rows:
        print(json.dumps({"events": len(rows), "to": target, "sent": 0}))
        return 0
    publisher = EventPublisher(
        settings.bus.broker_url.get_secret_value(), settings.bus.events_exchange, args.to_queue
    )
    sent = refused = 0
    with unreachable_broker("republish", settings):
        try:
            for start in range(0, len(rows), 200):
                outcomes = publisher.publish(rows[start : start + 200])
                sent += outcomes.count(True)
                refused += outcomes.count(False)
        finally:
            publisher.close()
    print(json.dumps({"events": len(rows), "to": target, "sent": sent, "refused": refused}))
    if refused:
        print(
            f"order-worker republish: the broker could not route {refused} events"
            + (f" (does queue {args.to_queue!r} exist?)" if args.to_queue else ""),
            file=sys.stderr,
        )
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show one order from the ledger (never the token)")
    p.add_argument("command_id")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "orders",
        help="list orders by state, oldest change first (in_doubt, action_required, untrackable, ...)",
        description="List orders from the ledger, oldest change first, one page at a time; never a token. "
        "A full page ends with the --after value of the next one (on standard error).",
    )
    p.add_argument(
        "--status", action="append", default=[], choices=LISTED_STATUSES, help="repeatable; default: any"
    )
    p.add_argument("--provider", choices=registry.names())
    p.add_argument("--older-than", type=duration, metavar="DURATION", help="last change longer ago, e.g. 10m")
    p.add_argument("--limit", type=int, default=50, help="orders per page (default 50)")
    p.add_argument("--after", type=_cursor, metavar="CURSOR", help="the next page, as printed by the last")
    p.add_argument("--json", action="store_true", help="one JSON object per order")
    p.set_defaults(func=cmd_orders)

    p = sub.add_parser("dead-letters", help="list rejected commands with their reasons, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per rejection")
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser("events", help="print events from the events exchange as they arrive")
    p.add_argument("--binding", default="#", help="routing-key pattern, e.g. 'order.0trace.*'")
    p.add_argument("--json", action="store_true", help="each event's JSON body, one per line")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser(
        "republish",
        help="send stored events again, with their original event ids (consumers dedupe on them)",
        description="Send events kept in the ledger again, unchanged (same event id and body), with "
        "publisher confirms: to the events exchange, or to one existing queue with --to-queue so that only "
        "that consumer receives them. Events are kept for ORDER_WORKER_RETENTION_SECONDS after publication.",
    )
    p.add_argument("--command-id", action="append", default=[], help="the events of this order (repeatable)")
    p.add_argument(
        "--since", type=moment, metavar="TIME", help="events from TIME (ISO 8601, or a duration ago: 2h)"
    )
    p.add_argument("--until", type=moment, metavar="TIME", help="events before TIME")
    p.add_argument("--status", choices=LISTED_STATUSES, help="the events of every order now in this state")
    p.add_argument("--provider", choices=registry.names(), help="with --status: one partner's orders")
    p.add_argument("--to-queue", metavar="QUEUE", help="an existing queue instead of the exchange")
    p.add_argument("--dry-run", action="store_true", help="count the events, send nothing")
    p.set_defaults(func=cmd_republish)
