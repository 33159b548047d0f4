"""The 0trace settings group: ``ORDER_WORKER_ZEROTRACE_*`` (or files of the same names, lower case)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from worker.partners.contract import PartnerSettings, settings_config
from worker.settings import comma_list

# The local simulator's public development credentials (order_worker_sandbox has its own copy).
DEVELOPMENT_API_KEY = "sandbox-0trace-key"
DEVELOPMENT_API_SECRET = "sandbox-0trace-api-secret-0123456789abcdef"  # noqa: S105 - public dev value
DEVELOPMENT_WEBHOOK_SECRET = "sandbox-0trace-webhook-secret-fedcba9876543210"  # noqa: S105 - public dev value


class ZeroTraceSettings(PartnerSettings):
    model_config = settings_config("ZEROTRACE")
    development_secrets: ClassVar[frozenset[str]] = frozenset(
        {DEVELOPMENT_API_SECRET, DEVELOPMENT_WEBHOOK_SECRET}
    )

    base_url: str = Field("http://127.0.0.1:8090", description="0trace API origin.")
    api_key: str = Field(DEVELOPMENT_API_KEY, description="0trace public apiKey.")
    api_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_API_SECRET), description="0trace apiSecret (signs requests)."
    )
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(DEVELOPMENT_WEBHOOK_SECRET)],
        description="Comma-separated webhookSecret values accepted at once (rotation: new first, old last).",
    )
    weight_budget: int = Field(
        2500, ge=0, description="0trace weight per window for the account, shared by every replica (0: off)."
    )

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return comma_list(value)

    def secrets(self) -> list[SecretStr]:
        return [self.api_secret, *self.webhook_secrets]
