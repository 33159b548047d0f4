"""What every partner session returns, and (re-exported from the transport) how its failures are told.

A failed call is a :class:`PartnerError` whose :class:`Fate` says what is provable about the request;
the pipeline combines that with the partner's capabilities to decide (retry, fail, or in_doubt).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from order_worker_client.quotes import QuoteAmount

from worker.status import Status
from worker.transport import Fate, PartnerError

__all__ = ["CreateResult", "Fate", "PartnerError", "PartnerOrder", "PartnerQuote", "QuoteAmount"]


@dataclass(frozen=True)
class PartnerOrder:
    """A normalised snapshot of one partner order, as seen at one moment.

    ``order`` holds the normalised order for events: amounts as strings (0trace decimals as sent, itrx
    sun as decimal integers), addresses, tx ids and expiry. It never holds a token.
    ``updated_at`` is the partner's own change time (unix seconds) when it reports one, used to ignore
    observations older than what the ledger already holds.
    ``deadline`` (unix seconds) is when the order changes on its own unless something happens first (0trace:
    the deposit window closes while it awaits the deposit): the scheduler polls such orders more often as
    it nears, because what happens then is what the customer is waiting to hear.
    ``status`` is None for a raw status this version does not know; the raw value is kept either way.
    """

    order_id: str
    provider_status: str
    status: Status | None
    order: dict[str, Any]
    updated_at: float | None = None
    deadline: float | None = None


@dataclass(frozen=True)
class CreateResult:
    order: PartnerOrder
    token: str | None = field(repr=False)
    """A one-time secret the partner hands out with the order and needs to read it (0trace's token; None
    on an idempotent replay, and always None for partners without one)."""
    replayed: bool = False


@dataclass(frozen=True)
class PartnerQuote:
    """A partner's price answer, normalised: the parts every partner has, and its own fields as they came.

    Amounts are decimal strings in the partner's own units where it has decimals (0trace), or converted
    exactly where it counts in integers of a smaller unit (itrx sun as TRX)."""

    pay: QuoteAmount
    receive: QuoteAmount
    rate: str | None = None
    markup_bps: int | None = None
    notes: tuple[str, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)
    """The partner's answer fields, unchanged (they hold no secret: a price is not an order)."""
