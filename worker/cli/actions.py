"""``order-worker emergency``: an operator's choice on an order the partner holds (``action_required``).

It publishes a ``resolve_order`` command like any producer would, so the choice takes the worker's path
(intent in the ledger first, one event per transition) instead of a side door around it: the order's
secret stays sealed inside the service, and the command is all an operator sends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from typing import Any

from pydantic import ValidationError

from worker.cli.common import load_settings
from worker.status import TERMINAL

ANSWERED = 0
REFUSED = 1
INVALID = 2
NO_ANSWER = 3


def cmd_emergency(args: argparse.Namespace) -> int:
    from order_worker_client.producer import CommandProducer

    from worker import tracing
    from worker.bus.topology import declare_work_queues
    from worker.bus.watcher import EventWatcher
    from worker.messages import ResolveOrderCommand
    from worker.pipeline import validation_summary

    settings = load_settings()
    kwargs: dict[str, Any] = {
        "action_id": args.action_id or f"act-{uuid.uuid4().hex[:16]}",
        "command_id": args.command_id,
        "choice": args.choice,
    }
    if args.note:
        kwargs["note"] = args.note
    try:
        command = ResolveOrderCommand.model_validate(kwargs)
    except ValidationError as error:
        print(f"order-worker emergency: invalid command: {validation_summary(error)}", file=sys.stderr)
        return INVALID
    broker_url = settings.bus.broker_url.get_secret_value()
    with contextlib.ExitStack() as stack:
        # Bound before publishing, so no answer can slip past between the two.
        watcher = (
            stack.enter_context(EventWatcher(broker_url, settings.bus.events_exchange)) if args.wait else None
        )
        producer = stack.enter_context(
            CommandProducer(
                settings.bus.broker_urls(),
                settings.bus.create_queue,
                settings.bus.poll_queue,
                settings.bus.actions_queue,
                trace_context=tracing.current,
            )
        )
        declare_work_queues(producer.channel, [settings.bus.actions_queue], settings.bus.delivery_limit)
        producer.resolve_order(command)
        print(
            json.dumps(
                {"submitted": command.action_id, "command_id": command.command_id, "choice": command.choice}
            )
        )
        if watcher is None:
            return ANSWERED
        return _follow(watcher, command.action_id, command.command_id, args.wait)
    return ANSWERED  # pragma: no cover - the with block always returns


def _follow(watcher: Any, action_id: str, command_id: str, timeout: float) -> int:
    """Print the order's events until the action is refused or the order ends; the exit code says which."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    answer: int | None = None
    for item in watcher.events(inactivity_timeout=0.5):
        if time.monotonic() > deadline:
            break
        if item is None:
            continue
        event = item[1]
        if event.get("command_id") != command_id or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        print(json.dumps(event), flush=True)
        ours = (event.get("action") or {}).get("action_id") == action_id
        if ours and event["type"] == "rejected":
            return REFUSED
        if ours and event["type"] == "action_accepted":
            answer = ANSWERED
        if event.get("status") in TERMINAL:
            return ANSWERED if answer is None else answer
    if answer is None:
        print(f"order-worker emergency: no answer within {timeout:g} s", file=sys.stderr)
        return NO_ANSWER
    return answer


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "emergency",
        help="resolve an action_required order with a choice its partner accepts (0trace: EXCHANGE)",
        description="Publishes a resolve_order command for the order created by COMMAND_ID and prints the "
        "action's id. The worker records the intent, sends the choice to the partner and answers with an "
        "action_accepted or a rejected event (with a reason when the order is not action_required).",
    )
    p.add_argument("command_id", metavar="COMMAND_ID", help="the create command of the order")
    p.add_argument("--choice", default="EXCHANGE", help="the partner's choice (default: EXCHANGE)")
    p.add_argument(
        "--action-id", help="the action's own id, for a safe retry of this command (default: random)"
    )
    p.add_argument("--note", help="who decided and why, kept with the action")
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="print the order's events until the action is refused or the order ends, at most SECONDS",
    )
    p.set_defaults(func=cmd_emergency)
