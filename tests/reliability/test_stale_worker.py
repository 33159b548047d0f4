"""Scenario: a worker is stopped (SIGSTOP) mid-call past its lease, another worker takes its orders over,
and the stopped one comes back (SIGCONT) to attempts that are no longer its own.

Partner creates are slowed (``A_LATENCY_S``, ``LATENCY_S``) so that every create of worker A is out when
A is stopped. A's leases (``LEASE_S``) end while it is stopped; the scheduler re-drives the orders and
worker B takes them over: for 0trace B sends the create again with the same Idempotency-Key (its call is
slowed too), for itrx B finds A's attempt unresolved and parks the order in_doubt without a call. A is
resumed once its answer deadline (``READ_TIMEOUT_S``) has passed and while B's 0trace calls are still
out. For 0trace A then wakes to time outs: a retry scheduled on one would end B's live attempt and let a
third attempt go out beside it. For itrx A wakes to its answers, which must not rewrite the order B
parked (the partner's callback, let through only now, settles it). Every partner request goes through a
recording proxy.

Counted from the sources: create requests per Idempotency-Key / out_trade_no on the wire, the partner
orders in the sandbox's ledger, the ledger's recorded partner order per command against the sandbox's,
events from the witness queue. Criteria: no create request beyond A's and B's (0trace) or A's (itrx),
one partner order per command and it is the one the ledger recorded, each transition published once,
A logged every one of its attempts as stale (and counted it), every order settled.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.reliability.audit import full_audit
from tests.reliability.rig import RelStack, Sizes, Verdict, add_fault, clear_faults
from tests.support.events import by_command, create_bodies, publish_reliably, witness
from tests.support.faults import HttpRequestSeen, TcpFaultProxy
from tests.support.ledger_views import NAMESPACE, order_rows, outbox_ids, partner_orders_by_ref
from tests.support.partners import itrx_command, zerotrace_command
from tests.support.stack import Process, Sandbox, wait_until
from worker.pipeline import partner_ref
from worker.processes import poll
from worker.status import TERMINAL

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(420)]

LATENCY_S = 5.0
"""How long the partner takes to answer B's creates (and, for itrx, A's)."""
READ_TIMEOUT_S = 7.0
"""Longer than ``LATENCY_S`` (B's calls are answered) and shorter than A's pause."""
LEASE_S = 8.0
"""Longer than a slowed call with room to spare, so B's own attempts are never taken over."""
A_LATENCY_S = {"0trace": 15.0, "itrx": LATENCY_S}
"""0trace: A's answers come after its deadline, so A wakes to time outs, each of which would schedule a
retry; and B's creates reach the partner first, so B gets the order's token. itrx: A's answers arrive
while it is stopped and it reads them when it wakes (a time out would only park what B parked already)."""
CREATE_PATHS = {"/api/v1/create": "idempotency-key", "/api/v1/frontend/order": "out_trade_no"}


class CreatesOnTheWire:
    """Every create request the proxy forwards, by its Idempotency-Key / out_trade_no, with the time seen."""

    def __init__(self) -> None:
        self.seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def __call__(self, request: HttpRequestSeen) -> None:
        if request.method != "POST" or request.path not in CREATE_PATHS:
            return
        field = CREATE_PATHS[request.path]
        key = (
            request.headers.get(field) if field == "idempotency-key" else json.loads(request.body).get(field)
        )
        if key:
            with self._lock:
                self.seen.setdefault(key, []).append(request.at)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter({key: len(times) for key, times in self.seen.items()})

    def times(self, key: str) -> list[float]:
        with self._lock:
            return list(self.seen.get(key, []))


@pytest.mark.scenario("stale_worker")
@pytest.mark.parametrize("provider", ["0trace", "itrx"])
@pytest.mark.parametrize("ledger_url", ["postgres", "sqlite"], indirect=True)
def test_a_worker_paused_past_its_lease_closes_nothing_and_calls_no_more(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
    provider: str,
) -> None:
    sandbox = make_sandbox()
    wire = CreatesOnTheWire()
    proxy = TcpFaultProxy(sandbox.port, http_sink=wire)
    partner_url = f"http://127.0.0.1:{proxy.port}"
    stack = make_stack(
        sandbox,
        settings={
            "ORDER_WORKER_ZEROTRACE_BASE_URL": partner_url,
            "ORDER_WORKER_ITRX_BASE_URL": partner_url,
            "ORDER_WORKER_CREATE_LEASE_SECONDS": str(LEASE_S),
            "ORDER_WORKER_HTTP_READ_TIMEOUT": str(READ_TIMEOUT_S),
            "ORDER_WORKER_RETRY_BASE_SECONDS": "0.2",
            "ORDER_WORKER_RETRY_MAX_SECONDS": "0.5",
            "ORDER_WORKER_SUBMIT_STUCK_SECONDS": "3",
        },
    )
    sandbox.control(
        "webhooks",
        {
            "zerotrace_webhook_url": f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace",
            # sandbox seconds, at its speed of 100: 1 to 30 s of real time, for a receiver started late
            "zerotrace_webhook_schedule": [100, 200, 500, 1000, 3000],
            "itrx_callback_schedule": [100, 200, 500, 1000, 3000],
        },
    )
    endpoint = "0trace.create" if provider == "0trace" else "itrx.order"
    count = sizes.stale_orders
    add_fault(
        sandbox, endpoint=endpoint, kind="latency", latency_ms=A_LATENCY_S[provider] * 1000, times=count
    )
    add_fault(sandbox, endpoint=endpoint, kind="latency", latency_ms=LATENCY_S * 1000, probability=1.0)
    make = zerotrace_command if provider == "0trace" else itrx_command
    tag = "zt" if provider == "0trace" else "ix"  # the token audit reads 0trace orders by "-zt-"
    commands = [make(f"sw-{tag}-{seed}-{i:04d}") for i in range(count)]
    ids = [c["command_id"] for c in commands]
    keys = {partner_ref(NAMESPACE, command_id): command_id for command_id in ids}
    takeover_calls = 1 if provider == "0trace" else 0
    stack.declare_queues()
    try:
        with witness(stack.broker_url, stack.exchange) as events:
            stack.start_scheduler()
            # A prefetches no more than it has threads: a stopped consumer still holds what it prefetched,
            # and the re-driven commands would wait in A's socket instead of reaching B.
            paused = stack.start_worker(threads=count, dramatiq_queue_prefetch=str(count))
            publish_reliably(
                stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, commands)
            )
            wait_until(lambda: set(wire.counts()) >= set(keys), 60, "every create of worker A on the wire")
            paused.signal_group(signal.SIGSTOP)
            stopped_at = time.monotonic()
            sent_by_a = max(wire.times(key)[0] for key in keys)
            stack.start_worker(threads=count)  # worker B

            def taken_over() -> bool:
                if takeover_calls:
                    return all(n >= 2 for n in wire.counts().values())
                rows = order_rows(stack.ledger_url)
                return all(rows.get(c, {}).get("status") == "in_doubt" for c in ids)

            wait_until(taken_over, 120, "worker B taking every order over")
            # A's answer deadline passes while it is stopped, and B's calls are still out when it wakes.
            wait_until(
                lambda: time.monotonic() > sent_by_a + READ_TIMEOUT_S + 0.5, 30, "worker A's answer deadline"
            )
            resumed = time.monotonic()
            paused.signal_group(signal.SIGCONT)
            paused_s = resumed - stopped_at
            takeover_at = [wire.times(key)[1] for key in keys] if takeover_calls else [resumed]
            takeovers_out = sum(1 for at in takeover_at if at + LATENCY_S > resumed) if takeover_calls else 0
            poll(lambda: stale_lines(paused) >= count, 60)
            stale_logged = stale_lines(paused)
            clear_faults(sandbox)
            # Only now: an itrx callback naming the order would otherwise settle it before any takeover.
            stack.start_webhooks()

            def settled() -> bool:
                rows = order_rows(stack.ledger_url)
                return all(rows.get(c, {}).get("status") in TERMINAL for c in ids)

            poll(settled, 180, 0.5)
            wait_until(
                lambda: set(outbox_ids(stack.ledger_url)) <= {e["event_id"] for e in events.snapshot()},
                60,
                "witness saw every event",
            )
            counts = full_audit(verdict, stack, sandbox, events, ids)
            stale_metric = _stale_metric(stack.metrics(paused), provider)
            replaced = _replaced_results(stack, sandbox, events.snapshot(), ids)
    finally:
        proxy.close()
    on_wire = wire.counts()
    allowed = 1 + takeover_calls
    extra = sum(max(0, on_wire[key] - allowed) for key in keys)
    verdict.count(
        provider=provider,
        orders=count,
        lease_s=LEASE_S,
        partner_latency_s=LATENCY_S,
        a_partner_latency_s=A_LATENCY_S[provider],
        read_timeout_s=READ_TIMEOUT_S,
        paused_s=round(paused_s, 1),
        takeover_calls_from_s=round(min(takeover_at) - stopped_at, 1),
        takeover_calls_to_s=round(max(takeover_at) - stopped_at, 1),
        takeover_calls_out_at_resume=takeovers_out,
        create_requests=sum(on_wire[key] for key in keys),
        extra_create_requests=extra,
        stale_logged=stale_logged,
        stale_metric=stale_metric,
        **replaced,
    )
    if takeover_calls:
        # Without this the run proves nothing: A must come back while B's attempts are live.
        verdict.check("resumed_while_takeovers_in_flight", takeovers_out == count)
    verdict.check("no_extra_partner_calls", extra == 0)
    verdict.check("stale_worker_knew", stale_logged == count and stale_metric == count)
    verdict.check("no_replaced_results", replaced["replaced_results"] == 0)
    verdict.check("transitions_once", replaced["repeated_transitions"] == 0)
    verdict.check("parked_orders_left_to_the_partner", replaced["parked_orders_closed_by_a_create"] == 0)
    verdict.check("every_order_settled", counts["statuses"].keys() <= TERMINAL and counts["missing"] == 0)
    verdict.emit()


