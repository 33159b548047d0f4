"""What a quote request is answered with: a :class:`Quote` or a :class:`QuoteError`, never an exception.

In order: the request is validated (its partner, account and params, by the partner's own rules), the
short cache is asked, and otherwise the partner's price call is made once its weight fits in the
account's shared rate budget (:mod:`worker.ratelimit`), the same budget creates and polls spend, so
quotes can never push the service past the partner's limit. Waiting for budget stops in time to answer
within the request's timeout: then the answer is ``budget_exhausted`` with ``retry_after``. Requests for
the same price arriving together make one partner call: the later ones wait for the first's answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from order_worker_client.commands import MAX_COMMAND_BYTES
from order_worker_client.quotes import (
    Quote,
    QuoteError,
    QuoteErrorCode,
    QuoteRequest,
    quote_age,
)
from pydantic import BaseModel, ValidationError

from worker import metrics
from worker.logs import get_logger
from worker.partners.base import Fate, PartnerError, PartnerQuote
from worker.partners.contract import GivesQuotes, OffersQuotes
from worker.partners.registry import Connected, UnknownAccountError
from worker.pipeline import validation_summary
from worker.quotes.cache import CacheKey, QuoteCache, cache_key
from worker.ratelimit import WeightBudget

log = get_logger(__name__)

CALL_RESERVE_SECONDS = 0.25
"""Of a request's remaining time, what is kept for the partner call and the reply after waiting for
budget: a request with less left than this is answered ``budget_exhausted`` rather than sent."""
LOCAL_RATE_LIMIT = "local_rate_limit"
"""The code :class:`~worker.ratelimit.WeightBudget` raises when the budget had no room in time."""

Reply = Quote | QuoteError


class QuoteService:
    """Answers quote requests for the connected partners. Thread-safe."""

    def __init__(
        self,
        partners: Mapping[str, Connected],
        budgets: Mapping[str, WeightBudget],
        cache: QuoteCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.partners = dict(partners)
        self.budgets = dict(budgets)
        self.cache = cache
        self.clock = clock
        self._flights: dict[CacheKey, tuple[threading.Lock, list[int]]] = {}
        self._flights_lock = threading.Lock()

    def answer(self, body: bytes, waited: float = 0.0) -> Reply:
        """The reply to one request body; ``waited`` is how long it spent on its way (seconds), taken
        from its timeout."""
        started = time.monotonic()
        provider = "unknown"
        try:
            if len(body) > MAX_COMMAND_BYTES:
                raise ValueError(f"a quote request is at most {MAX_COMMAND_BYTES} bytes")
            request = QuoteRequest.model_validate_json(body)
        except ValidationError as error:
            reply: Reply = _error(QuoteErrorCode.INVALID_REQUEST, validation_summary(error))
        except ValueError as error:
            reply = _error(QuoteErrorCode.INVALID_REQUEST, str(error))
        else:
            if request.provider in self.partners:
                provider = request.provider
            deadline = started + request.timeout_seconds - max(0.0, waited)
            reply = self._answer(request, deadline)
        result = "ok" if isinstance(reply, Quote) else reply.code.value
        metrics.child(metrics.QUOTES, provider, result).inc()
        metrics.child(metrics.QUOTE_SECONDS, provider).observe(time.monotonic() - started)
        if isinstance(reply, Quote) and reply.cached:
            metrics.child(metrics.QUOTE_CACHE_HITS, provider).inc()
        if isinstance(reply, QuoteError) and reply.code not in _EXPECTED:
            log.warning("quote_failed", provider=provider, code=reply.code.value, reason=reply.reason)
        return reply

    def _answer(self, request: QuoteRequest, deadline: float) -> Reply:
        connected = self.partners.get(request.provider)
        if connected is None:
            known = ", ".join(sorted(self.partners)) or "none"
            return _error(QuoteErrorCode.UNKNOWN_PROVIDER, f"unknown provider (known: {known})")
        try:
            connected = connected.for_account(request.account)
        except UnknownAccountError as error:
            return _error(QuoteErrorCode.UNKNOWN_ACCOUNT, str(error))
        partner, session = connected.partner, connected.session
        if not isinstance(partner, OffersQuotes) or not isinstance(session, GivesQuotes):
            return _error(QuoteErrorCode.UNSUPPORTED, f"{partner.name} offers no price call")
        try:
            params = partner.check_quote_params(request.params)
        except ValidationError as error:
            return _error(QuoteErrorCode.INVALID_PARAMS, validation_summary(error))
        except ValueError as error:
            return _error(QuoteErrorCode.INVALID_PARAMS, str(error)[:500])
        key = cache_key(partner.name, connected.account, params)
        cached = self.cache.get(key, self.clock(), _now())
        if cached is not None:
            return cached
        # One partner call per price at a time: a request arriving while it is asked waits for the answer.
        flight = self._flight(key)
        try:
            if not flight.acquire(timeout=max(0.0, deadline - time.monotonic())):
                reason = "the same price is being asked of the partner and is late"
                return _error(QuoteErrorCode.PARTNER_UNAVAILABLE, reason)
            try:
                cached = self.cache.get(key, self.clock(), _now())
                if cached is not None:
                    return cached
                reply = self._ask(connected, session, params, deadline)
                if isinstance(reply, Quote):
                    self.cache.put(key, reply, self.clock())
                return reply
            finally:
                flight.release()
        finally:
            self._forget(key)

    def _ask(self, connected: Connected, session: GivesQuotes, params: BaseModel, deadline: float) -> Reply:
        weight = connected.partner.capabilities.weights.get("quote", 0)
        budget = self.budgets.get(connected.key)
        wait = deadline - time.monotonic() - CALL_RESERVE_SECONDS
        try:
            if budget is not None and weight:
                if wait < 0:
                    raise PartnerError(Fate.NOT_SENT, LOCAL_RATE_LIMIT, "no time left to wait", True, 0.0)
                found = budget.call(weight, lambda: session.quote(params), max_wait=wait)
            else:
                found = session.quote(params)
        except PartnerError as error:
            return _partner_error(connected.name, error)
        except Exception as error:  # a plug-in's bug must not leave the requester without an answer
            log.exception("quote_crashed", provider=connected.name, error=type(error).__name__)
            return _error(QuoteErrorCode.INTERNAL, f"the {connected.name} quote failed unexpectedly")
        return _quote(connected, found)

    def _flight(self, key: CacheKey) -> threading.Lock:
        """The key's lock, counted as used until :meth:`_forget` (the last user removes it)."""
        with self._flights_lock:
            lock, users = self._flights.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
            return lock

    def _forget(self, key: CacheKey) -> None:
        with self._flights_lock:
            _, users = self._flights[key]
            users[0] -= 1
            if not users[0]:
                del self._flights[key]


