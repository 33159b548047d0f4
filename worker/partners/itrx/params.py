"""The params of an itrx create, checked before any call: a typo in an address fails here, not at itrx."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
