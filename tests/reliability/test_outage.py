"""Scenario 5: the partner is out for two minutes, then recovers.

Two kinds of outage run side by side, each on its own deployment, sandbox and ledger (one verdict line
each): ``unreachable`` (the partner host refuses connections: our TCP proxy in front of the sandbox stops
listening and resets what was open) and ``http_503`` (the partner answers every call with 503). Half the
commands are created before the outage and are tracked through it (the sandbox runs at real speed until
recovery), the other half arrives during it.

Criteria: nothing lost or dead-lettered (ledger dead letters and the broker's dead-letter queues empty,
every command present), a bounded request rate in the second minute of the outage (at most one partner
call per open order every 4 s: tracked orders are re-polled every SUBMIT_STUCK_SECONDS = 5 s, a backed-off
create costs at most 3 calls per RETRY_MAX_SECONDS = 20 s), and every order completed within 60 s of
recovery. ``RETRY_MAX_SECONDS`` is 20 here: with the default of 60 a backoff alone can exceed that window.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.audit import full_audit
from tests.reliability.rig import (
    Canaries,
    RelStack,
    Sizes,
    Verdict,
    add_fault,
    clear_faults,
    sandbox_requests,
)
from tests.support.events import EventWitness, create_bodies, publish_reliably
from tests.support.faults import TcpFaultProxy
from tests.support.ledger_views import order_rows, outbox_ids
from tests.support.partners import commands_mix
from tests.support.stack import Sandbox, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

RATE_PER_OPEN_ORDER = 0.25
_PARTNER_REQUESTS = re.compile(r"^order_worker_partner_requests_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def partner_calls(stack: RelStack) -> float:
    """Partner calls the service made, from its own /metrics (worker and webhook receiver)."""
    return sum(
        float(value) for text in stack.metrics_texts().values() for value in _PARTNER_REQUESTS.findall(text)
    )


@dataclass
class Run:
    kind: str
    sandbox: Sandbox
    proxy: TcpFaultProxy
    stack: RelStack
    verdict: Verdict
    commands: list[dict[str, Any]]
    witness: EventWitness | None = None
    calls: list[float] = field(default_factory=list)
    seen_by_sandbox: list[int] = field(default_factory=list)
    open_orders: int = 0
    done_after: float = 0.0

    @property
    def ids(self) -> list[str]:
        return [c["command_id"] for c in self.commands]

    @property
    def before(self) -> list[dict[str, Any]]:
        return self.commands[: len(self.commands) // 2]

    @property
    def during(self) -> list[dict[str, Any]]:
        return self.commands[len(self.commands) // 2 :]

    def sample(self) -> None:
        self.calls.append(partner_calls(self.stack))
        self.seen_by_sandbox.append(sum(sandbox_requests(self.sandbox).values()))

    def begin_outage(self) -> None:
        if self.kind == "unreachable":
            self.proxy.pause()
        else:
            add_fault(self.sandbox, endpoint="*", kind="http_503", probability=1.0)

    def end_outage(self) -> None:
        if self.kind == "unreachable":
            self.proxy.resume()
        else:
            clear_faults(self.sandbox)
        self.sandbox.control("clock", {"speed": 100})


@pytest.mark.scenario("partner_outage")
def test_partner_outage_of_two_minutes(
    make_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
    log_dir: Path,
    canaries: Canaries,
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    runs: list[Run] = []
    verdict.count(kind="unreachable")
    for kind, record in (("unreachable", verdict), ("http_503", Verdict("partner_outage", seed, sizes.name))):
        record.count(kind=kind, params={"ledger_url": "sqlite", "kind": kind})
        sandbox = make_sandbox(speed=1.0)
        proxy = TcpFaultProxy(sandbox.port)
        partner_url = f"http://127.0.0.1:{proxy.port}"
        stack = RelStack(
            sandbox,
            f"sqlite:///{tmp_path / f'{kind}.db'}",
            log_dir,
            canaries=canaries,
            settings={
                "ORDER_WORKER_ZEROTRACE_BASE_URL": partner_url,
                "ORDER_WORKER_ITRX_BASE_URL": partner_url,
                "ORDER_WORKER_RETRY_BASE_SECONDS": "1",
                "ORDER_WORKER_RETRY_MAX_SECONDS": "20",
            },
        )
        runs.append(
            Run(kind, sandbox, proxy, stack, record, commands_mix(sizes.outage_commands, seed, kind[:6]))
        )
    try:
        for run in runs:
            run.stack.declare_queues()
            run.witness = EventWitness(run.stack.broker_url, run.stack.exchange)
            run.stack.start_webhooks()
            run.stack.start_worker(threads=8)
            run.stack.start_scheduler()
            publish_reliably(
                run.stack.broker_url,
                run.stack.create_queue,
                create_bodies(run.stack.create_queue, run.before),
            )
        for run in runs:

            def created(run: Run = run) -> bool:
                rows = order_rows(run.stack.ledger_url)
                return all(c in rows and rows[c]["order_id"] for c in (x["command_id"] for x in run.before))

            wait_until(created, 60, f"orders created before the {run.kind} outage")
        # ---- outage --------------------------------------------------------------------------------
        for run in runs:
            run.begin_outage()
        started = time.monotonic()
        for run in runs:
            run.sample()
            publish_reliably(
                run.stack.broker_url,
                run.stack.create_queue,
                create_bodies(run.stack.create_queue, run.during),
            )
        for mark in (60.0, sizes.outage_seconds):
            while time.monotonic() < started + mark:
                for run in runs:
                    assert all(p.alive for p in run.stack.processes), (
                        f"a process died in the {run.kind} outage"
                    )
                time.sleep(0.5)
            for run in runs:
                run.sample()
        for run in runs:
            rows = order_rows(run.stack.ledger_url)
            run.open_orders = sum(1 for c in run.ids if rows.get(c, {}).get("status") != "completed")
            run.end_outage()
        # ---- recovery ------------------------------------------------------------------------------
        recovered = time.monotonic()
        pending = list(runs)
        while pending and time.monotonic() < recovered + 90:
            for run in list(pending):
                rows = order_rows(run.stack.ledger_url)
                statuses = [rows.get(c, {}).get("status") for c in run.ids]
                if all(s in ("completed", "expired", "failed", "refunded", "in_doubt") for s in statuses):
                    run.done_after = time.monotonic() - recovered
                    pending.remove(run)
            time.sleep(0.25)
        for run in pending:
            run.done_after = time.monotonic() - recovered
        for run in runs:
            ledger_url = run.stack.ledger_url
            assert run.witness is not None
            seen = run.witness
            wait_until(lambda u=ledger_url: all(outbox_ids(u).values()), 30, "outbox drained", interval=0.25)
            wait_until(
                lambda u=ledger_url, w=seen: set(outbox_ids(u)) <= {e["event_id"] for e in w.snapshot()},
                30,
                "witness saw every event",
            )
            depths = run.stack.queue_depths()
            dead_letters = run.stack.ledger().dead_letters(1000)
            rate = (run.calls[2] - run.calls[1]) / max(1.0, sizes.outage_seconds - 60.0)
            bound = RATE_PER_OPEN_ORDER * max(1, run.open_orders)
            broker_dead = sum(n for q, n in depths.items() if q.endswith(".XQ"))
            run.verdict.count(
                outage_s=sizes.outage_seconds,
                open_orders_in_outage=run.open_orders,
                partner_calls_first_minute=int(run.calls[1] - run.calls[0]),
                partner_calls_second_minute=int(run.calls[2] - run.calls[1]),
                partner_requests_seen_by_sandbox_in_outage=run.seen_by_sandbox[2] - run.seen_by_sandbox[0],
                second_minute_rate_per_s=round(rate, 2),
                rate_bound_per_s=bound,
                settled_after_recovery_s=round(run.done_after, 1),
                dead_letter_records=len(dead_letters),
                broker_dead_lettered=broker_dead,
            )
            counts = full_audit(run.verdict, run.stack, run.sandbox, seen, run.ids)
            run.verdict.check("nothing_dead_lettered", not dead_letters and not broker_dead)
            run.verdict.check("request_rate_bounded", rate <= bound)
            run.verdict.check(
                "all_done_within_60s_of_recovery",
                run.done_after <= 60.0 and counts["statuses"] == {"completed": len(run.ids)},
            )
    except BaseException as error:
        for run in runs[1:]:
            run.verdict.abort(f"{type(error).__name__}: {error}"[:400])
        raise
    finally:
        for run in runs:
            if run.witness is not None:
                run.witness.close()
            run.stack.stop()
            run.proxy.close()
    failures = []
    for run in runs:
        try:
            run.verdict.emit()
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)
