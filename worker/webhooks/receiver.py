"""Verifying and applying partner pushes (0trace webhooks, itrx callbacks), independent of the HTTP server.

Order of checks matters: size, headers and timestamp are checked first (cheap), the HMAC over the raw
bytes next, and only a verified body is parsed. A verified change goes through the same ledger
transition a poll would make, so it gets the same event id and is published once. Answers:

* 2xx only after the ledger committed (or there was nothing to commit: duplicate, unknown order or event);
* 4xx for anything wrong with the request, never 5xx for bad input;
* 503 only when our own dependency failed (ledger, or the itrx re-query), so the partner retries later.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker import metrics
from worker.ledger.base import Ledger, OrderRecord
from worker.messages import Source
from worker.pipeline import OrderPipeline
from worker.providers.base import PartnerError
from worker.providers.itrx import parse_callback
from worker.providers.zerotrace import parse_order
from worker.settings import Settings
from worker.signing import (
    ZEROTRACE_MAX_AGE,
    ZEROTRACE_MAX_FUTURE,
    timestamp_in_window,
    verify_itrx_callback,
    verify_zerotrace_webhook,
)

log = logging.getLogger(__name__)

Headers = Mapping[str, Sequence[str]]
"""Header name (lower case) -> every value received, so duplicated headers can be refused."""

ITRX_MAX_FUTURE = 60.0


@dataclass(frozen=True)
class PushResult:
    status: int
    result: str
    """Closed vocabulary, used as a metric label: accepted, duplicate, unknown_order, ignored_event, or a
    rejection reason (bad_signature, stale_timestamp, ...)."""
    events: int = 0

    def body(self) -> bytes:
        return json.dumps({"result": self.result}).encode()


def _single(headers: Headers, name: str) -> str | None:
    """The one value of a header; None when it is missing or sent more than once (ambiguous)."""
    values = headers.get(name.lower(), ())
    return values[0] if len(values) == 1 else None


class PushReceiver:
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
        self.zerotrace_secrets = [s.get_secret_value() for s in settings.zerotrace_webhook_secrets]
        self.itrx_secrets = [
            s.get_secret_value() for s in (settings.itrx_api_secret, *settings.itrx_previous_api_secrets)
        ]

    # ------------------------------------------------------------------ 0trace
    def zerotrace(self, raw: bytes, headers: Headers) -> PushResult:
        started = self.clock()
        result = self._zerotrace(raw, headers, started)
        return self._count("0trace", result, started)

    def _zerotrace(self, raw: bytes, headers: Headers, now: float) -> PushResult:
        checked = self._envelope(
            raw,
            headers,
            now,
            ("x-partner-webhook-sign", "x-partner-webhook-timestamp"),
            ZEROTRACE_MAX_FUTURE,
            ZEROTRACE_MAX_AGE,
        )
        if isinstance(checked, PushResult):
            return checked
        signature, _timestamp = checked
        if not verify_zerotrace_webhook(raw, signature, self.zerotrace_secrets):
            return PushResult(401, "bad_signature")
        body = _json_object(raw)
        if body is None:
            return PushResult(400, "bad_body")
        event = body.get("event")
        if event != "order.status_changed":
            self.ledger.record_push(f"event:{str(event)[:64]}:{body.get('ts')}", now)
            return PushResult(202, "ignored_event")
        if not isinstance(body.get("order"), dict):
            return PushResult(400, "bad_body")
        try:
            observed = parse_order(body["order"])
        except (PartnerError, KeyError, TypeError, ValueError, ArithmeticError):
            return PushResult(400, "bad_body")
        dedupe_key = f"order:{observed.order_id}:{observed.provider_status}"
        record = self.ledger.find_by_order_id("0trace", observed.order_id)
        if record is None:
            self.ledger.record_push(dedupe_key, now)
            log.info(
                "0trace webhook for an order this ledger does not know (%s); recorded",
                observed.provider_status,
            )
            return PushResult(202, "unknown_order")
        outcome = self.pipeline.observe(record, observed, Source.WEBHOOK, push=True)
        first = self.ledger.record_push(dedupe_key, now)
        if outcome.events:
            return PushResult(200, "accepted", len(outcome.events))
        return PushResult(200, "accepted" if first else "duplicate")

    # ------------------------------------------------------------------ itrx
    def itrx(self, raw: bytes, headers: Headers) -> PushResult:
        started = self.clock()
        result = self._itrx(raw, headers, started)
        if result.status == 202:
            # itrx counts only HTTP 200 as delivered and would redeliver a 202 seven more times.
            result = PushResult(200, result.result, result.events)
        return self._count("itrx", result, started)

    def _itrx(self, raw: bytes, headers: Headers, now: float) -> PushResult:
        checked = self._envelope(
            raw,
            headers,
            now,
            ("signature", "timestamp"),
            ITRX_MAX_FUTURE,
            self.settings.itrx_callback_max_age,
        )
        if isinstance(checked, PushResult):
            return checked
        signature, timestamp = checked
        form = verify_itrx_callback(raw, timestamp, signature, self.itrx_secrets)
        if form is None:
            return PushResult(401, "bad_signature")
        if form != "raw":
            log.info("itrx callback verified against its %s re-serialisation, not the raw bytes", form)
        body = _json_object(raw)
        if body is None:
            return PushResult(400, "bad_body")
        try:
            serial, out_trade_no, _claimed = parse_callback(body)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return PushResult(400, "bad_body")
        record = self._itrx_record(serial, out_trade_no)
        dedupe_key = f"itrx:{serial or out_trade_no}:{body.get('status')}"
        if record is None:
            self.ledger.record_push(dedupe_key, now)
            log.info("itrx callback for an order this ledger does not know; recorded")
            return PushResult(202, "unknown_order")
        if record.order_id is not None and serial is not None and serial != record.order_id:
            # Our out_trade_no on another serial means itrx holds two orders for one command: flag it,
            # never merge the other order's state into ours.
            log.error(
                "itrx callback names another serial for %s: a possible duplicate itrx order",
                record.command_id,
            )
            serial = record.order_id
        serial = serial or record.order_id
        if serial is None:
            self.ledger.record_push(dedupe_key, now)
            log.warning(
                "itrx callback for %s names no serial; an operator must resolve it", record.command_id
            )
            return PushResult(202, "no_serial")
        try:
            outcome = self.pipeline.follow_itrx_signal(record, serial)
        except PartnerError as error:
            if not error.retryable:
                log.warning("itrx refused the re-query after a callback (%s); recorded", error.code)
                self.ledger.record_push(dedupe_key, now)
                return PushResult(202, "requery_refused")
            log.warning("itrx re-query after a callback failed (%s); asking itrx to retry", error.code)
            return PushResult(503, "requery_failed")
        first = self.ledger.record_push(dedupe_key, now)
        if outcome.events:
            return PushResult(200, "accepted", len(outcome.events))
        return PushResult(200, "accepted" if first else "duplicate")

    def _itrx_record(self, serial: str | None, out_trade_no: str | None) -> OrderRecord | None:
        record = self.ledger.find_by_order_id("itrx", serial) if serial else None
        if record is None and out_trade_no:
            record = self.ledger.find_by_partner_ref("itrx", out_trade_no)
        return record

    # ------------------------------------------------------------------ shared
    def _envelope(
        self,
        raw: bytes,
        headers: Headers,
        now: float,
        names: tuple[str, str],
        max_future: float,
        max_age: float,
    ) -> tuple[str, str] | PushResult:
        """The cheap checks before any HMAC: size, exactly one signature and timestamp, time window.
        Returns (signature, timestamp) or the refusal."""
        if len(raw) > self.settings.webhook_max_body:
            return PushResult(413, "too_large")
        signature, timestamp = (_single(headers, name) for name in names)
        if signature is None or timestamp is None:
            return PushResult(400, "missing_or_repeated_header")
        if not timestamp_in_window(timestamp, now=now, max_future=max_future, max_age=max_age):
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
