"""The params of a 0trace create: the fields of ``POST /api/v1/create``, checked before any call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

_ADDRESS = re.compile(r"^[A-Za-z0-9:._-]{10,200}$")
_ASSET = re.compile(r"^[a-z0-9_]{2,32}$")
_AMOUNT = re.compile(r"^\d{1,20}(\.\d{1,18})?$")


def _positive_decimal(value: str) -> str:
    if not _AMOUNT.match(value):
        raise ValueError("amount must be a plain decimal string such as '0.01' (no sign, no exponent)")
    try:
        if Decimal(value) <= 0:
            raise ValueError("amount must be greater than zero")
    except InvalidOperation:
        raise ValueError("amount is not a decimal number") from None
    return value


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError("address must be 10..200 characters of letters, digits and ':._-'")
    return value


class _Pricing(BaseModel):
    """The fields a create and a price request share, in the partner's order."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    type: Literal["float"] = "float"
    fromCcy: Annotated[str, StringConstraints(pattern=_ASSET.pattern)]
    toCcy: Annotated[str, StringConstraints(pattern=_ASSET.pattern)]
    direction: Literal["from", "to"]
    amount: str

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        return _positive_decimal(value)

    def wire_body(self) -> dict[str, Any]:
        """The body in the partner's field order, optional fields left out when unset."""
        return self.model_dump(exclude_none=True)


class ZeroTraceParams(_Pricing):
    """Fields of 0trace ``POST /api/v1/create``, named as the partner names them."""

    toAddress: str
    refundAddress: str
    fromNetwork: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    toNetwork: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    tag: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    afftax: Annotated[int, Field(ge=0, le=2000, strict=True)] | None = None

    @field_validator("toAddress", "refundAddress")
    @classmethod
    def _addresses(cls, value: str) -> str:
        return _address(value)


class ZeroTraceQuoteParams(_Pricing):
    """Fields of 0trace ``POST /api/v1/price``: a create's, less where the coins go."""

    afftax: Annotated[int, Field(ge=0, le=2000, strict=True)] | None = None


_CREATE_ONLY = frozenset(ZeroTraceParams.model_fields) - frozenset(ZeroTraceQuoteParams.model_fields)


def quote_params(params: Mapping[str, Any]) -> ZeroTraceQuoteParams:
    """Price params from either shape: a create's params are checked as a create's first."""
    if _CREATE_ONLY & params.keys():
        create = ZeroTraceParams.model_validate(params)
        fields = create.model_dump(include=set(ZeroTraceQuoteParams.model_fields), exclude_none=True)
        return ZeroTraceQuoteParams.model_validate(fields)
    return ZeroTraceQuoteParams.model_validate(params)