_EXPECTED = frozenset(
    {
        QuoteErrorCode.INVALID_REQUEST,
        QuoteErrorCode.INVALID_PARAMS,
        QuoteErrorCode.UNKNOWN_PROVIDER,
        QuoteErrorCode.UNKNOWN_ACCOUNT,
        QuoteErrorCode.UNSUPPORTED,
        QuoteErrorCode.PARTNER_REFUSED,
        QuoteErrorCode.BUDGET_EXHAUSTED,
    }
)
"""Answers about the request itself or an expected limit; the others are worth a warning in the log."""


def _now() -> datetime:
    return datetime.now(UTC)


def _error(code: QuoteErrorCode, reason: str, retry_after: float | None = None) -> QuoteError:
    return QuoteError(code=code, reason=reason[:1000], retry_after=retry_after)


def _partner_error(provider: str, error: PartnerError) -> QuoteError:
    """The partner's failure as a reply; ``error.reason`` is scrubbed of secrets by the partner client."""
    retry_after = round(error.retry_after, 3) if error.retry_after is not None else None
    if error.code == LOCAL_RATE_LIMIT:
        reason = f"the {provider} rate budget has no room before the request's timeout"
        return _error(QuoteErrorCode.BUDGET_EXHAUSTED, reason, retry_after)
    if error.fate is Fate.REFUSED and not error.retryable:
        return _error(QuoteErrorCode.PARTNER_REFUSED, f"{provider} refused: {error.reason}")
    return _error(QuoteErrorCode.PARTNER_UNAVAILABLE, f"{provider}: {error.reason}", retry_after)


def _quote(connected: Connected, found: PartnerQuote) -> Quote:
    now = _now()
    return Quote(
        provider=connected.name,
        account=connected.account,
        pay=found.pay,
        receive=found.receive,
        rate=found.rate,
        markup_bps=found.markup_bps,
        notes=list(found.notes),
        partner=dict(found.fields),
        quoted_at=now,
        cached=False,
        age_seconds=quote_age(now, now),
    )
