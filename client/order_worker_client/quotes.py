"""Price quotes over the bus: the request a producer sends and the reply the service answers with.

Only the service holds the partner credentials (0trace prices signed callers with their markup; itrx
prices only for a known API key), so a producer asks it. A quote is an AMQP request/reply on the queue
``orders.quotes`` (:data:`order_worker_client.topology.QUOTES_QUEUE`): the body is a
:class:`QuoteRequest` as JSON, the message carries ``reply_to`` and ``correlation_id``, and the reply, sent
to ``reply_to`` with the same ``correlation_id``, is a :class:`Quote` or a :class:`QuoteError` as JSON,
told apart by ``result``. :mod:`order_worker_client.quoting` is a ready client.

A quote is a price at one moment, not a reservation: the order's create is priced again by the partner.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from order_worker_client.commands import ACCOUNT_PATTERN, PROVIDER_PATTERN

DECIMAL_PATTERN = r"^\d{1,30}(\.\d{1,30})?$"
DecimalText = Annotated[str, StringConstraints(pattern=DECIMAL_PATTERN)]
"""A non-negative amount as a plain decimal string (no sign, no exponent), exact as the partner wrote it."""

MAX_QUOTE_TIMEOUT = 60.0
"""The longest a requester may ask the service to work on one quote, seconds."""


class QuoteRequest(BaseModel):
    """The body of a quote request (queue ``orders.quotes``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Annotated[str, StringConstraints(pattern=PROVIDER_PATTERN)]
    """The partner to price at (``0trace``, ``itrx``, ...)."""
    account: Annotated[str, StringConstraints(pattern=ACCOUNT_PATTERN)] | None = None
    """Which of the provider's accounts prices (its markup and rate budget); None: the default one."""
    params: dict[str, Any]
    """What to price, in the partner's own terms: the params a create for that partner takes, or only the
    fields its price needs (0trace: ``fromCcy``, ``toCcy``, ``direction``, ``amount``, optional ``afftax``;
    itrx: ``period`` and ``energy_amount`` or ``to_address``). Fields only a create needs are checked,
    then left out of the price call."""
    timeout_seconds: Annotated[float, Field(gt=0, le=MAX_QUOTE_TIMEOUT)] = 5.0
    """How long the requester waits. The service never answers later than this: waiting for the partner's
    rate budget stops in time to answer ``budget_exhausted`` instead."""


class QuoteAmount(BaseModel):
    """One side of a quote: an amount and what it is counted in."""

    model_config = ConfigDict(frozen=True)

    amount: DecimalText
    unit: str
    """An asset code as the partner names it (0trace: ``btc``, ``usdt_trc20``) or a unit (itrx: ``TRX``,
    ``energy``)."""
    minimum: DecimalText | None = None
    """The smallest amount of this side the partner accepts, when it says so."""
    maximum: DecimalText | None = None
    """The largest amount of this side the partner accepts, when it says so."""


class Quote(BaseModel):
    """A successful quote reply, the same shape for every partner."""

    model_config = ConfigDict(frozen=True)

    result: Literal["quote"] = "quote"
    provider: str
    account: str
    pay: QuoteAmount
    """What the customer pays (0trace: the deposit; itrx: the rent in TRX)."""
    receive: QuoteAmount
    """What the customer gets (0trace: the payout; itrx: the energy)."""
    rate: DecimalText | None = None
    """The partner's exchange rate, as it states it (0trace); None where it states none."""
    markup_bps: int | None = None
    """The markup the partner applied for this account, in basis points (0trace)."""
    notes: list[str] = Field(default_factory=list)
    """The partner's remarks on this price (0trace's ``errors``, e.g. an amount outside the bounds): a
    quote with notes is likely to be refused as an order."""
    partner: dict[str, Any] = Field(default_factory=dict)
    """The partner's own answer fields, unchanged (0trace: ``from``/``to`` objects; itrx: ``price``,
    ``total_price``, ``addition`` in sun, ``period``), for what the normalised fields leave out."""
    quoted_at: AwareDatetime
    """When the partner answered (RFC 3339, UTC)."""
    cached: bool = False
    """True when the service answered from its short cache instead of asking the partner."""
    age_seconds: Annotated[float, Field(ge=0)] = 0.0
    """Seconds between ``quoted_at`` and the reply."""


class QuoteErrorCode(StrEnum):
    """Why a quote was not given."""

    INVALID_REQUEST = "invalid_request"
    """The message is not a quote request (not JSON, a field missing or wrong, no ``reply_to``)."""
    INVALID_PARAMS = "invalid_params"
    """The partner's params do not validate; the reason names the fields."""
    UNKNOWN_PROVIDER = "unknown_provider"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNSUPPORTED = "unsupported"
    """The partner plug-in offers no price call."""
    PARTNER_REFUSED = "partner_refused"
    """The partner answered with a refusal (an unknown pair, an amount it rejects, an auth failure)."""
    PARTNER_UNAVAILABLE = "partner_unavailable"
    """The partner could not be reached or failed (timeouts, 5xx, its own rate limit)."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """The account's rate budget had no room before the request's timeout; ``retry_after`` says when."""
    INTERNAL = "internal"


class QuoteError(BaseModel):
    """A quote reply that carries no price."""

    model_config = ConfigDict(frozen=True)

    result: Literal["error"] = "error"
    code: QuoteErrorCode
    reason: Annotated[str, Field(max_length=1000)]
    """Readable, without secrets or the request's values."""
    retry_after: Annotated[float, Field(ge=0)] | None = None
    """Seconds after which asking again may succeed, when the service knows."""


QuoteReply = Annotated[Quote | QuoteError, Field(discriminator="result")]
"""The body of a quote reply: a :class:`Quote` or a :class:`QuoteError`, by ``result``."""

QUOTE_REPLY: TypeAdapter[Quote | QuoteError] = TypeAdapter(QuoteReply)
"""Parses and dumps reply bodies: ``QUOTE_REPLY.validate_json(body)``."""


def quote_age(quoted_at: datetime, now: datetime) -> float:
    """Seconds from ``quoted_at`` to ``now``, never negative (clocks of one host only)."""
    return max(0.0, round((now - quoted_at).total_seconds(), 3))
