"""Counting after a scenario: partner orders, tokens, events, settlement and canaries, from the sources.

Partner orders come from the sandbox's own ledger (``/_sandbox/orders``), events from the durable witness
queue (deduplicated on event_id), states and outbox rows straight from the ledger tables, and tokens are
opened with the key and shown to the partner, which must accept them.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.reliability.rig import RelStack, Verdict, open_tokens, scan_for
from tests.support.events import EventWitness, by_command, transition_duplicates
from tests.support.ledger_views import (
    NAMESPACE,
    duplicate_partner_orders,
    is_settled,
    ledger_bytes,
    order_rows,
    outbox_ids,
    partner_orders_by_ref,
)
from tests.support.stack import Sandbox
from worker.partners.base import PartnerError
from worker.partners.zerotrace.client import ZeroTraceClient
from worker.partners.zerotrace.settings import DEVELOPMENT_API_KEY as SANDBOX_ZEROTRACE_API_KEY
from worker.pipeline import partner_ref
from worker.transport import PartnerHttp

FAILPOINT_LINE = re.compile(rb"failpoint (\w+): SIGKILL")


Row = Mapping[str, Any] | None


def completed(row: Row) -> bool:
    return row is not None and row["status"] == "completed"


def settled_as(*statuses: str) -> Callable[[Row], bool]:
    return lambda row: row is not None and row["status"] in statuses


def await_settled_and_drained(
    stack: RelStack,
    witness: EventWitness,
    command_ids: Iterable[str],
    deadline: float,
    *,
    settled: Callable[[Row], bool] = is_settled,
    tick: Callable[[], None] = lambda: time.sleep(0.25),
) -> float:
    """Wait, until ``deadline`` (``time.monotonic()``), for every order to be ``settled`` and then for
    every event committed to the outbox to have reached the witness; ``tick`` runs between looks (a
    supervisor's rounds, a sleep). Returns when the waiting ended: the audit that follows judges how."""
    ids = list(command_ids)

    def orders_settled() -> bool:
        rows = order_rows(stack.ledger_url)
        return all(settled(rows.get(c)) for c in ids)

    def drained() -> bool:
        outbox = outbox_ids(stack.ledger_url)
        seen = {e["event_id"] for e in witness.snapshot()}
        return all(outbox.values()) and set(outbox) <= seen

    for condition in (orders_settled, drained):
        while not condition() and time.monotonic() < deadline:
            tick()
    return time.monotonic()


def settlement(stack: RelStack, command_ids: Iterable[str]) -> dict[str, Any]:
    ids = list(command_ids)
    rows = order_rows(stack.ledger_url)
    statuses = Counter(rows[c]["status"] if c in rows else "missing" for c in ids)
    return {
        "commands": len(ids),
        "statuses": dict(sorted(statuses.items())),
        "missing": statuses.get("missing", 0),
        "unsettled": sum(1 for c in ids if not is_settled(rows.get(c))),
        "untrackable": sum(1 for c in ids if c in rows and rows[c]["untrackable"]),
        "in_doubt": statuses.get("in_doubt", 0),
        "mean_attempts": round(sum(rows[c]["attempts"] for c in ids if c in rows) / max(1, len(ids)), 3),
    }


def event_audit(stack: RelStack, witness: EventWitness, command_ids: Iterable[str]) -> dict[str, Any]:
    """Lost = committed to the outbox but never seen by the witness; one id per transition = the witness
    saw exactly ``event_seq`` distinct events per order and no transition under two ids."""
    ids = list(command_ids)
    rows = order_rows(stack.ledger_url)
    outbox = outbox_ids(stack.ledger_url)
    events = witness.snapshot()
    seen = {e["event_id"] for e in events}
    chains = by_command(events)
    mismatched = [c for c in ids if c in rows and len(chains.get(c, [])) != rows[c]["event_seq"]]
    return {
        "events_committed": len(outbox),
        "events_seen": len(seen),
        "events_lost": sum(1 for event_id in outbox if event_id not in seen),
        "events_unpublished": sum(1 for published in outbox.values() if not published),
        "events_unknown": sum(1 for event_id in seen if event_id not in outbox),
        "event_redeliveries": witness.duplicates,
        "event_id_mismatch": witness.mismatched_ids,
        "orders_with_event_count_mismatch": len(mismatched),
        "transitions_with_two_ids": transition_duplicates(events),
    }


def partner_audit(sandbox: Sandbox, command_ids: Iterable[str]) -> dict[str, Any]:
    duplicates, total = duplicate_partner_orders(sandbox, command_ids)
    return {"partner_orders": total, "duplicate_partner_orders": duplicates}


def token_audit(stack: RelStack, sandbox: Sandbox, command_ids: Iterable[str]) -> dict[str, Any]:
    """Every 0trace order the partner created issued one token. Each must be in the ledger, sealed, and
    accepted by the partner when opened, or the order flagged untrackable; anything else is silent loss."""
    ids = [c for c in command_ids if "-zt-" in c]
    grouped = partner_orders_by_ref(sandbox)
    tokens = open_tokens(stack.ledger(), stack.canaries, ids)
    rows = order_rows(stack.ledger_url)
    issued = stored_ok = flagged = silent = rejected = 0
    with PartnerHttp(connect_timeout=3, read_timeout=10, pool_size=4) as http:
        client = ZeroTraceClient(
            sandbox.url, SANDBOX_ZEROTRACE_API_KEY, SecretStr(stack.canaries.zt_api_secret), http
        )
        for command_id in ids:
            if not grouped.get(partner_ref(NAMESPACE, command_id)):
                continue
            issued += 1
            row = rows.get(command_id)
            token = tokens.get(command_id)
            if token:
                if _partner_accepts(client, row["order_id"] if row else "", token):
                    stored_ok += 1
                else:
                    rejected += 1
            elif row is not None and row["untrackable"]:
                flagged += 1
            else:
                silent += 1
    return {
        "tokens_issued": issued,
        "tokens_stored_and_accepted": stored_ok,
        "tokens_flagged_untrackable": flagged,
        "tokens_lost_silently": silent,
        "tokens_rejected_by_partner": rejected,
        "_tokens": tokens,
    }


def _partner_accepts(client: ZeroTraceClient, order_id: str, token: str) -> bool:
    """The partner answers the order for this token; transient failures (injected 5xx) are asked again."""
    for _ in range(20):
        try:
            client.fetch(order_id, token)
            return True
        except PartnerError as error:
            if not error.retryable:
                return False
            time.sleep(0.05)
    return False


def canary_audit(
    stack: RelStack, events: list[dict[str, Any]], tokens: dict[str, str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Secrets and tokens in logs, events, dead letters, /metrics, exception text; tokens in the ledger."""
    secrets = stack.canaries.secrets()
    token_needles = {f"token:{cid}": token for cid, token in tokens.items() if token}
    texts: dict[str, bytes | str] = {
        **stack.service_logs(),
        **stack.metrics_texts(),
        "events": json.dumps(events),
        "dead_letters": json.dumps(stack.ledger().dead_letters(100_000), default=str),
    }
    for name, value in (extra or {}).items():
        texts[name] = value if isinstance(value, bytes | str) else json.dumps(value, default=str)
    leaks = scan_for(texts, {**secrets, **token_needles})
    stored = ledger_bytes(stack.ledger_url)
    ledger_leaks = scan_for(stored, {**secrets, **token_needles})
    return {
        "canary_needles": len(secrets) + len(token_needles),
        "canary_leaks": len(leaks) + len(ledger_leaks),
        "canary_leak_places": sorted(set(leaks + ledger_leaks))[:10],
        "scanned_bytes": sum(len(v) for v in texts.values()) + sum(len(v) for v in stored.values()),
    }


def security_audit(stack: RelStack, witness: EventWitness, command_ids: Iterable[str]) -> dict[str, Any]:
    """The canary scan alone (tokens opened from the ledger, not shown to the partner): for scenarios whose
    partner budget or faults make extra partner calls unwelcome."""
    tokens = open_tokens(stack.ledger(), stack.canaries, [c for c in command_ids if "-zt-" in c])
    return canary_audit(stack, witness.snapshot(), tokens)


def failpoints_fired(log_paths: Iterable[Path]) -> dict[str, int]:
    fired: Counter[str] = Counter()
    for path in log_paths:
        for match in FAILPOINT_LINE.finditer(path.read_bytes()):
            fired[match.group(1).decode()] += 1
    return dict(sorted(fired.items()))


def judge_core(verdict: Verdict, counts: dict[str, Any]) -> None:
    """The criteria every scenario shares (when the counts are present)."""
    if "duplicate_partner_orders" in counts:
        verdict.check("no_duplicate_partner_orders", counts["duplicate_partner_orders"] == 0)
    if "events_lost" in counts:
        verdict.check("no_lost_events", counts["events_lost"] == 0 and counts["events_unpublished"] == 0)
        verdict.check(
            "one_event_id_per_transition",
            counts["orders_with_event_count_mismatch"] == 0 and counts["transitions_with_two_ids"] == 0,
        )
    if "tokens_lost_silently" in counts:
        verdict.check(
            "tokens_stored_or_flagged",
            counts["tokens_lost_silently"] == 0 and counts["tokens_rejected_by_partner"] == 0,
        )
    if "canary_leaks" in counts:
        verdict.check("no_canary_leaks", counts["canary_leaks"] == 0)
    if "missing" in counts:
        verdict.check("no_lost_commands", counts["missing"] == 0)
        verdict.check("all_final_or_flagged", counts["unsettled"] == 0)


def full_audit(
    verdict: Verdict, stack: RelStack, sandbox: Sandbox, witness: EventWitness, command_ids: list[str]
) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    counts.update(settlement(stack, command_ids))
    counts.update(partner_audit(sandbox, command_ids))
    tokens = token_audit(stack, sandbox, command_ids)
    plaintexts = tokens.pop("_tokens")
    counts.update(tokens)
    counts.update(event_audit(stack, witness, command_ids))
    counts.update(canary_audit(stack, witness.snapshot(), plaintexts))
    verdict.count(**counts)
    judge_core(verdict, counts)
    return counts
