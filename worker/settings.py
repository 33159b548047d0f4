"""Process settings: one prefix (``ORDER_WORKER_``), read from the environment and from secret files.

Secrets are ``SecretStr`` so that a settings object printed in a log or a traceback shows ``**********``.
Every secret can also come from a file: ``ORDER_WORKER_SECRETS_DIR`` (default ``/run/secrets``) holding one
file per setting, named like the variable in lower case (``order_worker_zerotrace_api_secret``), which is
how Kubernetes and compose mount secrets.

The defaults are the bundled sandbox's development credentials, so ``order-worker run`` works with no
configuration at all; :meth:`Settings.check_production_safety` refuses to talk to a non-local partner with
those well-known values.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.transport import TransportSettings

ENV_PREFIX = "ORDER_WORKER_"

# Development credentials shared by the sandbox and the worker's defaults. Public by design.
SANDBOX_ZEROTRACE_API_KEY = "sandbox-0trace-key"
SANDBOX_ZEROTRACE_API_SECRET = "sandbox-0trace-api-secret-0123456789abcdef"  # noqa: S105 - public dev value
SANDBOX_ZEROTRACE_WEBHOOK_SECRET = "sandbox-0trace-webhook-secret-fedcba9876543210"  # noqa: S105 - public dev value
SANDBOX_ITRX_API_KEY = "5A4DB0B0C1E24F1E9D3C2B1A09F8E7D6"
SANDBOX_ITRX_API_SECRET = "A625BA0793D030795F36FE24964DCAA69F926A84D3BC610568121EAC1F2CF997"  # noqa: S105 - public dev value
# 32 zero-free bytes, base64; only for local development (see check_production_safety).
SANDBOX_TOKEN_KEY = "dev1:" + base64.b64encode(b"order-worker-dev-token-key-32b!!").decode()

_DEV_SECRETS = {
    SANDBOX_ZEROTRACE_API_SECRET,
    SANDBOX_ZEROTRACE_WEBHOOK_SECRET,
    SANDBOX_ITRX_API_SECRET,
}


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of order-worker. The README's settings table is generated from these descriptions."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        secrets_dir=os.environ.get(ENV_PREFIX + "SECRETS_DIR", "/run/secrets")
        if Path(os.environ.get(ENV_PREFIX + "SECRETS_DIR", "/run/secrets")).is_dir()
        else None,
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

    # --- 0trace ----------------------------------------------------------------------------------
    zerotrace_base_url: str = Field("http://127.0.0.1:8090", description="0trace API origin.")
    zerotrace_api_key: str = Field(SANDBOX_ZEROTRACE_API_KEY, description="0trace public apiKey.")
    zerotrace_api_secret: SecretStr = Field(
        SecretStr(SANDBOX_ZEROTRACE_API_SECRET), description="0trace apiSecret (signs requests)."
    )
    zerotrace_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(SANDBOX_ZEROTRACE_WEBHOOK_SECRET)],
        description="Comma-separated webhookSecret values accepted at once (rotation: new first, old last).",
    )

    # --- itrx ------------------------------------------------------------------------------------
    itrx_base_url: str = Field("http://127.0.0.1:8090", description="itrx API origin.")
    itrx_api_key: SecretStr = Field(
        SecretStr(SANDBOX_ITRX_API_KEY), description="itrx API-KEY (alone it authorises order queries)."
    )
    itrx_api_secret: SecretStr = Field(
        SecretStr(SANDBOX_ITRX_API_SECRET), description="itrx API secret (signs requests and callbacks)."
    )
    itrx_callback_url: str | None = Field(
        None, description="callback_url sent with itrx orders (the public URL of `order-worker webhooks`)."
    )
    itrx_previous_api_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated earlier itrx secrets still accepted on callbacks during a key rotation.",
    )
    itrx_callback_max_age: float = Field(
        300.0,
        gt=0,
        description="Oldest accepted itrx callback TIMESTAMP, seconds (60 s of future skew allowed).",
    )
    itrx_check_balance: bool = Field(
        True, description="Read the itrx balance and refuse orders it cannot cover before calling create."
    )

    # --- partner calls ---------------------------------------------------------------------------
    http_connect_timeout: float = Field(3.0, gt=0, description="Seconds to open a partner connection.")
    http_read_timeout: float = Field(
        10.0, gt=0, description="Seconds from a partner request sent to its whole answer read (not per read)."
    )
    http_pool_size: int = Field(16, ge=1, description="Keep-alive connections per partner host per process.")
    # --- partner transport (per partner; see Settings.transport) -------------------------------------
    http_idle_expiry: float = Field(
        20.0, gt=0, description="A pooled partner connection idle longer than this is not reused, seconds."
    )
    http_max_response_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest partner answer body, received and decoded, bytes."
    )
    http_proxy_from_env: bool = Field(
        True, description="Without a partner proxy URL, honour HTTPS_PROXY / HTTP_PROXY / NO_PROXY."
    )
    zerotrace_proxy_url: SecretStr | None = Field(
        None, description="Proxy for 0trace calls, http(s)://[user:password@]host:port (secret)."
    )
    zerotrace_ca_bundle: Path | None = Field(None, description="PEM CA bundle trusted for 0trace.")
    zerotrace_client_cert: Path | None = Field(None, description="PEM client certificate for 0trace (mTLS).")
    zerotrace_client_key: Path | None = Field(None, description="PEM key of the 0trace client certificate.")
    itrx_proxy_url: SecretStr | None = Field(
        None, description="Proxy for itrx calls, http(s)://[user:password@]host:port (secret)."
    )
    itrx_ca_bundle: Path | None = Field(None, description="PEM CA bundle trusted for itrx.")
    itrx_client_cert: Path | None = Field(None, description="PEM client certificate for itrx (mTLS).")
    itrx_client_key: Path | None = Field(None, description="PEM key of the itrx client certificate.")
    # --- end of partner transport --------------------------------------------------------------------
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

    @field_validator("zerotrace_webhook_secrets", "token_keys", "itrx_previous_api_secrets", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split_list(value)

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

    @model_validator(mode="after")
    def _transports(self) -> Settings:
        """A partner's transport settings are checked at start-up, not at its first call."""
        for partner in ("zerotrace", "itrx"):
            try:
                self.transport(partner)
            except ValidationError as exc:
                problems = "; ".join(str(error["msg"]) for error in exc.errors())
                raise ValueError(f"{partner} transport: {problems}") from None
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

    def transport(self, partner: str) -> TransportSettings:
        """How calls to ``partner`` ("zerotrace" or "itrx") travel: the shared ``http_*`` values and that
        partner's proxy and TLS material."""
        if partner not in ("zerotrace", "itrx"):
            raise ValueError(f"unknown partner {partner!r}")
        return TransportSettings(
            connect_timeout=self.http_connect_timeout,
            read_timeout=self.http_read_timeout,
            pool_size=self.http_pool_size,
            idle_expiry=self.http_idle_expiry,
            max_response_bytes=self.http_max_response_bytes,
            proxy_from_env=self.http_proxy_from_env,
            proxy_url=getattr(self, f"{partner}_proxy_url"),
            ca_bundle=getattr(self, f"{partner}_ca_bundle"),
            client_cert=getattr(self, f"{partner}_client_cert"),
            client_key=getattr(self, f"{partner}_client_key"),
        )

    def check_production_safety(self) -> None:
        """Refuse the public development secrets anywhere but against a partner on this host."""
        pairs = [
            (self.zerotrace_base_url, [self.zerotrace_api_secret, *self.zerotrace_webhook_secrets]),
            (self.itrx_base_url, [self.itrx_api_secret]),
        ]
        for url, secrets in pairs:
            if not _is_loopback(url) and any(s.get_secret_value() in _DEV_SECRETS for s in secrets):
                raise ValueError(
                    f"the sandbox development credentials must not be used with {urlsplit(url).hostname}; "
                    "set the partner secrets (see README, 'Settings')"
                )
        if any(k.get_secret_value() == SANDBOX_TOKEN_KEY for k in self.token_keys) and not (
            _is_loopback(self.zerotrace_base_url)
        ):
            raise ValueError("set ORDER_WORKER_TOKEN_KEYS: the development token key is public")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; tests build their own ``Settings(...)`` instead."""
    return Settings()
