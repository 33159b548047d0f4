"""The ``order`` of an event, per partner: the partner's order as order-worker last saw it, normalised.

Amounts are decimal strings, exactly as the partner wrote them (never floats); times are RFC 3339 UTC
with their unix seconds beside them. Fields the partner did not send are null. Like events, these models
ignore fields they do not know, so a partner adding one breaks no consumer.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

DecimalString = Annotated[
    str, Field(description="A decimal number as text, exact as the partner wrote it.", examples=["0.015"])
]
Moment = Annotated[
    str, Field(description="RFC 3339 date-time in UTC.", examples=["2026-12-07T01:02:03.000Z"])
]


class _Order(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ZeroTraceEmergency(_Order):
    status: list[str] = Field(default_factory=list)
    """What 0trace holds the order for (e.g. ``EXPIRED``, ``LESS``, ``MORE``, ``LIMIT``)."""
    choice: str | None = None
    """The choice made on it, if any (``EXCHANGE``)."""


class ZeroTraceOrder(_Order):
    """A 0trace swap: ``from`` is what the customer deposits, ``to`` what is paid out."""

    id: str
    type: str | None = None
    from_code: str | None = None
    from_network: str | None = None
    from_amount: DecimalString | None = None
    deposit_address: str | None = None
    deposit_tx_id: str | None = None
    deposit_amount_received: DecimalString | None = None
    to_code: str | None = None
    to_network: str | None = None
    to_amount: DecimalString | None = None
    recipient_address: str | None = None
    payout_tx_id: str | None = None
    payout_amount: DecimalString | None = None
    refund_address: str | None = None
    refund_tx_id: str | None = None
    created_at: Moment | None = None
    created_at_unix: int | None = None
    expires_at: Moment | None = None
    """When the deposit window closes."""
    expires_at_unix: int | None = None
    finished_at: Moment | None = None
    finished_at_unix: int | None = None
    rate: DecimalString | None = None
    network_fee: DecimalString | None = None
    markup_bps: int | None = None
    emergency: ZeroTraceEmergency | None = None


class ItrxDelegation(_Order):
    delegate_tx_id: str | None = None
    delegated_at: Moment | None = None
    reclaim_tx_id: str | None = None
    reclaim_due_at: Moment | None = None
    reclaimed_at: Moment | None = None
    status: int | None = None


class ItrxOrder(_Order):
    """An itrx energy rental. Money is in sun (1 TRX = 1,000,000 sun), as decimal strings."""

    serial: str
    out_trade_no: str | None = None
    receive_address: str | None = None
    energy_amount: int | None = None
    delegated_energy: int | None = None
    period: str | None = None
    cost_sun: DecimalString | None = None
    refund_sun: DecimalString | None = None
    balance_sun: DecimalString | None = None
    """The account's balance after the create (only on the create's own event)."""
    created_at: Moment | None = None
    created_at_unix: int | None = None
    delegations: list[ItrxDelegation] = Field(default_factory=list)


ORDER_MODELS: dict[str, type[BaseModel]] = {"0trace": ZeroTraceOrder, "itrx": ItrxOrder}
"""The order model of each built-in partner, by provider id."""


def typed_order(provider: str | None, order: dict[str, Any] | None) -> BaseModel | dict[str, Any] | None:
    """An event's ``order`` as its partner's model, or as it came for a partner this package does not
    know (a plug-in's)."""
    model = ORDER_MODELS.get(provider or "")
    if order is None or model is None:
        return order
    return model.model_validate(order)
