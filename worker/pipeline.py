"""The order pipeline: what a create or poll command does, independent of how it was delivered.

Actors (Dramatiq), the scheduler, the webhook receiver and tests all call this module; it knows the ledger,
the partner clients and the token sealer, and nothing of the broker. Every decision about sending a create
again lives here, and it follows one rule: send again only what cannot create a second order.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from worker import failpoints, metrics
from worker.ledger.base import Attempt, ClaimOutcome, Ledger, OrderRecord
from worker.messages import (
    CreateOrderCommand,
    EventError,
    OrderEvent,
    PollOrderCommand,
    Provider,
    Source,
    ZeroTraceParams,
)
from worker.providers.base import CreateResult, Fate, PartnerError, PartnerOrder
from worker.providers.itrx import ItrxClient
from worker.providers.zerotrace import WEIGHTS as ZEROTRACE_WEIGHTS
from worker.providers.zerotrace import ZeroTraceClient
from worker.ratelimit import zerotrace_budget
from worker.rejections import field_names, record_rejection
from worker.sealing import SealError, TokenSealer
from worker.settings import Settings
from worker.status import Status, is_terminal

log = logging.getLogger(__name__)


def partner_ref(namespace: str, command_id: str) -> str:
    """Idempotency-Key / out_trade_no: deterministic per command_id, ASCII, 44 characters (within 8..128).

    Hashing with a namespace keeps producers' ids out of partner logs and lets two deployments share one
    partner account without their keys colliding.
    """
    return "ow-" + hashlib.sha256(f"{namespace}\x00{command_id}".encode()).hexdigest()[:41]


def validation_summary(error: ValidationError) -> str:
    """Field paths and messages only: the offending input values are never echoed into events or logs."""
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:8]:
        location = ".".join(str(part) for part in item["loc"]) or "command"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


@dataclass
class Outcome:
    """What handling one command did, for metrics and tests."""

    name: str
    events: list[OrderEvent]


class OrderPipeline:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        zerotrace: ZeroTraceClient,
        itrx: ItrxClient,
        sealer: TokenSealer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.zerotrace = zerotrace
        self.itrx = itrx
        self.sealer = sealer
        self.clock = clock
        self.zerotrace_budget = zerotrace_budget(ledger)  # the account's weight budget, shared by replicas

    # ------------------------------------------------------------------ commands
    def handle_create(self, kwargs: dict[str, Any], message_id: str) -> Outcome:
        zerotrace_params: ZeroTraceParams | None = None
        try:
            command = CreateOrderCommand.model_validate(kwargs)
            if command.provider is Provider.ZEROTRACE:
                # Exactly what validated() checks for 0trace, kept for the partner call: validated once.
                zerotrace_params = command.zerotrace_params()
            else:
                command.validated()
        except ValidationError as error:
            return self._reject(message_id, kwargs, "invalid_command", validation_summary(error))
        except ValueError as error:
            return self._reject(message_id, kwargs, "invalid_command", str(error))
        now = self.clock()
        ref = partner_ref(self.settings.idempotency_namespace, command.command_id)
        begun: Attempt | None = None
        if zerotrace_params is not None:
            # 0trace has nothing to check between the claim and the first attempt (itrx reads its
            # balance there), so a first sight of the command claims and records the intent in one unit.
            claim, begun = self.ledger.claim_attempt(command, ref, now, self.settings.create_lease_seconds)
        else:
            claim = self.ledger.claim(command, ref, now)
        if claim.outcome is ClaimOutcome.CONFLICT:
            return self._reject(
                f"conflict:{message_id}",
                kwargs,
                "command_id_conflict",
                "command_id was already used for a different order (params, provider or ref_code differ)",
            )
        return self._advance_create(command, claim.record, zerotrace_params, begun)

    def handle_poll(self, kwargs: dict[str, Any], message_id: str) -> Outcome:
        try:
            command = PollOrderCommand.model_validate(kwargs)
        except ValidationError as error:
            return self._reject(message_id, kwargs, "invalid_command", validation_summary(error))
        record = self.ledger.get(command.command_id)
        if record is None:
            return self._reject(
                message_id, kwargs, "unknown_command", "no order was created for this command_id"
            )
        return self.refresh(record, Source.POLL)

    def handle_malformed(
        self, code: str, reason: str, detail: dict[str, Any], command_id: str | None = None
    ) -> Outcome:
        key = f"body:{detail.get('body_sha256', '')}"
        events = self.ledger.record_rejection(
            key, command_id, None, EventError(code=code, reason=reason), {}, detail, self.clock()
        )
        if events:
            metrics.REJECTIONS.labels(code).inc()
            metrics.DEAD_LETTERS.labels(code).inc()
        return Outcome("rejected", events)

    # ------------------------------------------------------------------ create
    def _advance_create(
        self,
        command: CreateOrderCommand,
        record: OrderRecord,
        zerotrace_params: ZeroTraceParams | None = None,
        begun: Attempt | None = None,
    ) -> Outcome:
        if record.status != Status.SUBMITTING:
            return Outcome("duplicate", [])
        if command.provider is Provider.ITRX and record.attempts == 0 and not record.attempt_open:
            check = self._itrx_balance_check(command, record)
            if isinstance(check, EventError):
                return Outcome(
                    "failed",
                    self.ledger.record_failed(command.command_id, check, Source.CREATE, self.clock()),
                )
            if check is not None:
                return self._defer_unsent(command, record, check)
        attempt = begun or self.ledger.begin_attempt(
            command.command_id, self.clock(), self.settings.create_lease_seconds
        )
        if attempt is None:
            return Outcome("busy", [])
        if command.provider is Provider.ITRX and attempt.previous_unresolved:
            return self._in_doubt(
                attempt.record,
                EventError(
                    code="interrupted", reason="a create call was interrupted; it may have reached itrx"
                ),
            )
        if (
            command.provider is Provider.ZEROTRACE
            and attempt.record.attempts > 1
            and self._age(attempt.record) > self.settings.create_retry_window_seconds
        ):
            window = self.settings.create_retry_window_seconds
            return self._in_doubt(
                attempt.record,
                EventError(
                    code="retries_exhausted",
                    reason=f"no definite answer within {window:g} s of create attempts",
                ),
            )
        failpoints.hit("after_intent")
        try:
            result = self._call_create(command, attempt, zerotrace_params)
        except PartnerError as error:
            return self._create_failed(command, attempt.record, error)
        failpoints.hit("after_partner")
        outcome = self._created(command, result)
        failpoints.hit("after_commit")
        return outcome

    def _call_create(
        self, command: CreateOrderCommand, attempt: Attempt, zerotrace_params: ZeroTraceParams | None = None
    ) -> CreateResult:
        if command.provider is Provider.ZEROTRACE:
            params = command.zerotrace_params() if zerotrace_params is None else zerotrace_params
            return self.zerotrace_budget.call(
                ZEROTRACE_WEIGHTS["create"],
                lambda: self.zerotrace.create(params, attempt.record.partner_ref, command.ref_code),
            )
        return self.itrx.create(
            command.itrx_params(), attempt.record.partner_ref, self.settings.itrx_callback_url
        )

    def _created(self, command: CreateOrderCommand, result: CreateResult) -> Outcome:
        now = self.clock()
        observed = result.order
        sealed = self.sealer.seal(result.token, observed.order_id) if result.token else None
        untrackable = command.provider is Provider.ZEROTRACE and sealed is None
        next_at = None if untrackable else self._next_poll(observed.status, now, last_push_at=None)
        events = self.ledger.record_created(
            command.command_id,
            observed,
            sealed,
            self.sealer.active_key_id if sealed else None,
            untrackable,
            next_at,
            now,
        )
        if untrackable and events:
            metrics.UNTRACKABLE.labels(command.provider.value).inc()
            log.warning(
                "order %s was created without a token (replay); it is tracked by webhooks only",
                command.command_id,
            )
        return Outcome("untrackable" if untrackable else "created", events)

    def _create_failed(
        self, command: CreateOrderCommand, record: OrderRecord, error: PartnerError
    ) -> Outcome:
        now = self.clock()
        provider = command.provider.value
        reason = EventError(code=error.code, reason=error.reason)
        if error.fate is Fate.NOT_SENT and error.retryable:
            metrics.CREATE_RETRIES.labels(provider, "not_sent").inc()
            delay = self._retry_delay(record, error)
            self.ledger.end_attempt_unsent(command.command_id, now + delay, reason)
            return Outcome("retry", [])
        safe_to_resend = error.fate is Fate.REFUSED or command.provider is Provider.ZEROTRACE
        if error.retryable and safe_to_resend:
            delay = self._retry_delay(record, error)
            metrics.CREATE_RETRIES.labels(provider, error.code).inc()
            self.ledger.schedule_retry(command.command_id, now + delay, reason)
            return Outcome("retry", [])
        if error.fate is Fate.UNKNOWN and not safe_to_resend:
            return self._in_doubt(record, reason)
        return Outcome("failed", self.ledger.record_failed(command.command_id, reason, Source.CREATE, now))

    def _in_doubt(self, record: OrderRecord, error: EventError) -> Outcome:
        events = self.ledger.mark_in_doubt(record.command_id, error, self.clock())
        if events:
            metrics.IN_DOUBT.labels(record.provider).inc()
            log.warning("order %s is in_doubt (%s); it will not be sent again", record.command_id, error.code)
        return Outcome("in_doubt", events)

    def _itrx_balance_check(
        self, command: CreateOrderCommand, record: OrderRecord
    ) -> EventError | PartnerError | None:
        """An ``EventError`` refuses an order the balance cannot cover; a ``PartnerError`` defers the create.

        A balance read that fails transiently means itrx is struggling, and a create sent now could be
        answered 5xx and end in_doubt; nothing has been sent yet, so waiting costs nothing. After the retry
        window, or on a definite refusal of the read, the create goes ahead unchecked (itrx refuses what
        the balance cannot cover anyway)."""
        if not self.settings.itrx_check_balance:
            return None
        params = command.itrx_params()
        try:
            balance = self.itrx.balance()
            cost = self.itrx.price(params.energy_amount, params.period)
        except PartnerError as error:
            if error.retryable and self._age(record) < self.settings.create_retry_window_seconds:
                return error
            log.info("itrx balance check skipped for %s: %s", command.command_id, error.code)
            return None
        metrics.ITRX_BALANCE.set(balance)
        if cost > balance:
            return EventError(
                code="insufficient_balance",
                reason=f"order costs {cost} sun but the itrx balance is {balance} sun",
            )
        return None

    def _defer_unsent(self, command: CreateOrderCommand, record: OrderRecord, error: PartnerError) -> Outcome:
        metrics.CREATE_RETRIES.labels(command.provider.value, "deferred").inc()
        delay = self._retry_delay(record, error)
        self.ledger.schedule_retry(
            command.command_id, self.clock() + delay, EventError(code=error.code, reason=error.reason)
        )
        return Outcome("retry", [])

    def _age(self, record: OrderRecord) -> float:
        return self.clock() - record.created_at

    def _retry_delay(self, record: OrderRecord, error: PartnerError) -> float:
        """Capped exponential backoff with up to 25% jitter, never below the base delay.

        The exponent is the larger of the attempts made and the order's age: a create that was never sent
        does not count as an attempt, and without the age floor a partner that refuses connections would
        see every queued order once per base delay for the whole outage."""
        settings = self.settings
        doubled: float = settings.retry_base_seconds * 2.0 ** max(record.attempts - 1, 0)
        base = min(settings.retry_max_seconds, max(doubled, self._age(record)))
        return max(base * (1.0 + random.random() * 0.25), error.retry_after or 0.0)

    # ------------------------------------------------------------------ tracking
    def refresh(self, record: OrderRecord, source: Source) -> Outcome:
        """Read the order from the partner and record what changed."""
        if is_terminal(record.status) or record.status in (Status.SUBMITTING, Status.IN_DOUBT):
            return Outcome("not_open", [])
        if record.order_id is None or record.untrackable:
            return Outcome("untrackable", [])
        try:
            observed = self._fetch(record)
        except SealError as error:
            log.error("cannot open the token of %s: %s", record.command_id, error)
            return Outcome("token_unreadable", [])
        except PartnerError as error:
            log.info("poll of %s failed: %s", record.command_id, error.code)
            return Outcome("poll_failed", [])
        return self.observe(record, observed, source)

    def observe(
        self, record: OrderRecord, observed: PartnerOrder, source: Source, push: bool = False
    ) -> Outcome:
        now = self.clock()
        status = observed.status or Status(record.status)
        last_push = now if push else record.last_push_at
        events = self.ledger.apply_observation(
            record.command_id, observed, source, now, self._next_poll(status, now, last_push), push=push
        )
        return Outcome("changed" if events else "unchanged", events)

    def follow_itrx_signal(self, record: OrderRecord, serial: str) -> Outcome:
        """A verified itrx callback is a trigger, not a source: re-query by serial and record the answer.

        This is also how an in_doubt itrx order resolves itself: its callback names the serial we never
        saw. Raises PartnerError when the re-query fails, so the receiver can ask itrx to retry.
        """
        if is_terminal(record.status):
            return Outcome("not_open", [])
        return self.observe(record, self.itrx.fetch(serial), Source.WEBHOOK, push=True)

    def _fetch(self, record: OrderRecord) -> PartnerOrder:
        assert record.order_id is not None
        if record.provider == Provider.ZEROTRACE.value:
            if record.sealed_token is None:
                raise SealError("no token stored")
            token = self.sealer.open(record.sealed_token, record.order_id)
            order_id = record.order_id
            return self.zerotrace_budget.call(
                ZEROTRACE_WEIGHTS["order"], lambda: self.zerotrace.fetch(order_id, token)
            )
        return self.itrx.fetch(record.order_id)

    def _next_poll(self, status: Status | None, now: float, last_push_at: float | None) -> float | None:
        if status is None or is_terminal(status) or not self.settings.polling_enabled:
            return None
        interval = self.settings.poll_interval(status)
        if interval is None:
            return None
        if last_push_at is not None and now - last_push_at < self.settings.push_fresh_seconds:
            interval = max(interval, self.settings.poll_safety_interval)
        return now + interval

    # ------------------------------------------------------------------ helpers
    def _reject(self, key: str, kwargs: dict[str, Any], code: str, reason: str) -> Outcome:
        events = record_rejection(self.ledger, key, kwargs, code, reason, field_names(kwargs), self.clock())
        return Outcome("rejected", events)
