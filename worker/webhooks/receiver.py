"""Verifying and applying partner pushes (webhooks, callbacks), independent of the HTTP server.

Every partner's pushes take one path; what differs (header names, time window, signature, body shape)
is the partner's :class:`~worker.partners.PushScheme`.

A partner's accounts share its URL (``/webhooks/<provider>``): a push is verified against the secrets of
every account of the partner, and applied only to an order placed by an account whose secret signed it.

Order of checks matters: size, headers and timestamp are checked first (cheap), the HMAC over the raw
bytes next, and only a verified body is parsed. A verified change goes through the same ledger
transition a poll would make, so it gets the same event id and is published once. Answers:

* 2xx only after the ledger committed (or there was nothing to commit: duplicate, unknown order or event);
* 4xx for anything wrong with the request, never 5xx for bad input;
* 503 only when our own dependency failed (ledger, or the read a signal asks for), or when a push must be
  held and ``HELD_PUSHES_MAX`` are held already, so the partner retries.

A push that describes an order (0trace's ``order.status_changed``) and names a partner order the ledger
does not know yet is *held* (202 ``held``): its create has not committed the answer that names the order
(slow, or lost and replayed). The ledger applies it in the transaction that makes the order known
(:mod:`worker.ledger.held`), so it is not lost even for an order created untrackable, which no poll would
ever read. A push that only signals a change (itrx) names our out_trade_no, which the ledger knows from
the claim on, so an order it cannot find is not ours: ``unknown_order``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker import metrics, tracing
from worker.ledger.base import HeldPush, HoldOutcome, Ledger, OrderRecord
from worker.logs import bind, command_scope, get_logger
from worker.messages import DEFAULT_ACCOUNT, Source
from worker.partners.base import PartnerError
from worker.partners.contract import IgnoredPush, Push, PushScheme
from worker.partners.signing import timestamp_in_window
from worker.pipeline import OrderPipeline, Outcome
from worker.settings import Settings

log = get_logger(__name__)

Headers = Mapping[str, Sequence[str]]
"""Header name (lower case) -> every value received, so duplicated headers can be refused."""


@dataclass(frozen=True)
class PushResult:
    status: int
    result: str
    """Closed vocabulary, used as a metric label: accepted, duplicate, held, unknown_order, ignored_event,
    or a refusal (bad_signature, stale_timestamp, hold_full, ...)."""
    events: int = 0

    def body(self) -> bytes:
        return json.dumps({"result": self.result}).encode()


def _single(headers: Headers, name: str) -> str | None:
    """The one value of a header; None when it is missing or sent more than once (ambiguous)."""
    values = headers.get(name.lower(), ())
    return values[0] if len(values) == 1 else None


class PushReceiver:
    """Applies the pushes of every partner that has a push scheme, through one path."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        pipeline: OrderPipeline,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.pipeline = pipeline
        self.clock = clock
        self.schemes: dict[str, PushScheme] = {
            name: connected.push
            for name, connected in pipeline.partners.items()
            if connected.push is not None
        }
        # Every account's scheme of each partner: one URL per partner, and the secret that signed a push
        # says which account sent it.
        self.account_schemes: dict[str, dict[str, PushScheme]] = {
            name: {
                account.account: account.push
                for account in connected.every_account()
                if account.push is not None
            }
            for name, connected in pipeline.partners.items()
            if connected.push is not None
        }

    def receive(self, provider: str, raw: bytes, headers: Headers) -> PushResult:
        """Verify, parse and apply one push for ``provider`` (a name from :attr:`schemes`)."""
        started = self.clock()
        scheme = self.schemes[provider]
        # A partner that traces its pushes sends W3C headers; the push's span and the events it causes
        # then continue that trace (a malformed header is ignored, as W3C prescribes).
        carrier = {name: _single(headers, name) for name in (tracing.TRACEPARENT, tracing.TRACESTATE)}
        attributes = {"order_worker.partner.provider": provider, "http.request.method": "POST"}
        with (
            command_scope(provider=provider),
            tracing.continued(f"order-worker webhook {provider}", carrier, attributes) as span,
        ):
            result = self._receive(provider, scheme, raw, headers, started)
            span.set("order_worker.push.result", result.result)
            span.set("http.response.status_code", result.status)
        if scheme.delivered_status is not None and 200 <= result.status < 300:
            result = PushResult(scheme.delivered_status, result.result, result.events)
        return self._count(provider, result, started)

    def _receive(
        self, provider: str, scheme: PushScheme, raw: bytes, headers: Headers, now: float
    ) -> PushResult:
        checked = self._envelope(raw, headers, now, scheme)
        if isinstance(checked, PushResult):
            return checked
        signature, timestamp = checked
        signers = [
            account
            for account, candidate in self.account_schemes[provider].items()
            if candidate.verify(raw, signature, timestamp)
        ]
        if not signers:
            return PushResult(401, "bad_signature")
        body = _json_object(raw)
        if body is None:
            return PushResult(400, "bad_body")
        try:
            push = scheme.parse(body)
        except (PartnerError, KeyError, TypeError, ValueError, ArithmeticError):
            return PushResult(400, "bad_body")
        if isinstance(push, IgnoredPush):
            self.ledger.record_push(push.dedupe_key, now)
            return PushResult(202, "ignored_event")
        bind(push_key=push.dedupe_key, order_id=push.order_id)
        record = self._find(provider, push) or self._hold(provider, push, signers, now)
        if isinstance(record, PushResult):
            return record
        bind(command_id=record.command_id, order_id=record.order_id or push.order_id)
        if (record.account or DEFAULT_ACCOUNT) not in signers:
            # Signed by another of our accounts at this partner: that account's secret must not move an
            # order it did not place.
            log.warning("push_account_mismatch", signed_by=signers, account=record.account or DEFAULT_ACCOUNT)
            return PushResult(401, "account_mismatch")
        if push.observed is not None:
            outcome = self.pipeline.observe(record, push.observed, Source.WEBHOOK, push=True)
        else:
            applied = self._follow(provider, record, push, now)
            if isinstance(applied, PushResult):
                return applied
            outcome = applied
        first = self.ledger.record_push(push.dedupe_key, now)
        if outcome.events:
            return PushResult(200, "accepted", len(outcome.events))
        return PushResult(200, "accepted" if first else "duplicate")

    def _find(self, provider: str, push: Push) -> OrderRecord | None:
        record = self.ledger.find_by_order_id(provider, push.order_id) if push.order_id else None
        if record is None and push.partner_ref:
            record = self.ledger.find_by_partner_ref(provider, push.partner_ref)
        return record

    def _hold(self, provider: str, push: Push, signers: list[str], now: float) -> OrderRecord | PushResult:
        """A push for an order not found: held until the order appears, or the order found after all (its
        create committed meanwhile). Only a push that describes the order can be held: applying it then
        needs no partner call."""
        limit = self.settings.tracking.held_pushes_max
        if push.observed is None or push.order_id is None or limit == 0:
            self.ledger.record_push(push.dedupe_key, now)
            log.info("push_unknown_order")
            return PushResult(202, "unknown_order")
        held = HeldPush(push.dedupe_key, provider, push.order_id, tuple(signers), push.observed)
        outcome, expired = self.ledger.hold_push(
            held, now, limit, now - self.settings.tracking.held_push_seconds
        )
        if expired:
            metrics.HELD_PUSHES_EXPIRED.inc(expired)
        if outcome is HoldOutcome.FOUND:
            found = self._find(provider, push)
            if found is not None:
                return found
        if outcome is HoldOutcome.FULL:
            log.warning("push_hold_full", limit=limit, next="the partner retries")
            return PushResult(503, "hold_full")
        if outcome is HoldOutcome.HELD:
            metrics.HELD_PUSHES.labels(provider).inc()
            log.info("push_held", next="applied when the create records the order")
        return PushResult(202, "held")

    def _follow(self, provider: str, record: OrderRecord, push: Push, now: float) -> Outcome | PushResult:
        """A push that only signals a change: read the order it names, and apply what the partner says."""
        order_id = push.order_id
        if record.order_id is not None and order_id is not None and order_id != record.order_id:
            # Our key on another partner order means the partner holds two orders for one command: flag
            # it, never merge the other order's state into ours.
            log.error("push_names_another_order", pushed_order_id=order_id, reason="possible duplicate order")
            order_id = record.order_id
        order_id = order_id or record.order_id
        if order_id is None:
            self.ledger.record_push(push.dedupe_key, now)
            log.warning("push_names_no_order", next="an operator must resolve it")
            return PushResult(202, "no_serial")
        try:
            return self.pipeline.follow_signal(record, order_id)
        except PartnerError as error:
            if not error.retryable:
                log.warning("push_read_refused", code=error.code)
                self.ledger.record_push(push.dedupe_key, now)
                return PushResult(202, "requery_refused")
            log.warning("push_read_failed", code=error.code, next="the partner retries")
            return PushResult(503, "requery_failed")

    # ------------------------------------------------------------------ shared
    def _envelope(
        self, raw: bytes, headers: Headers, now: float, scheme: PushScheme
    ) -> tuple[str, str] | PushResult:
        """The cheap checks before any HMAC: size, exactly one signature and timestamp, time window.
        Returns (signature, timestamp) or the refusal."""
        if len(raw) > self.settings.serving.webhook_max_body:
            return PushResult(413, "too_large")
        signature = _single(headers, scheme.signature_header)
        timestamp = _single(headers, scheme.timestamp_header)
        if signature is None or timestamp is None:
            return PushResult(400, "missing_or_repeated_header")
        if not timestamp_in_window(timestamp, now=now, max_future=scheme.max_future, max_age=scheme.max_age):
            return PushResult(401, "stale_timestamp")
        return signature, timestamp

    def too_large(self, provider: str) -> PushResult:
        """For a server that stopped reading a body at the limit."""
        return self._count(provider, PushResult(413, "too_large"), self.clock())

    def _count(self, provider: str, result: PushResult, started: float) -> PushResult:
        metrics.PUSHES.labels(provider, result.result).inc()
        if result.events:
            metrics.PUSH_TO_EVENT.observe(self.clock() - started)
        return result


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None
