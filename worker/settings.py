"""Process settings: one tree of groups, each read from ``ORDER_WORKER_*`` variables and secret files.

:class:`Settings` is the tree: one group per concern (:class:`BusSettings`, :class:`LedgerSettings`,
:class:`CallSettings`, :class:`QuoteSettings`, :class:`TokenSettings`, :class:`TrackingSettings`,
:class:`ServingSettings`), so a
reader finds each knob beside its neighbours and a module can be handed the one group it needs. Each group
reads its own variables, named ``ORDER_WORKER_`` + the field name in upper case (``bus.broker_url`` is
``ORDER_WORKER_BROKER_URL``): the names stay flat because that is what operators, the chart and compose
files write. Each partner's settings (credentials, URLs, its rate budget) are a group that lives with the
partner's code (``worker.partners.<partner>.settings``) and reads ``ORDER_WORKER_<PARTNER>_*``; the
service finds those through the partner registry, so adding a partner adds no field here.

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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, get_args
from urllib.parse import urlsplit

from order_worker_client.brokers import broker_urls, describe_url
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ORDER_WORKER_"

# 32 zero-free bytes, base64; only for local development (see check_production_safety).
SANDBOX_TOKEN_KEY = "dev1:" + base64.b64encode(b"order-worker-dev-token-key-32b!!").decode()


def secrets_dir() -> str | None:
    """Where secret files are read from: ``$ORDER_WORKER_SECRETS_DIR`` or ``/run/secrets``, if it exists."""
    path = os.environ.get(ENV_PREFIX + "SECRETS_DIR", "/run/secrets")
    return path if Path(path).is_dir() else None


def group_config(prefix: str = "") -> SettingsConfigDict:
    """How a settings group reads ``ORDER_WORKER_<prefix><FIELD>`` and secret files of the same names."""
    return SettingsConfigDict(
        env_prefix=ENV_PREFIX + prefix, secrets_dir=secrets_dir(), extra="ignore", frozen=True
    )


def comma_list(value: object) -> object:
    """A comma-separated environment value as a list (secrets during a rotation: new first, old last)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def broker_hosts(value: str) -> str:
    """Where the broker URLs point, as ``host:port`` list safe to print: no user, password or vhost."""
    return ", ".join(describe_url(url) for url in broker_urls(value))


class BusSettings(BaseSettings):
    """RabbitMQ: where commands arrive and where events leave."""

    model_config = group_config()

    broker_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F"),
        description="RabbitMQ URL, or the URLs of a cluster's nodes separated by commas (a comma inside a "
        "URL, in a password or an option, is written %2C); every client connects to the first node it "
        "reaches and to a surviving one when its node fails. Each URL may hold a password.",
    )
    create_queue: str = Field("orders.create", description="Queue of create_order commands.")
    poll_queue: str = Field("orders.poll", description="Queue of poll_order commands.")
    actions_queue: str = Field(
        "orders.actions", description="Queue of resolve_order commands (operators' choices on orders)."
    )
    quotes_queue: str = Field("orders.quotes", description="Queue of quote requests (request/reply).")
    events_exchange: str = Field("orders.events", description="Topic exchange the events go to.")
    delivery_limit: int = Field(
        5, ge=1, le=100, description="Quorum-queue deliveries before a crashing message is dead-lettered."
    )
    relay_batch: int = Field(200, ge=1, description="Outbox rows published per relay pass.")

    @field_validator("broker_url")
    @classmethod
    def _broker_schemes(cls, value: SecretStr) -> SecretStr:
        try:
            urls = broker_urls(value.get_secret_value())
        except ValueError:
            raise ValueError("broker_url needs at least one amqp:// or amqps:// URL") from None
        for number, url in enumerate(urls, start=1):
            if urlsplit(url).scheme not in {"amqp", "amqps"}:
                raise ValueError(f"broker URL number {number} must start with amqp:// or amqps://")
        return value

    def broker_urls(self) -> list[str]:
        """The broker's node URLs, in the order given."""
        return broker_urls(self.broker_url.get_secret_value())


