"""The params of an itrx create, checked before any call: a typo in an address fails here, not at itrx."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def is_tron_address(value: str) -> bool:
    """Base58Check with version byte 0x41: a typo in a TRON address fails the checksum, not the partner."""
    if len(value) != 34 or value[0] != "T":
        return False
    number = 0
    for char in value:
        index = _B58.find(char)
        if index < 0:
            return False
        number = number * 58 + index
    raw = number.to_bytes(25, "big")
    payload, checksum = raw[:21], raw[21:]
    return payload[0] == 0x41 and hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == checksum


class ItrxParams(BaseModel):
    """Fields of itrx ``POST /api/v1/frontend/order`` chosen by the producer (energy in units, not sun)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    energy_amount: Annotated[int, Field(ge=10_000, le=100_000_000, strict=True)]
    period: Literal["1H", "1D", "3D", "30D"]
    receive_address: str
    active: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] | None = None
    exclusive: Literal[0, 1] | None = None

    @field_validator("receive_address")
    @classmethod
    def _tron(cls, value: str) -> str:
        if not is_tron_address(value):
            raise ValueError("receive_address is not a valid TRON base58check address")
        return value


class ItrxQuoteParams(BaseModel):
    """Fields of itrx ``GET /api/v1/frontend/order/price``: the energy to price, or the address of a USDT
    transfer for which itrx estimates it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    period: Literal["1H", "1D", "3D", "30D"]
    energy_amount: Annotated[int, Field(ge=10_000, le=100_000_000, strict=True)] | None = None
    to_address: str | None = None

    @field_validator("to_address")
    @classmethod
    def _tron(cls, value: str | None) -> str | None:
        if value is not None and not is_tron_address(value):
            raise ValueError("to_address is not a valid TRON base58check address")
        return value

    @model_validator(mode="after")
    def _what_to_price(self) -> ItrxQuoteParams:
        if self.energy_amount is None and self.to_address is None:
            raise ValueError("give energy_amount, or to_address for itrx to estimate one USDT transfer")
        return self

    def query(self) -> dict[str, str]:
        """The price call's query parameters, unset ones left out."""
        return {key: str(value) for key, value in self.model_dump(exclude_none=True).items()}


def quote_params(params: Mapping[str, Any]) -> ItrxQuoteParams:
    """Price params from either shape: a create's params (``receive_address`` names it one) are checked
    as a create's first, and priced by their ``energy_amount``."""
    if "receive_address" in params:
        create = ItrxParams.model_validate(params)
        return ItrxQuoteParams(period=create.period, energy_amount=create.energy_amount)
    return ItrxQuoteParams.model_validate(params)
