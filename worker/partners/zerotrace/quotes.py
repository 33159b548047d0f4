"""0trace's price answer (``POST /api/v1/price``, spec §8.3) as a :class:`~worker.partners.base.PartnerQuote`.

Both sides are decimal strings already (``from.amount`` is the deposit, ``to.amount`` the payout, each
with its bounds ``min``/``max``); they are kept exactly as 0trace wrote them. ``errors`` (its remarks,
such as an amount outside the bounds) become the quote's notes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from order_worker_client.quotes import DECIMAL_PATTERN

from worker.partners.base import PartnerQuote, QuoteAmount

_DECIMAL = re.compile(DECIMAL_PATTERN)
_MAX_NOTES = 8


def parse_price(data: Any) -> PartnerQuote:
    """Raises ValueError (or TypeError) when a side has no decimal amount or code."""
    if not isinstance(data, dict):
        raise TypeError("price data is not an object")
    errors = data.get("errors")
    notes = tuple(str(item)[:200] for item in errors[:_MAX_NOTES]) if isinstance(errors, list) else ()
    markup = data.get("markupBps")
    return PartnerQuote(
        pay=_side(data.get("from")),
        receive=_side(data.get("to")),
        rate=_decimal(_obj(data.get("from")).get("rate")),
        markup_bps=markup if isinstance(markup, int) and not isinstance(markup, bool) else None,
        notes=notes,
        fields=data,
    )


def _side(value: Any) -> QuoteAmount:
    side = _obj(value)
    amount, code = _decimal(side.get("amount")), side.get("code")
    if amount is None or not isinstance(code, str) or not code:
        raise ValueError("price side without a decimal amount or a code")
    return QuoteAmount(
        amount=amount, unit=code, minimum=_decimal(side.get("min")), maximum=_decimal(side.get("max"))
    )


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _decimal(value: Any) -> str | None:
    return value if isinstance(value, str) and _DECIMAL.fullmatch(value) else None