class LedgerSettings(BaseSettings):
    """The ledger: the one record of every order, attempt and event."""

    model_config = group_config()

    ledger_url: SecretStr = Field(
        SecretStr("sqlite:///order-worker.db"),
        description="sqlite:///PATH (one node) or postgresql://... (any number of replicas).",
    )
    retention_seconds: float = Field(
        7 * 86400.0,
        gt=3600,
        description="Published events and push dedupe keys older than this are pruned (orders never are).",
    )
    ledger_outage_hold_seconds: float = Field(
        600.0,
        gt=0,
        le=1500,
        description="How long a worker holds a command while the ledger is out (unreachable, or its disk "
        "full), trying again with backoff, before handing it back to the queue without spending a retry; "
        "below RabbitMQ's consumer_timeout (30 min), which would count a delivery.",
    )

    @field_validator("ledger_url")
    @classmethod
    def _ledger_scheme(cls, value: SecretStr) -> SecretStr:
        if urlsplit(value.get_secret_value()).scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("ledger_url must start with sqlite:/// or postgresql://")
        return value


class CallSettings(BaseSettings):
    """Calls to partners: the shared transport defaults, retries and the keys that make creates safe."""

    model_config = group_config()

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
    create_lease_seconds: float = Field(
        90.0,
        gt=0,
        description="How long a create attempt owns its order; must exceed the actor time limit (60 s) so a "
        "live attempt is never taken over. A crashed attempt is re-driven after it.",
    )
    idempotency_namespace: str = Field(
        "order-worker",
        min_length=1,
        max_length=40,
        description="Mixed into every Idempotency-Key / out_trade_no, so deployments sharing a partner "
        "account never collide.",
    )


class QuoteSettings(BaseSettings):
    """Price quotes over the bus, answered by every worker process."""

    model_config = group_config()

    quotes_enabled: bool = Field(True, description="Answer quote requests in the worker role.")
    quote_threads: int = Field(
        4, ge=1, le=64, description="Quote requests each worker process answers at once (partner calls)."
    )
    quote_cache_seconds: float = Field(
        3.0,
        ge=0,
        description="A partner's price is reused for the same provider, account and params this long (0: "
        "never); it spares the partner's rate budget when many producers ask the same question.",
    )


class TokenSettings(BaseSettings):
    """Keys that seal order tokens at rest."""

    model_config = group_config()

    token_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(SANDBOX_TOKEN_KEY)],
        description="Comma-separated KEY_ID:BASE64(32 bytes) AES-256-GCM keys; the first seals, all open.",
    )

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

    def uses_development_key(self) -> bool:
        return any(key.get_secret_value() == SANDBOX_TOKEN_KEY for key in self.token_keys)


class TrackingSettings(BaseSettings):
    """How open orders are followed: poll cadence per status, pushes, and the scheduler's passes."""

    model_config = group_config()

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
    deadline_horizon_seconds: float = Field(
        300.0,
        gt=0,
        description="An order this close to its partner deadline (0trace: the deposit window closing) is "
        "polled every DEADLINE_POLL_INTERVAL and before other orders when the poll budget is short.",
    )
    deadline_poll_interval: float = Field(
        30.0, gt=0, description="Poll interval of an order within DEADLINE_HORIZON_SECONDS of its deadline."
    )
    held_pushes_max: int = Field(
        10000,
        ge=0,
        description="Verified pushes kept for orders not known yet (their create has not committed), at "
        "most; beyond it such a push is answered 503 so the partner sends it again later. 0: none are kept.",
    )
    held_push_seconds: float = Field(
        900.0,
        gt=0,
        description="How long a held push waits for its order to appear before it is dropped (default: "
        "as long as an unanswered 0trace create is sent again, CREATE_RETRY_WINDOW_SECONDS).",
    )
    submit_stuck_seconds: float = Field(
        120.0, gt=0, description="A create attempt older than this with no outcome is re-driven."
    )
    scheduler_interval: float = Field(1.0, gt=0, description="Seconds between scheduler passes.")
    scheduler_batch: int = Field(500, ge=1, description="Due orders taken per scheduler pass.")

    def poll_interval(self, status: str) -> float | None:
        """Normal poll cadence for a canonical status; None where polling makes no sense."""
        return {
            "awaiting_deposit": self.poll_awaiting_deposit,
            "confirming": self.poll_confirming,
            "processing": self.poll_processing,
            "action_required": self.poll_action_required,
            "in_doubt": self.poll_safety_interval,
        }.get(status)


