"""Every field a partner client puts in an event's ``order`` is declared by that partner's order model in
the client package (which the AsyncAPI document is generated from), with the declared type."""

from __future__ import annotations

from typing import Any

from order_worker_client.orders import ItrxOrder, ZeroTraceOrder, typed_order
from pydantic import BaseModel

from tests.providers.test_itrx_client import ADDR, PARAMS, QUERY_ANSWER, SERIAL
from tests.providers.test_zerotrace_client import DTO
from worker.partners import registry
from worker.partners.itrx.client import _create_result, _order_from
from worker.partners.zerotrace.client import parse_order


def _declared(model: type[BaseModel], order: dict[str, Any]) -> None:
    undeclared = set(order) - set(model.model_fields)
    assert not undeclared, f"{model.__name__} lacks {sorted(undeclared)}"
    parsed = model.model_validate(order)
    assert parsed.model_dump(mode="json", exclude_unset=True) == order


def test_zerotrace_orders_fit_their_model() -> None:
    _declared(ZeroTraceOrder, parse_order(DTO).order)


def test_itrx_orders_fit_their_model_from_a_query_and_from_a_create() -> None:
    queried = _order_from(QUERY_ANSWER, SERIAL, "order-worker:c1:itrx")
    assert queried is not None
    _declared(ItrxOrder, queried.order)
    created = _create_result({"serial": SERIAL, "amount": 3120000, "balance": 795000000000}, PARAMS, "o1")
    _declared(ItrxOrder, created.order.order)
    assert created.order.order["receive_address"] == ADDR


def test_each_built_in_partner_names_its_order_model_and_consumers_get_it_typed() -> None:
    assert registry.get("0trace").order_model is ZeroTraceOrder  # type: ignore[attr-defined]
    assert registry.get("itrx").order_model is ItrxOrder  # type: ignore[attr-defined]
    typed = typed_order("0trace", parse_order(DTO).order)
    assert isinstance(typed, ZeroTraceOrder) and typed.id == DTO["id"]
    assert typed_order("a-plugin", {"x": 1}) == {"x": 1}
