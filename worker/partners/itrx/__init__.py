"""The itrx.io energy API (TRON energy rental) as a partner plug-in.

itrx create is not idempotent (spec §8: ``out_trade_no`` is not checked for duplicates), so a create that
may have arrived is never sent again: the order becomes ``in_doubt`` until its callback or an operator
names the serial. Before the first create the balance is read, so an order it cannot cover fails without
a create call. Orders are read by serial alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from order_worker_client.orders import ItrxOrder
from prometheus_client import Gauge
from pydantic import BaseModel

from worker.partners.base import CreateResult, PartnerOrder, PartnerQuote
from worker.partners.contract import Capabilities, PartnerSettings, Refusal
from worker.partners.itrx.client import CALL_RESULTS, ItrxClient
from worker.partners.itrx.params import ItrxParams, ItrxQuoteParams, quote_params
from worker.partners.itrx.push import ItrxPushes
from worker.partners.itrx.settings import ItrxSettings
from worker.transport import Observer, PartnerHttp

__all__ = ["BALANCE", "ItrxPartner", "ItrxSession", "ItrxSettings", "partner"]

BALANCE = Gauge(
    "order_worker_itrx_balance_sun", "itrx account balance last read, in sun.", multiprocess_mode="mostrecent"
)


class ItrxSession:
    def __init__(self, client: ItrxClient, settings: ItrxSettings) -> None:
        self.client = client
        self.settings = settings

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"

    def create(self, params: Any, partner_ref: str, ref_code: str | None) -> CreateResult:
        return self.client.create(params, partner_ref, self.settings.callback_url)

    def fetch(self, order_id: str, secret: str | None) -> PartnerOrder:
        return self.client.fetch(order_id)

    def quote(self, params: Any) -> PartnerQuote:
        if not isinstance(params, ItrxQuoteParams):
            raise TypeError("itrx prices ItrxQuoteParams")
        return self.client.quote(params)

    def precheck(self, params: Any) -> Refusal | None:
        if not self.settings.check_balance:
            return None
        balance = self.client.balance()
        cost = self.client.price(params.energy_amount, params.period)
        BALANCE.set(balance)
        if cost > balance:
            return Refusal(
                "insufficient_balance", f"order costs {cost} sun but the itrx balance is {balance} sun"
            )
        return None


class ItrxPartner:
    name = "itrx"
    capabilities = Capabilities(
        idempotent_create=False, fetch_by_order_id=True, precheck=True, call_results=CALL_RESULTS
    )
    params_model: type[BaseModel] = ItrxParams
    order_model: type[BaseModel] = ItrxOrder
    settings_model: type[PartnerSettings] = ItrxSettings
    example_params: Mapping[str, Any] = {
        "energy_amount": 65000,
        "period": "1H",
        "receive_address": "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw",
    }

    def check_params(self, params: Mapping[str, Any], ref_code: str | None) -> BaseModel:
        if ref_code is not None:
            raise ValueError("ref_code is a 0trace feature; itrx orders cannot carry one")
        return ItrxParams.model_validate(params)

    def check_quote_params(self, params: Mapping[str, Any]) -> BaseModel:
        return quote_params(params)

    def connect(self, settings: PartnerSettings, http: PartnerHttp, observer: Observer | None) -> ItrxSession:
        group = _own(settings)
        client = ItrxClient(
            group.base_url,
            group.api_key.get_secret_value(),
            group.api_secret,
            http,
            observer=observer,
            other_secrets=group.previous_api_secrets,
        )
        return ItrxSession(client, group)

    def push_scheme(self, settings: PartnerSettings) -> ItrxPushes:
        group = _own(settings)
        return ItrxPushes([group.api_secret, *group.previous_api_secrets], group.callback_max_age)


def _own(settings: PartnerSettings) -> ItrxSettings:
    if not isinstance(settings, ItrxSettings):
        raise TypeError("itrx needs its own settings group (ItrxSettings)")
    return settings


partner = ItrxPartner()
