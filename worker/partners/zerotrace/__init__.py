"""The 0trace Partner API (crypto swaps) as a partner plug-in.

Create is idempotent on its ``Idempotency-Key`` (spec §6), so an ambiguous create is sent again with the
same key; its answer carries a one-time order ``token`` that every later read needs, sealed at rest by the
service. A replayed create answers ``token: null``, which leaves the order to webhooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from order_worker_client.orders import ZeroTraceOrder
from pydantic import BaseModel

from worker.partners.base import CreateResult, Fate, PartnerError, PartnerOrder, PartnerQuote
from worker.partners.contract import Capabilities, PartnerSettings, Refusal
from worker.partners.zerotrace.client import CALL_RESULTS, WEIGHTS, ZeroTraceClient
from worker.partners.zerotrace.params import ZeroTraceParams, ZeroTraceQuoteParams, quote_params
from worker.partners.zerotrace.push import ZeroTracePushes
from worker.partners.zerotrace.settings import ZeroTraceSettings
from worker.transport import Observer, PartnerHttp

__all__ = ["ZeroTracePartner", "ZeroTraceSession", "ZeroTraceSettings", "partner"]

EMERGENCY_CHOICES = ("EXCHANGE",)
"""What ``POST /api/v1/emergency`` accepts (spec §8.6: anything else is EMERGENCY_INVALID_CHOICE)."""


class ZeroTraceSession:
    def __init__(self, client: ZeroTraceClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"

    def create(self, params: Any, partner_ref: str, ref_code: str | None) -> CreateResult:
        return self.client.create(params, partner_ref, ref_code)

    def fetch(self, order_id: str, secret: str | None) -> PartnerOrder:
        if secret is None:
            raise ValueError("0trace orders are read with their token")
        return self.client.fetch(order_id, secret)

    def precheck(self, params: Any) -> Refusal | None:
        return None

    def quote(self, params: Any) -> PartnerQuote:
        if not isinstance(params, ZeroTraceQuoteParams):
            raise TypeError("0trace prices ZeroTraceQuoteParams")
        return self.client.price(params)

    def resolve_action(
        self, order_id: str, secret: str | None, choice: str, options: Mapping[str, str]
    ) -> None:
        """An EMERGENCY order resumes with ``EXCHANGE``, the only choice 0trace accepts (spec §8.6); refunds
        are the partner operator's, to the create's refundAddress, so there is no call for them."""
        if secret is None:
            raise ValueError("0trace orders are resolved with their token")
        if choice not in EMERGENCY_CHOICES or options:
            raise ValueError(f"0trace accepts only {', '.join(EMERGENCY_CHOICES)} without options")
        if not self.client.emergency(order_id, secret):
            raise PartnerError(
                Fate.REFUSED, "emergency_refused", "0trace did not accept the emergency choice", False
            )


class ZeroTracePartner:
    name = "0trace"
    capabilities = Capabilities(
        idempotent_create=True,
        secret_to_fetch=True,
        fetch_by_order_id=False,
        weights={
            "create": WEIGHTS["create"],
            "fetch": WEIGHTS["order"],
            "action": WEIGHTS["emergency"],
            "quote": WEIGHTS["price"],
        },
        call_results=CALL_RESULTS,
        action_choices=EMERGENCY_CHOICES,
    )
    params_model: type[BaseModel] = ZeroTraceParams
    order_model: type[BaseModel] = ZeroTraceOrder
    settings_model: type[PartnerSettings] = ZeroTraceSettings
    example_params: Mapping[str, Any] = {
        "fromCcy": "btc",
        "toCcy": "usdt_trc20",
        "direction": "from",
        "amount": "0.01",
        "toAddress": "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw",
        "refundAddress": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    }

    def check_params(self, params: Mapping[str, Any], ref_code: str | None) -> BaseModel:
        return ZeroTraceParams.model_validate(params)

    def check_quote_params(self, params: Mapping[str, Any]) -> BaseModel:
        return quote_params(params)

    def connect(
        self, settings: PartnerSettings, http: PartnerHttp, observer: Observer | None
    ) -> ZeroTraceSession:
        group = _own(settings)
        return ZeroTraceSession(
            ZeroTraceClient(
                group.base_url,
                group.api_key,
                group.api_secret,
                http,
                observer=observer,
                other_secrets=group.webhook_secrets,
            )
        )

    def push_scheme(self, settings: PartnerSettings) -> ZeroTracePushes:
        return ZeroTracePushes(_own(settings).webhook_secrets)


def _own(settings: PartnerSettings) -> ZeroTraceSettings:
    if not isinstance(settings, ZeroTraceSettings):
        raise TypeError("0trace needs its own settings group (ZeroTraceSettings)")
    return settings


partner = ZeroTracePartner()
