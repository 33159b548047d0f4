"""Process settings: one prefix (``ORDER_WORKER_``), read from the environment and from secret files.

This module holds the core groups (bus, ledger, partner calls, tokens, tracking, HTTP surfaces). Each
partner's own settings (credentials, URLs, its rate budget) are a group that lives with the partner's code
(``worker.partners.<partner>.settings``) and reads ``ORDER_WORKER_<PARTNER>_*``; the service finds the
groups through the partner registry, so adding a partner adds no field here.

Secrets are ``SecretStr`` so that a settings object printed in a log or a traceback shows ``**********``.
Every secret can also come from a file: ``ORDER_WORKER_SECRETS_DIR`` (default ``/run/secrets``) holding one
file per setting, named like the variable in lower case (``order_worker_zerotrace_api_secret``), which is
how Kubernetes and compose mount secrets.

The defaults are the local simulator's public development credentials, so ``order-worker run`` works with
no configuration at all; :meth:`Settings.check_production_safety` refuses to talk to a partner that is not
on this host with those well-known values.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ORDER_WORKER_"

# 32 zero-free bytes, base64; only for local development (see check_production_safety).
SANDBOX_TOKEN_KEY = "dev1:" + base64.b64encode(b"order-worker-dev-token-key-32b!!").decode()


def secrets_dir() -> str | None:
    """Where secret files are read from: ``$ORDER_WORKER_SECRETS_DIR`` or ``/run/secrets``, if it exists."""
    path = os.environ.get(ENV_PREFIX + "SECRETS_DIR", "/run/secrets")
    return path if Path(path).is_dir() else None


def comma_list(value: object) -> object:
    """A comma-separated environment value as a list (secrets during a rotation: new first, old last)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of order-worker. The README's settings table is generated from these descriptions."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        secrets_dir=secrets_dir(),
        extra="ignore",
        frozen=True,
    )

    # --- transport and storage -------------------------------------------------------------------
    broker_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F"),
        description="RabbitMQ URL (may hold a password, hence secret).",
    )
    ledger_url: SecretStr = Field(
        SecretStr("sqlite:///order-worker.db"),
        description="sqlite:///PATH (one node) or postgresql://... (any number of replicas).",
    )
    create_queue: str = Field("orders.create", description="Queue of create_order commands.")
    poll_queue: str = Field("orders.poll", description="Queue of poll_order commands.")
    events_exchange: str = Field("orders.events", description="Topic exchange the events go to.")
    delivery_limit: int = Field(
        5, ge=1, le=100, description="Quorum-queue deliveries before a crashing message is dead-lettered."
    )

    # --- partners ------------------------------------------------------------------------------
    partners: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        repr=False,  # raw values, secrets among them: each group masks its own once it is built
        description="Settings of partner groups given in code, by provider id (tests, embedding); a group "
        "not named here is read from ORDER_WORKER_<PARTNER>_* and the secrets directory.",
    )

    # --- partner calls ---------------------------------------------------------------------------
    http_connect_timeout: float = Field(3.0, gt=0, description="Seconds to open a partner connection.")
    http_read_timeout: float = Field(
        10.0, gt=0, description="Seconds from a partner request sent to its whole answer read (not per read)."
    )
    http_pool_size: int = Field(16, ge=1, description="Keep-alive connections per partner host per process.")
    http_idle_expiry: float = Field(
        20.0, gt=0, description="A pooled partner connection idle longer than this is not reused, seconds."
    )
    http_max_response_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest partner answer body, received and decoded, bytes."
    )
    http_proxy_from_env: bool = Field(
        True, description="Without a partner proxy URL, honour HTTPS_PROXY / HTTP_PROXY / NO_PROXY."
    )
    retry_base_seconds: float = Field(1.0, gt=0, description="First create retry delay (doubles each time).")
    retry_max_seconds: float = Field(60.0, gt=0, description="Cap on the create retry delay.")
    create_retry_window_seconds: float = Field(
        900.0,
        gt=0,
        description="How long after a command arrives an unanswered 0trace create is re-sent (same "
        "Idempotency-Key); later it is in_doubt, since 0trace does not document how long it keeps keys. "
        "itrx waits this long for a readable balance before creating without the check.",
    )
    idempotency_namespace: str = Field(
        "order-worker",
        min_length=1,
        max_length=40,
        description="Mixed into every Idempotency-Key / out_trade_no, so deployments sharing a partner "
        "account never collide.",
    )

    # --- tokens at rest --------------------------------------------------------------------------
    token_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(SANDBOX_TOKEN_KEY)],
        description="Comma-separated KEY_ID:BASE64(32 bytes) AES-256-GCM keys; the first seals, all open.",
    )

    # --- tracking cadence (seconds) --------------------------------------------------------------
    poll_awaiting_deposit: float = Field(45.0, gt=0, description="Poll interval while awaiting_deposit.")
    poll_confirming: float = Field(30.0, gt=0, description="Poll interval while confirming.")
    poll_processing: float = Field(30.0, gt=0, description="Poll interval while processing.")
    poll_action_required: float = Field(60.0, gt=0, description="Poll interval while action_required.")
    poll_safety_interval: float = Field(
        300.0, gt=0, description="Poll interval while verified pushes keep arriving for an order."
    )
    push_fresh_seconds: float = Field(
        600.0, gt=0, description="How long after the last verified push polling stays at the safety interval."
    )
    polling_enabled: bool = Field(True, description="Turn off to track by webhooks/callbacks only.")
    create_lease_seconds: float = Field(
        90.0,
        gt=0,
        description="How long a create attempt owns its order; must exceed the actor time limit (60 s) so a "
        "live attempt is never taken over. A crashed attempt is re-driven after it.",
    )
    submit_stuck_seconds: float = Field(
        120.0, gt=0, description="A create attempt older than this with no outcome is re-driven."
    )
    scheduler_interval: float = Field(1.0, gt=0, description="Seconds between scheduler passes.")
    scheduler_batch: int = Field(500, ge=1, description="Due orders taken per scheduler pass.")
    retention_seconds: float = Field(
        7 * 86400.0,
        gt=3600,
        description="Published events and push dedupe keys older than this are pruned (orders never are).",
    )
    relay_batch: int = Field(200, ge=1, description="Outbox rows published per relay pass.")

    # --- HTTP surfaces ---------------------------------------------------------------------------
    metrics_host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz, /readyz.")
    metrics_port: int = Field(9191, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz.")
    webhooks_host: str = Field("0.0.0.0", description="Bind address of the webhook receiver.")
    webhooks_port: int = Field(8091, ge=1, le=65535, description="Port of the webhook receiver.")
    webhook_max_body: int = Field(262144, ge=1024, description="Largest accepted push body, bytes.")
    log_level: str = Field("INFO", description="Python log level.")

    @field_validator("token_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("token_keys")
    @classmethod
    def _token_keys_shape(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            raise ValueError("at least one token key is required")
        for item in value:
            key_id, sep, material = item.get_secret_value().partition(":")
            if not sep or not key_id or len(key_id) > 16:
                raise ValueError("each token key must be KEY_ID:BASE64 with a key id of 1..16 characters")
            try:
                raw = base64.b64decode(material, validate=True)
            except ValueError:
                raise ValueError(f"token key {key_id!r} is not valid base64") from None
            if len(raw) != 32:
                raise ValueError(f"token key {key_id!r} must decode to 32 bytes, got {len(raw)}")
        return value

    @model_validator(mode="after")
    def _ledger_scheme(self) -> Settings:
        scheme = urlsplit(self.ledger_url.get_secret_value()).scheme
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("ledger_url must start with sqlite:/// or postgresql://")
        return self

    def poll_interval(self, status: str) -> float | None:
        """Normal poll cadence for a canonical status; None where polling makes no sense."""
        return {
            "awaiting_deposit": self.poll_awaiting_deposit,
            "confirming": self.poll_confirming,
            "processing": self.poll_processing,
            "action_required": self.poll_action_required,
            "in_doubt": self.poll_safety_interval,
        }.get(status)

    def check_production_safety(self, partners: Mapping[str, PartnerGroup]) -> None:
        """Refuse the public development secrets anywhere but against partners on this host."""
        for name, group in partners.items():
            if group.uses_development_secrets_remotely():
                raise ValueError(
                    f"the sandbox development credentials must not be used with {name} at "
                    f"{urlsplit(group.base_url).hostname}; set the partner's secrets (see README, 'Settings')"
                )
        remote = any(not group.is_local() for group in partners.values())
        if remote and any(k.get_secret_value() == SANDBOX_TOKEN_KEY for k in self.token_keys):
            raise ValueError("set ORDER_WORKER_TOKEN_KEYS: the development token key is public")


class PartnerGroup(Protocol):
    """What the safety check needs of a partner's settings group (``worker.partners.PartnerSettings``)."""

    @property
    def base_url(self) -> str: ...

    def uses_development_secrets_remotely(self) -> bool: ...

    def is_local(self) -> bool: ...


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; tests build their own ``Settings(...)`` instead."""
    return Settings()
