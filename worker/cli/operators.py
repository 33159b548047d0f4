"""Operator commands that act or describe: submit a command, settle an in_doubt order, write the JSON
Schemas, list every setting (the commands that look at orders and events are in ``inspection``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.cli.common import load_settings, open_ready_ledger, unreachable_broker
from worker.partners import registry
from worker.settings import GROUPS, SettingDoc, describe


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"order-worker submit: --param takes KEY=VALUE, got {pair!r}")
        params[key] = (
            int(value)
            if value.isdigit() and key in {"energy_amount", "active", "exclusive", "afftax"}
            else value
        )
    return params


def cmd_submit(args: argparse.Namespace) -> int:
    from order_worker_client.producer import CommandProducer

    from worker import tracing
    from worker.messages import CreateOrderCommand

    settings = load_settings()
    params = json.loads(args.params_json) if args.params_json else _parse_params(args.param)
    kwargs: dict[str, Any] = {
        "command_id": args.command_id or f"cli-{uuid.uuid4().hex[:16]}",
        "provider": args.provider,
        "params": params,
    }
    if args.ref_code:
        kwargs["ref_code"] = args.ref_code
    if args.meta:
        kwargs["metadata"] = dict(item.split("=", 1) for item in args.meta)
    try:
        registry.check_command(CreateOrderCommand.model_validate(kwargs))
    except registry.UnknownPartnerError as error:
        print(f"order-worker submit: invalid command: provider: {error}", file=sys.stderr)
        return 2
    except (ValidationError, ValueError) as error:
        from worker.pipeline import validation_summary

        reason = validation_summary(error) if isinstance(error, ValidationError) else str(error)
        print(f"order-worker submit: invalid command: {reason}", file=sys.stderr)
        return 2
    with (
        unreachable_broker("submit", settings),
        CommandProducer(
            settings.bus.broker_urls(),
            settings.bus.create_queue,
            settings.bus.poll_queue,
            trace_context=tracing.current,
        ) as producer,
    ):
        for _ in range(args.times):
            producer.create_order(kwargs, validate=False)
    print(json.dumps({"submitted": kwargs["command_id"], "times": args.times}))
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    """Operator decision on an in_doubt order, recorded as an event (source ``reconcile``)."""
    from worker.runtime import get_runtime

    open_ready_ledger("resolve").close()
    runtime = get_runtime()
    record = runtime.ledger.get(args.command_id)
    if record is None or record.status != "in_doubt":
        state = "unknown" if record is None else record.status
        print(f"order-worker resolve: {args.command_id!r} is not in_doubt (it is {state})", file=sys.stderr)
        return 1
    observation = None
    if args.serial:
        try:
            observation = runtime.pipeline.read_by_order_id(record.provider, args.serial, record.account)
        except (ValueError, LookupError) as error:
            print(f"order-worker resolve: --serial: {error}", file=sys.stderr)
            return 2
    note = args.note or (
        "abandoned by operator" if args.abandon else f"operator matched partner order {args.serial}"
    )
    events = runtime.ledger.resolve_in_doubt(args.command_id, observation, note, time.time())
    for event in events:
        print(event.model_dump_json())
    runtime.close()
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from worker.schemas import render_asyncapi, write_schemas

    if args.asyncapi:
        sys.stdout.write(render_asyncapi())
        return 0
    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


@dataclasses.dataclass(frozen=True)
class SettingsSection:
    group: str
    about: str
    settings: list[SettingDoc]


def settings_reference() -> list[SettingsSection]:
    """Every setting this installation reads, by group: the core ones, then each installed partner's."""
    sections = [
        SettingsSection(name, (group.__doc__ or "").strip(), describe(group))
        for name, group in GROUPS.items()
    ]
    for name in registry.names():
        about = f"The {name} partner's group."
        sections.append(SettingsSection(name, about, describe(registry.get(name).settings_model)))
    return sections


def settings_markdown(sections: list[SettingsSection]) -> str:
    """The reference as Markdown tables, as the README embeds it."""
    lines = []
    for section in sections:
        lines += [
            f"**{section.group}**: {section.about}",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        for doc in section.settings:
            meaning = doc.description.replace("|", "\\|") + (" Secret." if doc.secret else "")
            lines.append(f"| `{doc.variable}` | {doc.default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def cmd_settings(args: argparse.Namespace) -> int:
    sections = settings_reference()
    if not args.json:
        print(settings_markdown(sections), end="")
        return 0
    for section in sections:
        for doc in section.settings:
            print(json.dumps({"group": section.group, **dataclasses.asdict(doc)}))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("submit", help="publish a create_order command")
    p.add_argument("--provider", choices=registry.names(), required=True, help="an installed partner")
    p.add_argument("--command-id", help="8..128 chars of [A-Za-z0-9._:-] (default: random)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a create field (repeatable)"
    )
    p.add_argument("--params-json", help="all create fields as one JSON object")
    p.add_argument("--ref-code", help="a partner reference code, for partners that take one (0trace)")
    p.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata echoed in events"
    )
    p.add_argument("--times", type=int, default=1, help="publish the same command N times (idempotency demo)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "resolve", help="resolve an in_doubt order: the partner order it created (--order-id) or abandon"
    )
    p.add_argument("command_id")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--order-id",
        "--serial",
        dest="serial",
        help="the partner's order id this command created, e.g. an itrx serial (it is read, then recorded)",
    )
    group.add_argument(
        "--abandon", action="store_true", help="no partner order exists: mark the order failed"
    )
    p.add_argument("--note", help="audit note carried in the event's error.reason (abandon) or logs")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser(
        "settings",
        help="list every setting: variable, default, meaning (secrets: whether a default exists)",
        description="Every ORDER_WORKER_* variable this installation reads, the partners' included, with "
        "its default and meaning. Values are also read from files named like the variables, lower case, in "
        "ORDER_WORKER_SECRETS_DIR (default /run/secrets).",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per setting instead of tables")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser(
        "schemas",
        help="write the AsyncAPI document and the JSON Schemas of commands and events",
        description="The message contract, generated from the models this installation runs (its partner "
        "plug-ins included): asyncapi.json (AsyncAPI 3.0: queues, the events exchange and its arguments, "
        "messages, AMQP properties, examples) and one JSON Schema per command and event.",
    )
    p.add_argument("--asyncapi", action="store_true", help="print the AsyncAPI document to stdout instead")
    p.add_argument(
        "--out",
        default=".",
        metavar="DIR",
        help="directory to write them to (default: the current one; the package carries its own copy)",
    )
    p.set_defaults(func=cmd_schemas)
