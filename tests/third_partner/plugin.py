"""Acme, a partner that exists only in these tests: a plug-in written entirely outside ``worker``.

It is what a third-party package would ship: params, settings, a session over the service's HTTP
transport, a status map and a push scheme, named in the ``order_worker.partners`` entry-point group
(``tests/e2e/test_third_partner.py`` writes that metadata). Its API (``server.py``): ``POST /orders``
(idempotent on ``ref``), ``GET /orders/<id>``, and signed pushes ``{"id", "status"}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from worker.partners import (
    Capabilities,
    CreateResult,
    Fate,
    IgnoredPush,
    PartnerError,
    PartnerOrder,
    PartnerSettings,
    Push,
    Refusal,
)
from worker.partners.contract import settings_config
from worker.status import Status
from worker.transport import Observer, PartnerHttp

STATUSES = {"open": Status.AWAITING_DEPOSIT, "working": Status.PROCESSING, "done": Status.COMPLETED}


class AcmeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: str = Field(pattern=r"^\d{1,10}(\.\d{1,8})?$")
    address: str = Field(min_length=4, max_length=64)


class AcmeSettings(PartnerSettings):
    model_config = settings_config("ACME")

    base_url: str = Field("http://127.0.0.1:9", description="Acme API origin.")
    api_key: SecretStr = Field(SecretStr("acme-test-key"), description="Acme API key.")
    push_secret: SecretStr = Field(SecretStr("acme-test-push-secret"), description="Signs Acme pushes.")

    def secrets(self) -> list[SecretStr]:
        return [self.api_key, self.push_secret]


def order_from(answer: Mapping[str, Any]) -> PartnerOrder:
    raw = str(answer["status"])
    return PartnerOrder(str(answer["id"]), raw, STATUSES.get(raw), {"amount": answer.get("amount")})


class AcmeSession:
    def __init__(self, settings: AcmeSettings, http: PartnerHttp, observer: Observer | None) -> None:
        self.base = settings.base_url.rstrip("/")
        self.headers = {"X-Acme-Key": settings.api_key.get_secret_value(), "Content-Type": "application/json"}
        self.http = http

    def create(self, params: Any, partner_ref: str, ref_code: str | None) -> CreateResult:
        body = json.dumps({"ref": partner_ref, "amount": params.amount, "address": params.address}).encode()
        answer = self._answer(self.http.post(f"{self.base}/orders", body, self.headers))
        return CreateResult(order_from(answer), token=None)

    def fetch(self, order_id: str, secret: str | None) -> PartnerOrder:
        return order_from(self._answer(self.http.get(f"{self.base}/orders/{order_id}", self.headers)))

    def precheck(self, params: Any) -> Refusal | None:
        return None

    @staticmethod
    def _answer(answer: Any) -> Mapping[str, Any]:
        if answer.status != 200:
            raise PartnerError(Fate.UNKNOWN, f"http_{answer.status}", "acme answered an error", True)
        decoded: Mapping[str, Any] = json.loads(answer.body)
        return decoded


class AcmePushes:
    signature_header = "x-acme-signature"
    timestamp_header = "x-acme-timestamp"
    max_future = 60.0
    max_age = 300.0
    delivered_status: int | None = None

    def __init__(self, secret: SecretStr) -> None:
        self.key = secret.get_secret_value().encode()

    def verify(self, raw: bytes, signature: str, timestamp: str) -> bool:
        expected = hmac.new(self.key, timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def parse(self, body: Mapping[str, Any]) -> Push | IgnoredPush:
        observed = order_from(body)
        return Push(
            f"acme:{observed.order_id}:{observed.provider_status}", observed.order_id, observed=observed
        )


class AcmePartner:
    name = "acme"
    capabilities = Capabilities(idempotent_create=True, fetch_by_order_id=True)
    params_model: type[BaseModel] = AcmeParams
    settings_model: type[PartnerSettings] = AcmeSettings
    example_params: Mapping[str, Any] = {"amount": "1.5", "address": "acme-wallet-1"}

    def check_params(self, params: Mapping[str, Any], ref_code: str | None) -> BaseModel:
        if ref_code is not None:
            raise ValueError("acme orders take no ref_code")
        return AcmeParams.model_validate(params)

    def connect(self, settings: PartnerSettings, http: PartnerHttp, observer: Observer | None) -> AcmeSession:
        assert isinstance(settings, AcmeSettings)
        return AcmeSession(settings, http, observer)

    def push_scheme(self, settings: PartnerSettings) -> AcmePushes:
        assert isinstance(settings, AcmeSettings)
        return AcmePushes(settings.push_secret)


partner = AcmePartner()
