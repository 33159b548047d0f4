"""itrx state: balance, energy orders, their status progression and signed callbacks.

Statuses (spec §6): 0 closed on timeout, 10 waiting for payment, 20 paid, 30 delegation being prepared,
31 partially delegated, 32 error/retrying, 40 completed, 41 ended with refund, 43 ended abnormally.
API orders are paid from the balance, so they start at 20. Scenario paths: ``auto`` 20->30->40,
``fail`` 20->30->32->43, ``refund`` 20->30->41 (refund_amount = amount, credited back), ``manual`` stays
at 20. At 40 one delegation is recorded in ``details`` (status 20 = delegating); when the rental period
has passed in sandbox time it turns into 30 (reclaimed) without changing the order status.

**Assumption (callback body, not documented):** the order-query object without ``errno``, plus
``out_trade_no`` and ``serial``; serialised compact, key-sorted, ASCII-escaped and signed as
``hex(HMAC-SHA256(secret, "<TIMESTAMP>&<body>"))`` over exactly the bytes sent.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from order_worker_sandbox.addresses import hex_hash
from order_worker_sandbox.parts import SandboxParts
from order_worker_sandbox.signing import canonical_json, itrx_sign

STATUSES = (0, 10, 20, 30, 31, 32, 40, 41, 43)
FINAL = frozenset({0, 40, 41, 43})
PERIODS = {"1H": 0, "1D": 1, "3D": 3, "30D": 30}
PERIOD_SECONDS = {0: 3600, 1: 86400, 3: 3 * 86400, 30: 30 * 86400}
TIERED_PRICE_SUN = {0: 60, 1: 90, 3: 80, 30: 70}
"""Sun per energy unit (per day for day periods); ours, the real formula is not published."""
SMALL_AMOUNT = 50_000
SMALL_ADDITION_SUN = 600_000
ACTIVATION_FEE_SUN = 1_500_000
CN_TZ = timezone(timedelta(hours=8))


def price_sun(energy: int, period: int) -> tuple[int, int, int]:
    """(unit price, total, small-order addition) in sun."""
    unit = TIERED_PRICE_SUN[period]
    addition = SMALL_ADDITION_SUN if energy < SMALL_AMOUNT else 0
    return unit, energy * unit * max(1, period) + addition, addition


def iso_cn(ts: float) -> str:
    return datetime.fromtimestamp(ts, CN_TZ).isoformat(timespec="microseconds")


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ItrxOrder:
    serial: str
    receive_address: str
    energy_amount: int
    period: int
    amount: int
    status: int
    created: float
    callback_url: str | None
    out_trade_no: str | None
    scenario: str
    created_at: float
    active: int | None = None
    exclusive: int | None = None
    refund_amount: int = 0
    pay_amount: float = 0.0
    details: list[dict[str, Any]] = field(default_factory=list)
    gen: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)

    def query(self, api_name: str) -> dict[str, Any]:
        return {
            "errno": 0,
            "receive_address": self.receive_address,
            "order_no": self.serial,
            "energy_amount": self.energy_amount,
            "pay_amount": self.pay_amount,
            "amount": self.amount,
            "details": [dict(d) for d in self.details],
            "create_time": iso_cn(self.created),
            "api_name": api_name,
            "period": self.period,
            "status": self.status,
            "refund_amount": self.refund_amount,
        }

    def ledger_entry(self) -> dict[str, Any]:
        return {
            "provider": "itrx",
            "serial": self.serial,
            "out_trade_no": self.out_trade_no,
            "status": self.status,
            "created_at": self.created_at,
            "energy_amount": self.energy_amount,
            "period": self.period,
            "amount": self.amount,
            "refund_amount": self.refund_amount,
            "receive_address": self.receive_address,
            "callback_url": self.callback_url,
            "history": [{"status": s, "at": t} for s, t in self.history],
        }


class ItrxBook:
    def __init__(self, sandbox: SandboxParts) -> None:
        self.sb = sandbox
        self.balance = sandbox.config.itrx_balance_sun
        self.orders: dict[str, ItrxOrder] = {}
        self.activated_extra: set[str] = set()

    def config_changed(self, changed: list[str]) -> None:
        if "itrx_balance_sun" in changed:
            self.balance = self.sb.config.itrx_balance_sun

    def is_activated(self, address: str) -> bool:
        return address not in self.sb.config.itrx_unactivated_addresses or address in self.activated_extra

    def create(
        self,
        *,
        receive_address: str,
        energy: int,
        period: int,
        cost: int,
        callback_url: str | None,
        out_trade_no: str | None,
        active: int | None,
        exclusive: int | None,
    ) -> ItrxOrder:
        now = self.sb.clock.now()
        order = ItrxOrder(
            serial=uuid.uuid4().hex,
            receive_address=receive_address,
            energy_amount=energy,
            period=period,
            amount=cost,
            status=20,
            created=now,
            callback_url=callback_url,
            out_trade_no=out_trade_no,
            scenario=self.sb.config.itrx_scenario,
            created_at=time.time(),
            active=active,
            exclusive=exclusive,
        )
        order.history.append((20, now))
        self.balance -= cost
        self.orders[order.serial] = order
        self.sb.stats.orders_created["itrx"] += 1
        self._schedule_auto(order, now)
        return order

    def _schedule_auto(self, order: ItrxOrder, base: float | None = None) -> None:
        """Queue the scenario's next step, chained from the previous step's due time."""
        cfg = self.sb.config
        paths = {
            "auto": {20: (30, cfg.itrx_delegate_after), 30: (40, cfg.itrx_complete_after)},
            "fail": {
                20: (30, cfg.itrx_delegate_after),
                30: (32, cfg.itrx_complete_after),
                32: (43, cfg.itrx_complete_after),
            },
            "refund": {20: (30, cfg.itrx_delegate_after), 30: (41, cfg.itrx_complete_after)},
        }
        step = paths.get(order.scenario, {}).get(order.status)
        if step is None:
            return
        target, delay = step
        expected_status, expected_gen = order.status, order.gen
        due = (self.sb.clock.now() if base is None else base) + delay

        def fire() -> None:
            if order.status == expected_status and order.gen == expected_gen and order.serial in self.orders:
                self.transition(order, target, at=due)
                self._schedule_auto(order, due)

        self.sb.scheduler.call_at(due, fire)

    def transition(
        self, order: ItrxOrder, status: int, refund_amount: int | None = None, at: float | None = None
    ) -> None:
        if status == order.status:
            return
        now = self.sb.clock.now() if at is None else at
        if status == 31:
            order.pay_amount = float(order.energy_amount // 2)
            self._delegate(order, now)
        elif status == 40:
            order.pay_amount = float(order.energy_amount)
            self._delegate(order, now)
        elif status == 41:
            refund = order.amount if refund_amount is None else refund_amount
            self.balance += refund - order.refund_amount
            order.refund_amount = refund
        order.status = status
        order.history.append((status, now))
        self._maybe_callback(order)

    def _delegate(self, order: ItrxOrder, now: float) -> None:
        if order.details:
            return
        reclaim_at = now + PERIOD_SECONDS[order.period]
        order.details.append(
            {
                "delegate_hash": hex_hash(order.serial + ":delegate"),
                "delegate_time": iso_utc(now),
                "reclaim_hash": None,
                "reclaim_time": iso_utc(reclaim_at),
                "reclaim_time_real": None,
                "status": 20,
            }
        )
        self.sb.scheduler.call_at(reclaim_at, lambda: self.reclaim(order, reclaim_at))

    def reclaim(self, order: ItrxOrder, at: float | None = None) -> bool:
        """Mark active delegations reclaimed (period over, or an early /order/reclaim)."""
        changed = False
        now = self.sb.clock.now() if at is None else at
        for d in order.details:
            if d["status"] == 20:
                d["status"] = 30
                d["reclaim_hash"] = hex_hash(order.serial + ":reclaim")
                d["reclaim_time_real"] = iso_utc(now)
                changed = True
        return changed

    def drive(self, order: ItrxOrder, status: int, refund_amount: int | None, resume: bool) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}")
        if refund_amount is not None and not 0 <= refund_amount <= order.amount:
            raise ValueError("refund_amount must be 0..amount")
        order.gen += 1
        self.transition(order, status, refund_amount)
        if resume:
            self._schedule_auto(order)

    def _maybe_callback(self, order: ItrxOrder) -> None:
        cfg = self.sb.config
        when = cfg.itrx_callback_on
        if when == "success" and order.status != 40:
            return
        if when == "final" and order.status not in FINAL:
            return
        payload = order.query(cfg.itrx_api_name)
        del payload["errno"]
        payload["out_trade_no"] = order.out_trade_no
        payload["serial"] = order.serial
        body = canonical_json(payload)

        def headers_for(raw: bytes, sent_at: int) -> dict[str, str]:
            ts = str(sent_at)
            return {
                "Content-Type": "application/json",
                "TIMESTAMP": ts,
                "SIGNATURE": itrx_sign(raw, ts, self.sb.config.itrx_api_secret),
            }

        self.sb.deliverer.submit(
            provider="itrx",
            event="callback",
            ref=order.serial,
            order_status=str(order.status),
            url=order.callback_url or cfg.itrx_default_callback_url,
            body=body,
            headers_for=headers_for,
            schedule=cfg.itrx_callback_schedule,
            success_statuses=range(200, 201),
        )