def stale_lines(process: Process) -> int:
    return process.output().count("attempt_stale")


def _stale_metric(text: str, provider: str) -> float:
    """``order_worker_stale_attempts_total{provider=...}`` from a worker's exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("order_worker_stale_attempts_total{") and f'provider="{provider}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _replaced_results(
    stack: RelStack, sandbox: Sandbox, events: list[dict[str, object]], ids: list[str]
) -> dict[str, int]:
    """The partner order the ledger holds must be the one partner order the key made, every event of the
    order must name it, and no status may be reached twice. An order B parked in_doubt is B's to leave to
    the partner's signal: a create outcome recorded after its in_doubt event can only be A's, closing an
    attempt that was no longer its own."""
    rows = order_rows(stack.ledger_url)
    partner = partner_orders_by_ref(sandbox)
    chains = by_command(events)
    replaced = repeated = closed_after_parking = 0
    for command_id in ids:
        made = partner.get(partner_ref(NAMESPACE, command_id), [])
        made_ids = {str(order.get("id") or order.get("serial")) for order in made}
        row = rows.get(command_id) or {}
        named = {str(e["order_id"]) for e in chains.get(command_id, []) if e.get("order_id")}
        if len(made_ids) != 1 or str(row.get("order_id")) not in made_ids or not named <= made_ids:
            replaced += 1
        chain = sorted(chains.get(command_id, []), key=lambda e: str(e["occurred_at"]))
        reached = Counter(str(e.get("status")) for e in chain)
        repeated += sum(n - 1 for n in reached.values() if n > 1)
        parked = [i for i, e in enumerate(chain) if e.get("type") == "in_doubt"]
        if parked and any(e.get("source") == "create" for e in chain[parked[0] + 1 :]):
            closed_after_parking += 1
    return {
        "replaced_results": replaced,
        "repeated_transitions": repeated,
        "parked_orders_closed_by_a_create": closed_after_parking,
    }