class ServingSettings(BaseSettings):
    """What each process serves and says: its probes and metrics, the webhook receiver, its log level."""

    model_config = group_config()

    metrics_host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz, /readyz.")
    metrics_port: int = Field(9191, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz.")
    webhooks_host: str = Field("0.0.0.0", description="Bind address of the webhook receiver.")
    webhooks_port: int = Field(8091, ge=1, le=65535, description="Port of the webhook receiver.")
    webhook_max_body: int = Field(262144, ge=1024, description="Largest accepted push body, bytes.")
    log_level: str = Field("INFO", description="Log level of every process, Dramatiq's included.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="json (one object per line), console (for a person), or auto: console on a terminal, "
        "json otherwise.",
    )


GROUPS: dict[str, type[BaseSettings]] = {
    "bus": BusSettings,
    "ledger": LedgerSettings,
    "calls": CallSettings,
    "quotes": QuoteSettings,
    "tokens": TokenSettings,
    "tracking": TrackingSettings,
    "serving": ServingSettings,
}
"""The core groups by their attribute on :class:`Settings`, in the order the reference lists them."""


class Settings(BaseModel):
    """Every knob of order-worker: the core groups and the partner groups given in code.

    Each group given as a mapping is built from it and the environment, so ``Settings(bus={"broker_url":
    url})`` overrides one value and still reads every other from ``ORDER_WORKER_*``.
    """

    model_config = ConfigDict(frozen=True)

    bus: BusSettings = Field(default_factory=BusSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    calls: CallSettings = Field(default_factory=CallSettings)
    quotes: QuoteSettings = Field(default_factory=QuoteSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    partners: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        repr=False,  # raw values, secrets among them: each group masks its own once it is built
        description="Settings of partner groups given in code, by provider id (tests, embedding); a group "
        "not named here is read from ORDER_WORKER_<PARTNER>_* and the secrets directory.",
    )

    @model_validator(mode="before")
    @classmethod
    def _groups_from_mappings(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            return values
        built = dict(values)
        for name, group in GROUPS.items():
            given = built.get(name)
            if isinstance(given, Mapping):
                built[name] = group(**given)
        return built

    def check_production_safety(self, partners: Mapping[str, PartnerGroup]) -> None:
        """Refuse the public development secrets anywhere but against partners on this host."""
        for name, group in partners.items():
            if group.uses_development_secrets_remotely():
                raise ValueError(
                    f"the sandbox development credentials must not be used with {name} at "
                    f"{urlsplit(group.base_url).hostname}; set the partner's secrets (see README, 'Settings')"
                )
        remote = any(not group.is_local() for group in partners.values())
        if remote and self.tokens.uses_development_key():
            raise ValueError("set ORDER_WORKER_TOKEN_KEYS: the development token key is public")


class PartnerGroup(Protocol):
    """What the safety check needs of a partner's settings group (``worker.partners.PartnerSettings``)."""

    @property
    def base_url(self) -> str: ...

    def uses_development_secrets_remotely(self) -> bool: ...

    def is_local(self) -> bool: ...


@dataclass(frozen=True)
class SettingDoc:
    """One setting as an operator sets it: the variable, its default as text, and what it means."""

    variable: str
    default: str
    secret: bool
    description: str


def describe(group: type[BaseSettings]) -> list[SettingDoc]:
    """A group's settings, for the reference (``order-worker settings``, the README's tables); the
    development values of secrets are never shown, only that there is one."""
    prefix = str(group.model_config.get("env_prefix", ""))
    docs = []
    for name, field in group.model_fields.items():
        secret = _holds_secret(field.annotation)
        default = field.get_default(call_default_factory=True)
        docs.append(
            SettingDoc(prefix + name.upper(), _as_text(default, secret), secret, field.description or "")
        )
    return docs


def _holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_holds_secret(arg) for arg in get_args(annotation))


def _as_text(value: Any, secret: bool) -> str:
    if value is None or value == []:
        return "none"
    if secret:
        return "development value"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; tests build their own ``Settings(...)`` instead."""
    return Settings()
