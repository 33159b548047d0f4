"""Demo orders through the running compose stack, and what its Prometheus says about it.

Called by deploy/compose-check.sh once ``docker compose up --wait`` is healthy. Orders go in through the
project's producer on the stack's broker; the verdicts come from the events exchange, the stack's ledger,
its sandbox and its Prometheus (targets and alert rules).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from image_roles import Failed, Verdicts, Witness, example_commands, wait_until
from order_worker_client.producer import CommandProducer

from worker.pipeline import partner_ref
from worker.status import TERMINAL

ROLES = ("worker", "scheduler", "webhooks")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback URLs from the script
        return json.loads(response.read())


def orders(args: argparse.Namespace, v: Verdicts) -> None:
    uid = uuid.uuid4().hex[:8]
    commands = example_commands(f"compose-{uid}", args.orders)
    ids = {c["command_id"] for c in commands}
    witness = Witness("orders.events", args.broker, queue=f"orders.events.compose-check-{uid}")
    started = time.monotonic()
    try:
        with CommandProducer(args.broker, "orders.create", "orders.poll") as producer:
            for command in commands:
                producer.create_order(command)

        def statuses() -> Counter[str]:
            with psycopg.connect(args.ledger) as connection:
                rows: dict[str, str] = dict(
                    connection.execute("SELECT command_id, status FROM orders").fetchall()
                )
            return Counter(rows.get(c, "missing") for c in ids)

        def done() -> bool:
            return sum(n for s, n in statuses().items() if s in TERMINAL) == len(ids)

        with contextlib.suppress(Failed):  # the verdict below says what is missing
            wait_until(done, args.timeout, "the demo orders to complete", 1)
        counts = statuses()
        terminal = sum(n for s, n in counts.items() if s in TERMINAL)
        v.add(
            terminal == len(ids),
            f"compose: {terminal}/{len(ids)} demo orders terminal in {time.monotonic() - started:.0f} s"
            f" {dict(counts)}",
        )
        time.sleep(2)  # the relay's last events
        events = [e for e in witness.snapshot() if e.get("command_id") in ids]
        created = Counter(e["command_id"] for e in events if e["type"] == "created")
        keys = Counter(
            (e["command_id"], e["type"], e.get("previous_status"), e.get("status")) for e in events
        )
        v.add(
            all(created[c] == 1 for c in ids) and all(n == 1 for n in keys.values()),
            f"compose: {len(events)} events, one `created` per command"
            f" ({sum(1 for c in ids if created[c] == 1)}/{len(ids)}), one event id per transition",
        )
        answer = get_json(f"{args.sandbox}/_sandbox/orders")
        partner = Counter(
            str(o.get("idempotency_key") or o.get("out_trade_no"))
            for o in (answer["orders"] if isinstance(answer, dict) else answer)
        )
        per_command = [partner.get(partner_ref(args.namespace, c), 0) for c in ids]
        v.add(
            all(n == 1 for n in per_command),
            f"compose: one partner order per command ({sum(per_command)} for {len(ids)})",
        )
    finally:
        witness.close(delete=True)


def prometheus(args: argparse.Namespace, v: Verdicts) -> None:
    def targets() -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = get_json(f"{args.prometheus}/api/v1/targets")["data"]["activeTargets"]
        return active

    def all_up() -> bool:
        return all(t["health"] == "up" for t in targets())

    with contextlib.suppress(Failed):  # the verdict below lists them
        wait_until(all_up, 60, "every Prometheus target up", 1)
    found = targets()
    health = {f"{t['labels']['job']}/{t['labels'].get('component', '-')}": t["health"] for t in found}
    roles = {t["labels"].get("component") for t in found if t["labels"]["job"] == "order-worker"}
    v.add(
        set(ROLES) <= roles and all(h == "up" for h in health.values()),
        f"compose: Prometheus targets {health}",
    )
    groups = get_json(f"{args.prometheus}/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    unhealthy = [r["name"] for r in rules if r.get("health") not in ("ok", "unknown")]
    expected = Path(args.alerts).read_text().count("- alert:")
    v.add(
        len(rules) == expected and not unhealthy,
        f"compose: alert rules loaded: {len(rules)} of {expected} in {len(groups)} groups"
        f" (/api/v1/rules), {len(unhealthy)} unhealthy {unhealthy}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--alerts", required=True, help="the rule file Prometheus should have loaded")
    parser.add_argument("--namespace", default="compose", help="the stack's idempotency namespace")
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--verdicts", type=Path, required=True)
    args = parser.parse_args()
    v = Verdicts(args.verdicts)
    try:
        orders(args, v)
        prometheus(args, v)
    except Exception as exc:  # noqa: BLE001 - any failure is a verdict, never a silent pass
        v.add(False, f"compose: aborted: {exc!r}")
    return 1 if v.failed else 0


if __name__ == "__main__":
    sys.exit(main())
