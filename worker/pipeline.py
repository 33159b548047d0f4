"""The order pipeline: what a create or poll command does, independent of how it was delivered.

Actors (Dramatiq), the scheduler, the webhook receiver and tests all call this module; it knows the ledger,
partners through their contract (``worker.partners``) and the token sealer, and nothing of the broker.
Every decision about sending a create again lives here, and it follows one rule: send again only what
cannot create a second order, which a partner's :class:`~worker.partners.Capabilities` tell.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from worker import failpoints, metrics
from worker.ledger.base import Attempt, ClaimOutcome, Ledger, OrderRecord
from worker.ledger.outage import LedgerWaiter
from worker.logs import bind, get_logger
from worker.messages import CreateOrderCommand, EventError, OrderEvent, PollOrderCommand, Source
from worker.partners.base import CreateResult, Fate, PartnerError, PartnerOrder
from worker.partners.registry import Connected, UnknownAccountError, UnknownPartnerError
from worker.ratelimit import BudgetSettings, Priority, WeightBudget
from worker.rejections import field_names, record_rejection
from worker.sealing import SealError, TokenSealer
from worker.settings import Settings
from worker.status import Status, is_terminal

log = get_logger(__name__)

T = TypeVar("T")

LEASE_MARGIN_SECONDS = 5.0
"""A partner's answer waiting for the ledger is given up this long before its attempt's lease ends."""


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
        partners: Mapping[str, Connected],
        sealer: TokenSealer,
        clock: Callable[[], float] = time.time,
        waiter: LedgerWaiter | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.waiter = waiter or LedgerWaiter()
        self.partners = dict(partners)
        self.sealer = sealer
        self.clock = clock
        # Each account's weight budget, shared by every replica through the ledger.
        self.budgets = {
            account.key: WeightBudget(ledger, _budget_settings(account), name=account.key)
            for connected in self.partners.values()
            if connected.partner.capabilities.weights
            for account in connected.every_account()
        }

    def partner(self, name: str) -> Connected:
        connected = self.partners.get(name)
        if connected is None:
            raise UnknownPartnerError(name, sorted(self.partners))
        return connected

    def account_of(self, record: OrderRecord) -> Connected:
        """The partner account that placed the order: its reads, pushes and actions go through it."""
        return self.partner(record.provider).for_account(record.account)

    # ------------------------------------------------------------------ commands
    def handle_create(self, kwargs: dict[str, Any], message_id: str) -> Outcome:
        try:
            command = CreateOrderCommand.model_validate(kwargs)
            connected = self.partner(command.provider).for_account(command.account)
            params = connected.partner.check_params(command.params, command.ref_code)
        except ValidationError as error:
            return self._reject(message_id, kwargs, "invalid_command", validation_summary(error))
        except UnknownPartnerError as error:
            return self._reject(message_id, kwargs, "invalid_command", f"provider: {error}")
        except UnknownAccountError as error:
            return self._reject(message_id, kwargs, "invalid_command", f"account: {error}")
        except ValueError as error:
            return self._reject(message_id, kwargs, "invalid_command", str(error))
        bind(command_id=command.command_id, provider=command.provider, account=connected.account)
        now = self.clock()
        ref = partner_ref(self.settings.calls.idempotency_namespace, command.command_id)
        begun: Attempt | None = None
        if not connected.partner.capabilities.precheck:
            # Nothing to check between the claim and the first attempt, so a first sight of the command
            # claims and records the intent in one unit.
            claim, begun = self.ledger.claim_attempt(
                command, ref, now, self.settings.calls.create_lease_seconds
            )
        else:
            claim = self.ledger.claim(command, ref, now)
        if claim.outcome is ClaimOutcome.CONFLICT:
            return self._reject(
                f"conflict:{message_id}",
                kwargs,
                "command_id_conflict",
                "command_id was already used for a different order "
                "(params, provider, ref_code or account differ)",
            )
        return self._advance_create(command, connected, params, claim.record, begun)

    def handle_poll(self, kwargs: dict[str, Any], message_id: str) -> Outcome:
        try:
            command = PollOrderCommand.model_validate(kwargs)
        except ValidationError as error:
            return self._reject(message_id, kwargs, "invalid_command", validation_summary(error), Source.POLL)
        record = self.ledger.get(command.command_id)
        if record is None:
            reason = "no order was created for this command_id"
            return self._reject(message_id, kwargs, "unknown_command", reason, Source.POLL)
        bind(command_id=record.command_id, provider=record.provider, order_id=record.order_id)
        return self.refresh(record, Source.POLL)

    def handle_malformed(
        self, code: str, reason: str, detail: dict[str, Any], command_id: str | None = None
    ) -> Outcome:
        key = f"body:{detail.get('body_sha256', '')}"
        refused = {"command_id": command_id}
        events = record_rejection(
            self.ledger, key, refused, code, reason, detail, self.clock(), with_metadata=False
        )
        return Outcome("rejected", events)

    # ------------------------------------------------------------------ create
    def _advance_create(
        self,
        command: CreateOrderCommand,
        connected: Connected,
        params: BaseModel,
        record: OrderRecord,
        begun: Attempt | None = None,
    ) -> Outcome:
        if record.status != Status.SUBMITTING:
            return Outcome("duplicate", [])
        capabilities = connected.partner.capabilities
        if capabilities.precheck and record.attempts == 0 and not record.attempt_open:
            check = self._precheck(command, connected, params, record)
            if isinstance(check, EventError):
                # Attempt 0: refused before any attempt began, unless another worker began one meanwhile.
                failed = self.ledger.record_failed(
                    command.command_id, check, Source.CREATE, self.clock(), attempt=record.attempts
                )
                return self._stale(record, record.attempts) if failed is None else Outcome("failed", failed)
            if check is not None:
                return self._defer_unsent(command, record, check)
        attempt = begun or self.ledger.begin_attempt(
            command.command_id, self.clock(), self.settings.calls.create_lease_seconds
        )
        if attempt is None:
            return Outcome("busy", [])
        bind(attempt=attempt.record.attempts)
        if not capabilities.idempotent_create and attempt.previous_unresolved:
            return self._in_doubt(
                attempt.record,
                EventError(
                    code="interrupted",
                    reason=f"a create call was interrupted; it may have reached {connected.name}",
                ),
            )
        if (
            capabilities.idempotent_create
            and attempt.record.attempts > 1
            and self._age(attempt.record) > self.settings.calls.create_retry_window_seconds
        ):
            window = self.settings.calls.create_retry_window_seconds
            return self._in_doubt(
                attempt.record,
                EventError(
                    code="retries_exhausted",
                    reason=f"no definite answer within {window:g} s of create attempts",
                ),
            )
        failpoints.hit("after_intent")
        try:
            result = self.budgeted(
                connected,
                "create",
                lambda: connected.session.create(params, attempt.record.partner_ref, command.ref_code),
                self._lease_deadline(attempt.record),
            )
        except PartnerError as error:
            failure = error
            return self._until_recorded(
                attempt.record, lambda: self._create_failed(command, connected, attempt.record, failure)
            )
        failpoints.hit("after_partner")
        outcome = self._until_recorded(
            attempt.record, lambda: self._created(command, connected, result, attempt.record.attempts)
        )
        failpoints.hit("after_commit")
        return outcome

    def _until_recorded(self, record: OrderRecord, commit: Callable[[], Outcome]) -> Outcome:
        """Commit what the partner answered, trying again while the ledger is out.

        Once a create was sent, its answer exists only in this thread: given up, the create would be sent
        again, and a 0trace replay answers without the order's token (untrackable), an itrx create with an
        open attempt ends in_doubt. So the answer waits for the ledger for as long as the attempt's lease
        lasts (less a margin); past it another worker may take the order over, as after a crash."""
        return self.waiter.hold(commit, "a partner's answer to commit", self._lease_deadline(record))

    def _lease_deadline(self, record: OrderRecord) -> float:
        """The attempt's lease end, less a margin, on ``time.monotonic()``'s scale."""
        left = (record.lease_until or 0.0) - self.clock() - LEASE_MARGIN_SECONDS
        return time.monotonic() + max(0.0, left)

    def budgeted(
        self,
        connected: Connected,
        operation: str,
        call: Callable[[], T],
        hold_until: float | None = None,
        priority: Priority | None = None,
    ) -> T:
        """``call()`` once its weight fits in the partner account's shared budget (if it keeps one).

        ``hold_until``: how long to wait for a ledger that is out to charge the budget (a create holds
        its attempt's lease, and must not find the order taken over afterwards). ``priority``: the
        operation's own by default (:meth:`Priority.of`)."""
        budget = self.budgets.get(connected.key)
        weight = connected.partner.capabilities.weights.get(operation, 0)
        if budget is None or not weight:
            return call()
        return budget.call(weight, call, hold_until=hold_until, priority=priority or Priority.of(operation))

    def _created(
        self, command: CreateOrderCommand, connected: Connected, result: CreateResult, attempt: int
    ) -> Outcome:
        now = self.clock()
        observed = result.order
        bind(order_id=observed.order_id)
        sealed = self.sealer.seal(result.token, observed.order_id) if result.token else None
        untrackable = connected.partner.capabilities.secret_to_fetch and sealed is None
        next_at = None if untrackable else self._next_poll(observed.status, now, None, observed.deadline)
        events = self.ledger.record_created(
            command.command_id,
            observed,
            sealed,
            self.sealer.active_key_id if sealed else None,
            untrackable,
            next_at,
            now,
            attempt=attempt,
        )
        if events is None:
            return self._stale(command, attempt)
        if events:
            log.info("order_created", status=observed.status)
            held = sum(1 for event in events if event.source is Source.WEBHOOK)
            if held:
                # Pushes that arrived before this answer was committed, applied in its transaction.
                metrics.HELD_PUSHES_APPLIED.labels(command.provider).inc(held)
                log.info("held_pushes_applied", events=held)
        if untrackable and events:
            metrics.UNTRACKABLE.labels(command.provider).inc()
            log.warning("order_untrackable", reason="created without a token (a replay); webhooks track it")
        return Outcome("untrackable" if untrackable else "created", events)

    def _create_failed(
        self, command: CreateOrderCommand, connected: Connected, record: OrderRecord, error: PartnerError
    ) -> Outcome:
        """``record`` is the row as this worker's attempt began it: its ``attempts`` is the attempt's
        number, which fences every write below."""
        now = self.clock()
        provider = command.provider
        attempt = record.attempts
        reason = EventError(code=error.code, reason=error.reason)
        if error.fate is Fate.NOT_SENT and error.retryable:
            delay = self._retry_delay(record, error)
            if not self.ledger.end_attempt_unsent(command.command_id, now + delay, reason, attempt=attempt):
                return self._stale(record, attempt)
            metrics.CREATE_RETRIES.labels(provider, "not_sent").inc()
            log.info("create_deferred", code=error.code, again_in_seconds=round(delay, 1))
            return Outcome("retry", [])
        safe_to_resend = error.fate is Fate.REFUSED or connected.partner.capabilities.idempotent_create
        if error.retryable and safe_to_resend:
            delay = self._retry_delay(record, error)
            if not self.ledger.schedule_retry(command.command_id, now + delay, reason, attempt=attempt):
                return self._stale(record, attempt)
            metrics.CREATE_RETRIES.labels(provider, error.code).inc()
            return Outcome("retry", [])
        if error.fate is Fate.UNKNOWN and not safe_to_resend:
            return self._in_doubt(record, reason)
        failed = self.ledger.record_failed(command.command_id, reason, Source.CREATE, now, attempt=attempt)
        return self._stale(record, attempt) if failed is None else Outcome("failed", failed)

    def _in_doubt(self, record: OrderRecord, error: EventError) -> Outcome:
        """Park the order of the attempt ``record`` began (its ``attempts`` is the attempt's number)."""
        events = self.ledger.mark_in_doubt(record.command_id, error, self.clock(), attempt=record.attempts)
        if events is None:
            return self._stale(record, record.attempts)
        if events:
            metrics.IN_DOUBT.labels(record.provider).inc()
            log.warning("order_in_doubt", code=error.code, next="never sent again")
        return Outcome("in_doubt", events)

    def _precheck(
        self, command: CreateOrderCommand, connected: Connected, params: BaseModel, record: OrderRecord
    ) -> EventError | PartnerError | None:
        """An ``EventError`` refuses an order the partner's precheck says cannot succeed (a balance that
        cannot cover it); a ``PartnerError`` defers the create.

        A check that fails transiently means the partner is struggling, and a create sent now could be
        answered 5xx and end in_doubt; nothing has been sent yet, so waiting costs nothing. After the retry
        window, or on a definite refusal of the check, the create goes ahead unchecked (the partner refuses
        what it cannot do anyway)."""
        try:
            refusal = connected.session.precheck(params)
        except PartnerError as error:
            if error.retryable and self._age(record) < self.settings.calls.create_retry_window_seconds:
                return error
            log.info("precheck_skipped", code=error.code)
            return None
        return None if refusal is None else EventError(code=refusal.code, reason=refusal.reason)

    def _defer_unsent(self, command: CreateOrderCommand, record: OrderRecord, error: PartnerError) -> Outcome:
        delay = self._retry_delay(record, error)
        reason = EventError(code=error.code, reason=error.reason)
        if not self.ledger.schedule_retry(
            command.command_id, self.clock() + delay, reason, attempt=record.attempts
        ):
            return self._stale(record, record.attempts)
        metrics.CREATE_RETRIES.labels(command.provider, "deferred").inc()
        return Outcome("retry", [])

    def _stale(self, order: OrderRecord | CreateOrderCommand, attempt: int) -> Outcome:
        """This worker's attempt is no longer the order's current one: the worker was paused (past its
        lease, or in a precheck before any attempt) and another worker began a newer attempt, which owns
        the order now. Nothing was written; nothing more is sent for the order from here (no retry, no
        poll), whatever this worker's call answered."""
        stored = self.ledger.get(order.command_id)
        metrics.child(metrics.STALE_ATTEMPTS, order.provider).inc()
        log.warning(
            "attempt_stale",
            command_id=order.command_id,
            attempt=attempt,
            current_attempt=None if stored is None else stored.attempts,
        )
        return Outcome("stale", [])

    def _age(self, record: OrderRecord) -> float:
        return self.clock() - record.created_at

    def _retry_delay(self, record: OrderRecord, error: PartnerError) -> float:
        """Capped exponential backoff with up to 25% jitter, never below the base delay.

        The exponent is the larger of the attempts made and the order's age: a create that was never sent
        does not count as an attempt, and without the age floor a partner that refuses connections would
        see every queued order once per base delay for the whole outage."""
        settings = self.settings
        doubled: float = settings.calls.retry_base_seconds * 2.0 ** max(record.attempts - 1, 0)
        base = min(settings.calls.retry_max_seconds, max(doubled, self._age(record)))
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
            log.error("token_unopenable", error=str(error))
            return Outcome("token_unreadable", [])
        except UnknownAccountError as error:
            # The account was removed from the settings while the order is open: nothing can read it.
            log.error("account_unknown", error=str(error))
            return Outcome("account_unknown", [])
        except PartnerError as error:
            log.info("poll_failed", code=error.code)
            return Outcome("poll_failed", [])
        return self.observe(record, observed, source)

    def observe(
        self, record: OrderRecord, observed: PartnerOrder, source: Source, push: bool = False
    ) -> Outcome:
        now = self.clock()
        status = observed.status or Status(record.status)
        last_push = now if push else record.last_push_at
        next_at = self._next_poll(status, now, last_push, observed.deadline)
        events = self.ledger.apply_observation(record.command_id, observed, source, now, next_at, push=push)
        return Outcome("changed" if events else "unchanged", events)

    def follow_signal(self, record: OrderRecord, order_id: str) -> Outcome:
        """A verified push that only signals a change is a trigger, not a source: read the order by its id
        and record the answer.

        This is also how an in_doubt order resolves itself: its push names the partner order we never
        saw. Raises PartnerError when the read fails, so the receiver can ask the partner to retry.
        """
        if is_terminal(record.status):
            return Outcome("not_open", [])
        connected = self.account_of(record)
        observed = self.budgeted(connected, "fetch", lambda: connected.session.fetch(order_id, None))
        return self.observe(record, observed, Source.WEBHOOK, push=True)

    def read_by_order_id(self, provider: str, order_id: str, account: str | None = None) -> PartnerOrder:
        """The partner's order as it is now, named by its id alone (an operator settling an in_doubt
        order); refused for partners that cannot read an order without its secret."""
        connected = self.partner(provider).for_account(account)
        if not connected.partner.capabilities.fetch_by_order_id:
            raise ValueError(f"{provider} orders cannot be read by their id alone")
        return self.budgeted(
            connected, "fetch", lambda: connected.session.fetch(order_id, None), priority=Priority.FIRST
        )

    def _fetch(self, record: OrderRecord) -> PartnerOrder:
        assert record.order_id is not None
        connected = self.account_of(record)
        secret = self.order_secret(connected, record)
        order_id = record.order_id
        return self.budgeted(connected, "fetch", lambda: connected.session.fetch(order_id, secret))

    def order_secret(self, connected: Connected, record: OrderRecord) -> str | None:
        """The one-time secret a partner needs to address the order (sealed at rest), for partners that
        hand one out; raises SealError when it is missing or cannot be opened."""
        if not connected.partner.capabilities.secret_to_fetch:
            return None
        if record.sealed_token is None or record.order_id is None:
            raise SealError("no token stored")
        return self.sealer.open(record.sealed_token, record.order_id)

    def _next_poll(
        self, status: Status | None, now: float, last_push_at: float | None, deadline: float | None
    ) -> float | None:
        """When to poll next: the status's cadence; rarely while pushes keep the order fresh; more often
        near the partner's deadline (unless pushes tell us anyway)."""
        tracking = self.settings.tracking
        if status is None or is_terminal(status) or not tracking.polling_enabled:
            return None
        interval = tracking.poll_interval(status)
        if interval is None:
            return None
        if last_push_at is not None and now - last_push_at < tracking.push_fresh_seconds:
            interval = max(interval, tracking.poll_safety_interval)
        elif deadline is not None and deadline - now <= tracking.deadline_horizon_seconds:
            interval = min(interval, tracking.deadline_poll_interval)
        return now + interval

    # ------------------------------------------------------------------ helpers
    def _reject(
        self, key: str, kwargs: dict[str, Any], code: str, reason: str, source: Source = Source.CREATE
    ) -> Outcome:
        detail = field_names(kwargs)
        events = record_rejection(self.ledger, key, kwargs, code, reason, detail, self.clock(), source=source)
        if events:
            # The code and the names of the fields only: a refused command's values may hold anything.
            log.info("command_rejected", code=code, fields=detail.get("fields"))
        return Outcome("rejected", events)


def _budget_settings(connected: Connected) -> BudgetSettings:
    return BudgetSettings.model_validate(connected.settings, from_attributes=True)
