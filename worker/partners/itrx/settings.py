"""The itrx settings group: ``ORDER_WORKER_ITRX_*`` (or files of the same names, lower case)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from worker.partners.contract import PartnerSettings, settings_config
from worker.settings import comma_list

# The local simulator's public development credentials (order_worker_sandbox has its own copy).
DEVELOPMENT_API_KEY = "5A4DB0B0C1E24F1E9D3C2B1A09F8E7D6"
DEVELOPMENT_API_SECRET = "A625BA0793D030795F36FE24964DCAA69F926A84D3BC610568121EAC1F2CF997"  # noqa: S105 - public dev value


class ItrxSettings(PartnerSettings):
    model_config = settings_config("ITRX")
    development_secrets: ClassVar[frozenset[str]] = frozenset({DEVELOPMENT_API_SECRET})

    base_url: str = Field("http://127.0.0.1:8090", description="itrx API origin.")
    api_key: SecretStr = Field(
        SecretStr(DEVELOPMENT_API_KEY), description="itrx API-KEY (alone it authorises order queries)."
    )
    api_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_API_SECRET), description="itrx API secret (signs requests and callbacks)."
    )
    callback_url: str | None = Field(
        None, description="callback_url sent with itrx orders (the public URL of `order-worker webhooks`)."
    )
    previous_api_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated earlier itrx secrets still accepted on callbacks during a key rotation.",
    )
    callback_max_age: float = Field(
        300.0,
        gt=0,
        description="Oldest accepted itrx callback TIMESTAMP, seconds (60 s of future skew allowed).",
    )
    check_balance: bool = Field(
        True, description="Read the itrx balance and refuse orders it cannot cover before calling create."
    )

    @field_validator("previous_api_secrets", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return comma_list(value)

    def secrets(self) -> list[SecretStr]:
        return [self.api_secret, *self.previous_api_secrets]
