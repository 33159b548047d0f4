"""itrx's price answer (``GET /order/price``) as a :class:`~worker.partners.base.PartnerQuote`.

itrx counts money in sun (1 TRX = 1,000,000 sun) as integers; the quote states the rent in TRX as an
exact decimal, and keeps itrx's own integers (``price`` per unit, ``total_price``, ``addition``) in
its fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from worker.partners.base import PartnerQuote, QuoteAmount

SUN_PER_TRX = 1_000_000
_PERIOD_LABELS = {0: "1H", 1: "1D", 3: "3D", 30: "30D"}


def trx_from_sun(sun: int) -> str:
    """Sun as TRX, exact and without exponent or trailing zeros (``5850000`` -> ``"5.85"``)."""
    text = format(Decimal(sun) / SUN_PER_TRX, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_quote(answer: Mapping[str, Any]) -> PartnerQuote:
    """Raises ValueError when the answer lacks ``total_price`` or ``energy_amount`` as whole numbers."""
    total, energy = _count(answer.get("total_price")), _count(answer.get("energy_amount"))
    if total is None or energy is None:
        raise ValueError("price answer without total_price or energy_amount")
    fields = {
        key: answer[key]
        for key in ("period", "energy_amount", "price", "total_price", "addition")
        if key in answer
    }
    period = answer.get("period")
    if isinstance(period, int) and not isinstance(period, bool) and period in _PERIOD_LABELS:
        fields["period"] = _PERIOD_LABELS[period]  # the price answer's numeric code, as requests name it
    return PartnerQuote(
        pay=QuoteAmount(amount=trx_from_sun(total), unit="TRX"),
        receive=QuoteAmount(amount=str(energy), unit="energy"),
        fields=fields,
    )


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
