"""0trace state: partners (secrets, nonces, budgets, idempotency keys, reference codes), orders, lifecycle.

Lifecycle rules (spec §10): ``NEW -> PENDING -> EXCHANGE -> DONE``; ``NEW -> EXPIRED`` when the deposit
window closes without a deposit; ``EMERGENCY`` only via the control API or the ``emergency`` scenario,
left only by an ``emergency`` call with ``choice: "EXCHANGE"`` (-> EXCHANGE after a short delay) or by
the control API (-> EXPIRED). DONE and EXPIRED are terminal: nothing moves an order out of them except
a control ``drive`` with ``force: true``. Every status change queues exactly one signed
``order.status_changed`` webhook whose body freezes the DTO of that moment.

Tokens are stored only as SHA-256 digests and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from order_worker_sandbox.addresses import hex_hash, payin_address
from order_worker_sandbox.config import account_fields
from order_worker_sandbox.limits import NonceStore, WeightWindow
from order_worker_sandbox.market import Asset, Quote, default_assets
from order_worker_sandbox.parts import SandboxParts
from order_worker_sandbox.responses import dumps
from order_worker_sandbox.signing import zerotrace_sign

STATUSES = ("NEW", "PENDING", "EXCHANGE", "DONE", "EXPIRED", "EMERGENCY")
TERMINAL = frozenset({"DONE", "EXPIRED"})
_MAIN_PATH = ("NEW", "PENDING", "EXCHANGE", "DONE")
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass
class RefCode:
    id: str
    code: str
    label: str | None
    afftax_bps: int
    enabled: bool
    created_at: float
    seq: int

    def to_json(self) -> dict[str, Any]:
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.created_at))
        millis = int((self.created_at % 1) * 1000)
        return {
            "id": self.id,
            "code": self.code,
            "label": self.label,
            "afftaxBps": self.afftax_bps,
            "enabled": self.enabled,
            "createdAt": f"{created}.{millis:03d}Z",
        }


@dataclass
class Partner:
    api_key: str
    api_secret: str
    webhook_secret: str
    enabled: bool
    markup_bps: int
    nonces: NonceStore
    window: WeightWindow
    secret_bytes: bytes = b""
    idempotency: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    codes: dict[str, RefCode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.secret_bytes = self.api_secret.encode("utf-8")

    def set_api_secret(self, value: str) -> None:
        self.api_secret = value
        self.secret_bytes = value.encode("utf-8")


@dataclass
class ZtOrder:
    id: str
    partner_key: str
    token_hash: bytes
    status: str
    reg: int
    expiration: int
    update: int
    src: Asset
    dst: Asset
    from_amount: str
    payin: str
    to_amount: str
    to_address: str
    back_address: str | None
    rate: str
    network_fee: str
    markup_bps: int
    idempotency_key: str | None
    code: str | None
    scenario: str
    created_at: float
    finish: int | None = None
    from_tx_id: str | None = None
    from_tx_amount: str | None = None
    to_tx_id: str | None = None
    to_tx_amount: str | None = None
    back_tx_id: str | None = None
    emergency_status: list[str] = field(default_factory=list)
    emergency_choice: str = "NONE"
    gen: int = 0
    qr_cache: str | None = None
    history: list[tuple[str, float]] = field(default_factory=list)

    def token_matches(self, token: object) -> bool:
        if not isinstance(token, str) or len(token) != 43 or not TOKEN_CHARS.issuperset(token):
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode("ascii")).digest(), self.token_hash)

    def dto(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "float",
            "status": self.status,
            "time": {
                "reg": self.reg,
                "expiration": self.expiration,
                "left": max(0, int(self.expiration - now)),
                "update": self.update,
                "finish": self.finish,
            },
            "from": {
                "code": self.src.code,
                "network": self.src.network,
                "amount": self.from_amount,
                "address": self.payin,
                "tx": {"id": self.from_tx_id, "amount": self.from_tx_amount},
            },
            "to": {
                "code": self.dst.code,
                "network": self.dst.network,
                "amount": self.to_amount,
                "address": self.to_address,
                "tx": {"id": self.to_tx_id, "amount": self.to_tx_amount},
            },
            "back": {"address": self.back_address, "tx": {"id": self.back_tx_id}},
            "emergency": {"status": list(self.emergency_status), "choice": self.emergency_choice},
            "rate": self.rate,
            "networkFee": self.network_fee,
            "markupBps": self.markup_bps,
        }

    def ledger_entry(self) -> dict[str, Any]:
        return {
            "provider": "0trace",
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "created_at": self.created_at,
            "partner": self.partner_key,
            "code": self.code,
            "from": {"code": self.src.code, "amount": self.from_amount},
            "to": {"code": self.dst.code, "amount": self.to_amount, "address": self.to_address},
            "markupBps": self.markup_bps,
            "history": [{"status": s, "at": t} for s, t in self.history],
        }


class ZeroTraceBook:
    def __init__(self, sandbox: SandboxParts) -> None:
        self.sb = sandbox
        cfg = sandbox.config
        self.assets: dict[str, Asset] = default_assets()
        self.partners: dict[str, Partner] = {}
        self.own_budgets: dict[str, int] = {}
        """Partners (apiKeys) whose weight budget is their own, not zerotrace_rate_limit_weight."""
        self.primary_key = cfg.zerotrace_api_key
        self._add_partner(cfg.zerotrace_api_key, cfg.zerotrace_api_secret, cfg.zerotrace_webhook_secret)
        self.partners[cfg.zerotrace_api_key].enabled = cfg.zerotrace_partner_enabled
        for key, secret, webhook_secret in cfg.zerotrace_extra_partners:
            self._add_partner(key, secret, webhook_secret)
        self._add_accounts()
        self.orders: dict[str, ZtOrder] = {}
        self._code_seq = 0

    def _add_accounts(self) -> None:
        for item in self.sb.config.zerotrace_accounts:
            key, secret, webhook_secret, weight = account_fields(item)
            if key not in self.partners:
                self._add_partner(key, secret, webhook_secret, weight)

    def _add_partner(self, key: str, secret: str, webhook_secret: str, weight: int | None = None) -> None:
        cfg = self.sb.config
        if weight is not None:
            self.own_budgets[key] = weight
        self.partners[key] = Partner(
            api_key=key,
            api_secret=secret,
            webhook_secret=webhook_secret,
            enabled=True,
            markup_bps=cfg.zerotrace_markup_bps,
            nonces=NonceStore(cfg.zerotrace_nonce_ttl),
            window=WeightWindow(weight or cfg.zerotrace_rate_limit_weight, cfg.zerotrace_rate_limit_window),
        )

    def config_changed(self, changed: list[str]) -> None:
        cfg = self.sb.config
        main = self.partners[self.primary_key]
        if "zerotrace_api_secret" in changed:
            main.set_api_secret(cfg.zerotrace_api_secret)
        if "zerotrace_webhook_secret" in changed:
            main.webhook_secret = cfg.zerotrace_webhook_secret
        if "zerotrace_partner_enabled" in changed:
            main.enabled = cfg.zerotrace_partner_enabled
        if "zerotrace_api_key" in changed and cfg.zerotrace_api_key != self.primary_key:
            self.partners[cfg.zerotrace_api_key] = self.partners.pop(self.primary_key)
            main.api_key = self.primary_key = cfg.zerotrace_api_key
        if "zerotrace_extra_partners" in changed:
            for key, secret, webhook_secret in cfg.zerotrace_extra_partners:
                if key not in self.partners:
                    self._add_partner(key, secret, webhook_secret)
        if "zerotrace_accounts" in changed:
            self._add_accounts()
        for p in self.partners.values():
            if "zerotrace_markup_bps" in changed:
                p.markup_bps = cfg.zerotrace_markup_bps
            if "zerotrace_nonce_ttl" in changed:
                p.nonces.ttl = cfg.zerotrace_nonce_ttl
            if "zerotrace_rate_limit_weight" in changed or "zerotrace_rate_limit_window" in changed:
                p.window.limit = self.own_budgets.get(p.api_key, cfg.zerotrace_rate_limit_weight)
                p.window.window = cfg.zerotrace_rate_limit_window

    # --- orders -----------------------------------------------------------------------------------

    def create(
        self,
        partner: Partner,
        q: Quote,
        to_address: str,
        refund_address: str,
        idempotency_key: str | None,
        code: str | None,
    ) -> tuple[ZtOrder, str]:
        cfg = self.sb.config
        now = self.sb.clock.now()
        order_id = str(uuid.uuid4())
        token = secrets.token_urlsafe(32)
        reg = int(now)
        order = ZtOrder(
            id=order_id,
            partner_key=partner.api_key,
            token_hash=hashlib.sha256(token.encode("ascii")).digest(),
            status="NEW",
            reg=reg,
            expiration=reg + int(cfg.zerotrace_deposit_window),
            update=reg,
            src=q.src,
            dst=q.dst,
            from_amount=q.from_str,
            payin=payin_address(q.src.network, order_id),
            to_amount=q.to_str,
            to_address=to_address,
            back_address=refund_address,
            rate=q.rate_str,
            network_fee=q.fee_str,
            markup_bps=q.markup_bps,
            idempotency_key=idempotency_key,
            code=code,
            scenario=cfg.zerotrace_scenario,
            created_at=time.time(),
        )
        order.history.append(("NEW", now))
        self.orders[order_id] = order
        self.sb.stats.orders_created["0trace"] += 1
        self.sb.scheduler.call_at(order.expiration, lambda: self._expire_if_new(order))
        self._schedule_auto(order, now)
        return order, token

    def find(self, partner: Partner, order_id: object, token: object) -> ZtOrder | None:
        """The order only if id, owner and token all match; any mismatch is indistinguishable."""
        order = self.orders.get(order_id) if isinstance(order_id, str) else None
        if order is None or order.partner_key != partner.api_key:
            # Spend the same hashing work as a hit, so timing does not reveal which check failed.
            hashlib.sha256(b"x" * 43).digest()
            return None
        return order if order.token_matches(token) else None

    def _expire_if_new(self, order: ZtOrder) -> None:
        if order.status == "NEW" and self.orders.get(order.id) is order:
            self.transition(order, "EXPIRED", at=order.expiration)

    def _schedule_auto(self, order: ZtOrder, base: float | None = None) -> None:
        """Queue the next automatic step for the order's scenario, if any; stale steps self-cancel.

        Steps chain from the previous step's due time (not from "now"), so a clock jump over several
        steps replays all of them with their proper timestamps.
        """
        cfg = self.sb.config
        steps: dict[str, tuple[str, float]]
        if order.scenario == "auto":
            steps = {
                "NEW": ("PENDING", cfg.zerotrace_deposit_after),
                "PENDING": ("EXCHANGE", cfg.zerotrace_exchange_after),
                "EXCHANGE": ("DONE", cfg.zerotrace_done_after),
            }
        elif order.scenario == "emergency":
            steps = {
                "NEW": ("PENDING", cfg.zerotrace_deposit_after),
                "PENDING": ("EMERGENCY", cfg.zerotrace_exchange_after),
                "EXCHANGE": ("DONE", cfg.zerotrace_done_after),
            }
        else:
            return
        step = steps.get(order.status)
        if step is None:
            return
        target, delay = step
        expected_status, expected_gen = order.status, order.gen
        due = (self.sb.clock.now() if base is None else base) + delay

        def fire() -> None:
            if order.status == expected_status and order.gen == expected_gen and order.id in self.orders:
                self.transition(order, target, at=due)
                self._schedule_auto(order, due)

        self.sb.scheduler.call_at(due, fire)

    def transition(
        self,
        order: ZtOrder,
        status: str,
        *,
        emergency_status: list[str] | None = None,
        refund: bool = False,
        at: float | None = None,
    ) -> None:
        """Apply one status change with its side effects, then queue its webhook.

        ``at`` is the sandbox time the change happened (a timer's due time), default now.
        """
        if status == order.status:
            return
        now = self.sb.clock.now() if at is None else at
        if status in ("PENDING", "EXCHANGE", "DONE", "EMERGENCY") and order.from_tx_id is None:
            order.from_tx_id = hex_hash(order.id + ":payin")
            order.from_tx_amount = order.from_amount
        if order.status == "EMERGENCY":
            order.emergency_status = []
            order.emergency_choice = "NONE"
        if status == "EMERGENCY":
            order.emergency_status = list(emergency_status or ["LIMIT"])
            order.emergency_choice = "NONE"
        if status == "DONE":
            order.to_tx_id = hex_hash(order.id + ":payout")
            order.to_tx_amount = order.to_amount
            order.finish = int(now)
        if refund and order.back_tx_id is None:
            order.back_tx_id = hex_hash(order.id + ":refund")
        order.status = status
        order.update = int(now)
        order.history.append((status, now))
        self._emit(order, now)

    def drive(
        self,
        order: ZtOrder,
        status: str,
        *,
        direct: bool = False,
        force: bool = False,
        resume: bool = False,
        emergency_status: list[str] | None = None,
        refund: bool = False,
    ) -> list[str]:
        """Control-API move; walks intermediate statuses (one webhook each) unless ``direct``."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}")
        if order.status in TERMINAL and not force and status != order.status:
            raise ValueError(f"order is {order.status} (terminal); pass force=true to move it anyway")
        order.gen += 1  # cancels pending automatic steps
        path = [status] if direct else self._path(order.status, status)
        for step in path:
            self.transition(
                order,
                step,
                emergency_status=emergency_status if step == "EMERGENCY" else None,
                refund=refund and step == "EXPIRED",
            )
        if resume:
            self._schedule_auto(order)
        return path

    @staticmethod
    def _path(current: str, target: str) -> list[str]:
        if current == target:
            return []
        if current == "EMERGENCY" and target in ("EXCHANGE", "DONE"):
            return ["EXCHANGE", "DONE"][: 1 + (target == "DONE")]
        if target == "EMERGENCY":
            return ["PENDING", "EMERGENCY"] if current == "NEW" else ["EMERGENCY"]
        if current in _MAIN_PATH and target in _MAIN_PATH:
            i, j = _MAIN_PATH.index(current), _MAIN_PATH.index(target)
            if j > i:
                return list(_MAIN_PATH[i + 1 : j + 1])
        return [target]

    def choose_exchange(self, order: ZtOrder) -> None:
        """Record the partner's emergency choice; the order resumes shortly, as the docs describe."""
        order.emergency_choice = "EXCHANGE"
        expected_gen = order.gen
        due = self.sb.clock.now() + self.sb.config.zerotrace_emergency_resume_after

        def resume() -> None:
            if order.status == "EMERGENCY" and order.gen == expected_gen and order.id in self.orders:
                self.transition(order, "EXCHANGE", at=due)
                if order.scenario in ("auto", "emergency"):
                    self._schedule_auto(order, due)

        self.sb.scheduler.call_at(due, resume)

    # --- webhooks ---------------------------------------------------------------------------------

    def _emit(self, order: ZtOrder, now: float) -> None:
        body = dumps({"event": "order.status_changed", "order": order.dto(now), "ts": int(now * 1000)})
        partner_key = order.partner_key

        def headers_for(raw: bytes, sent_at: int) -> dict[str, str]:
            partner = self.partners.get(partner_key)
            secret = partner.webhook_secret if partner else ""
            return {
                "Content-Type": "application/json",
                "X-Partner-Webhook-Event": "order.status_changed",
                "X-Partner-Webhook-Timestamp": str(sent_at),
                "X-Partner-Webhook-Sign": zerotrace_sign(raw, secret),
            }

        self.sb.deliverer.submit(
            provider="0trace",
            event="order.status_changed",
            ref=order.id,
            order_status=order.status,
            url=self.sb.config.zerotrace_webhook_url,
            body=body,
            headers_for=headers_for,
            schedule=self.sb.config.zerotrace_webhook_schedule,
            success_statuses=range(200, 300),
        )

    # --- reference codes ----------------------------------------------------------------------------

    def add_code(self, partner: Partner, code: str, label: str | None, afftax: int) -> RefCode:
        self._code_seq += 1
        ref = RefCode(
            id="ck" + secrets.token_hex(11),
            code=code,
            label=label,
            afftax_bps=afftax,
            enabled=True,
            created_at=self.sb.clock.now(),
            seq=self._code_seq,
        )
        partner.codes[code] = ref
        return ref

    def usd_bounds(self) -> tuple[Decimal, Decimal]:
        cfg = self.sb.config
        return Decimal(str(cfg.zerotrace_min_usd)), Decimal(str(cfg.zerotrace_max_usd))
