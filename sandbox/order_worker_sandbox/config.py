"""Every knob of the sandbox in one mutable dataclass, plus the coercion used by the CLI and control API.

The config is mutable on purpose: the control API (``POST /_sandbox/config``) patches it at run time, so a
test can switch a scenario or squeeze the rate limit without restarting the server. All patches go through
:func:`coerce_value`, which checks types and choices, so a typo in a test fails loudly instead of silently
leaving the default in place.

Time units: fields ending in ``_after``, ``_window`` (deposit), ``_schedule`` are **sandbox seconds** (they
shrink with the speed factor); ``zerotrace_rate_limit_window``, ``zerotrace_nonce_ttl``,
``itrx_timestamp_tolerance`` and ``delivery_timeout`` are **real seconds** because they guard against real
clients and real networks.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

ENV_PREFIX = "ORDER_WORKER_SANDBOX_"

# Public development credentials. The worker's settings default to the same values so that the two run
# together with no configuration; the simulator keeps its own copy because it stands where the partner
# stands and must not borrow the code it checks (tests/sandbox asserts the two copies agree).
SANDBOX_ZEROTRACE_API_KEY = "sandbox-0trace-key"
SANDBOX_ZEROTRACE_API_SECRET = "sandbox-0trace-api-secret-0123456789abcdef"  # noqa: S105 - public dev value
SANDBOX_ZEROTRACE_WEBHOOK_SECRET = "sandbox-0trace-webhook-secret-fedcba9876543210"  # noqa: S105 - public dev value
SANDBOX_ITRX_API_KEY = "5A4DB0B0C1E24F1E9D3C2B1A09F8E7D6"
SANDBOX_ITRX_API_SECRET = "A625BA0793D030795F36FE24964DCAA69F926A84D3BC610568121EAC1F2CF997"  # noqa: S105 - public dev value

ZeroTraceScenario = Literal["auto", "manual", "emergency"]
ItrxScenario = Literal["auto", "manual", "fail", "refund"]
ItrxSignatureMode = Literal["raw", "raw_or_canonical", "strict_canonical"]
ItrxCallbackOn = Literal["success", "final", "every"]
IdempotencyCompare = Literal["bytes", "json"]
AddressCheck = Literal["shape", "strict"]


@dataclass
class SandboxConfig:
    """Run-time configuration; :data:`HELP` documents each field (printed by ``--list-settings``)."""

    host: str = "127.0.0.1"
    port: int = 8090
    speed: float = 1.0
    seed: int | None = None
    require_json_content_type: bool = True
    delivery_timeout: float = 10.0
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None

    # --- 0trace ---------------------------------------------------------------------------------
    zerotrace_api_key: str = SANDBOX_ZEROTRACE_API_KEY
    zerotrace_api_secret: str = SANDBOX_ZEROTRACE_API_SECRET
    zerotrace_webhook_secret: str = SANDBOX_ZEROTRACE_WEBHOOK_SECRET
    zerotrace_partner_enabled: bool = True
    zerotrace_webhook_url: str | None = None
    zerotrace_webhook_schedule: tuple[float, ...] = (10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
    zerotrace_scenario: ZeroTraceScenario = "auto"
    zerotrace_deposit_after: float = 30.0
    zerotrace_exchange_after: float = 60.0
    zerotrace_done_after: float = 30.0
    zerotrace_deposit_window: float = 1800.0
    zerotrace_emergency_resume_after: float = 5.0
    zerotrace_rate_limit_weight: int = 2500
    zerotrace_rate_limit_window: float = 60.0
    zerotrace_nonce_ttl: float = 300.0
    zerotrace_markup_bps: int = 0
    zerotrace_base_fee_bps: int = 30
    zerotrace_min_usd: float = 1.0
    zerotrace_max_usd: float = 5000.0
    zerotrace_idempotency_compare: IdempotencyCompare = "bytes"
    zerotrace_token_withheld: bool = False
    zerotrace_address_check: AddressCheck = "shape"
    zerotrace_max_codes: int = 50
    zerotrace_extra_partners: tuple[tuple[str, str, str], ...] = field(default=())
    zerotrace_accounts: tuple[str, ...] = ()

    # --- itrx -----------------------------------------------------------------------------------
    itrx_api_key: str = SANDBOX_ITRX_API_KEY
    itrx_api_secret: str = SANDBOX_ITRX_API_SECRET
    itrx_api_name: str = "sandbox"
    itrx_balance_sun: int = 100_000_000_000
    itrx_timestamp_tolerance: float = 300.0
    itrx_signature_mode: ItrxSignatureMode = "raw"
    itrx_strict_out_trade_no: bool = False
    itrx_scenario: ItrxScenario = "auto"
    itrx_delegate_after: float = 3.0
    itrx_complete_after: float = 3.0
    itrx_default_callback_url: str | None = None
    itrx_callback_schedule: tuple[float, ...] = (15.0, 15.0, 30.0, 180.0, 600.0, 1200.0, 1800.0)
    itrx_callback_on: ItrxCallbackOn = "success"
    itrx_min_energy: int = 32000
    itrx_max_energy: int = 100_000_000
    itrx_unactivated_addresses: tuple[str, ...] = ()

    def copy(self) -> SandboxConfig:
        return dataclasses.replace(self)


HELP: dict[str, str] = {
    "host": "Bind address.",
    "port": "Bind port (0: any free port; the real one is printed).",
    "speed": "Sandbox seconds per real second: 60 makes a 30-minute deposit window last 30 real seconds.",
    "seed": "Seed of the RNG behind probabilistic faults (empty: random).",
    "require_json_content_type": "Refuse POST bodies not sent as application/json (0trace 1/400, itrx 400).",
    "delivery_timeout": "Real seconds one webhook/callback attempt may take before it counts as failed.",
    "tls_cert_file": "PEM certificate chain: serve HTTPS instead of HTTP (empty: plain HTTP).",
    "tls_key_file": "PEM private key of tls_cert_file, when it is not in that file.",
    "tls_client_ca_file": "PEM CA bundle: require a client certificate issued by one of these (mTLS).",
    "zerotrace_api_key": "0trace apiKey of the sandbox partner.",
    "zerotrace_api_secret": "0trace apiSecret (signs requests); keys/rotate replaces it until reset.",
    "zerotrace_webhook_secret": "0trace webhookSecret (signs webhooks); keys/rotate replaces it until reset.",
    "zerotrace_partner_enabled": "false: every validly signed call answers 4 AUTH_DISABLED.",
    "zerotrace_webhook_url": "Where order.status_changed webhooks go (empty: skipped, not sent).",
    "zerotrace_webhook_schedule": "Delays (sandbox s) between failed webhook attempts (ours; undocumented).",
    "zerotrace_scenario": "auto: NEW->PENDING->EXCHANGE->DONE on the timers below; manual: stays NEW until "
    "driven or expired; emergency: deposit seen, then EMERGENCY (LIMIT). Applies to orders created after.",
    "zerotrace_deposit_after": "auto: sandbox s from create to PENDING (deposit seen).",
    "zerotrace_exchange_after": "auto: sandbox s from PENDING to EXCHANGE (emergency: to EMERGENCY).",
    "zerotrace_done_after": "auto: sandbox s from EXCHANGE to DONE.",
    "zerotrace_deposit_window": "Sandbox s from create to expiration; a NEW order expires then.",
    "zerotrace_emergency_resume_after": "Sandbox s between an accepted emergency choice and EXCHANGE.",
    "zerotrace_rate_limit_weight": "Weight budget per partner per window (create=50, qr=5, others 1).",
    "zerotrace_rate_limit_window": "Sliding window of the budget, real seconds.",
    "zerotrace_nonce_ttl": "Real seconds a nonce stays remembered (reuse refused within).",
    "zerotrace_markup_bps": "Partner-record default markup (when neither body afftax nor a code sets one).",
    "zerotrace_base_fee_bps": "0trace's own fee folded into the rate (ours).",
    "zerotrace_min_usd": "Smallest deposit value accepted, USD.",
    "zerotrace_max_usd": "Largest deposit value accepted, USD.",
    "zerotrace_idempotency_compare": "bytes: a replay must repeat the body bytes; json: same parsed JSON.",
    "zerotrace_token_withheld": "true: every create is answered as a replay is, token null "
    "(ours: a lost first answer and its replay in one); the order exists and only its webhooks can track it.",
    "zerotrace_address_check": "shape: prefix/alphabet/length per network (accepts the spec's examples); "
    "strict: also TRON base58check.",
    "zerotrace_max_codes": "Reference codes per partner.",
    "zerotrace_extra_partners": "More [apiKey, apiSecret, webhookSecret] partners (JSON/control API only).",
    "zerotrace_accounts": "More partners as comma-separated apiKey:apiSecret:webhookSecret[:weight], each "
    "with its own weight budget (default: zerotrace_rate_limit_weight); stats count weight per apiKey.",
    "itrx_api_key": "itrx API-KEY.",
    "itrx_api_secret": "itrx API secret (signs requests and callbacks).",
    "itrx_api_name": "Reported as api_name / summary name.",
    "itrx_balance_sun": "Start balance in sun (default 100,000 TRX); orders draw it down, refunds add back.",
    "itrx_timestamp_tolerance": "Accepted |now - TIMESTAMP|, real seconds.",
    "itrx_signature_mode": "raw: HMAC over the raw body; raw_or_canonical: also the Python-canonical "
    "re-serialisation; strict_canonical: raw must match and already be canonical.",
    "itrx_strict_out_trade_no": "true: a repeated out_trade_no is refused, errno 1 (false: a new order)",
    "itrx_scenario": "auto: 20->30->40; manual: stays 20 until driven; fail: 20->30->32->43; "
    "refund: 20->30->41.",
    "itrx_delegate_after": "Sandbox s from 20 to 30.",
    "itrx_complete_after": "Sandbox s for each later step (30->40, 30->32->43, 30->41).",
    "itrx_default_callback_url": "Account-level callback URL, used when an order has no callback_url.",
    "itrx_callback_schedule": "Delays (sandbox s) between failed callback attempts (documented ladder).",
    "itrx_callback_on": "success: callback at 40 only (documented); final: 40/41/43/0; every: each change.",
    "itrx_min_energy": "Smallest energy_amount (index-data minimum_order_energy).",
    "itrx_max_energy": "Largest energy_amount (index-data maximum_order_energy).",
    "itrx_unactivated_addresses": "TRON addresses treated as not activated (need active>0, +1.5 TRX).",
}


# Fields the control API may not change at run time (the socket is already bound, TLS set up).
IMMUTABLE_FIELDS = frozenset({"host", "port", "tls_cert_file", "tls_key_file", "tls_client_ca_file"})


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SandboxConfig)]


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(SandboxConfig)


def coerce_value(name: str, value: Any) -> Any:
    """Check/convert one value for field ``name``; accepts JSON values and CLI/env strings.

    Raises ValueError with a message naming the field, so the control API can answer 400 precisely.
    """
    hints = _hints()
    if name not in hints:
        raise ValueError(f"unknown config field {name!r}")
    return _coerce(name, hints[name], value)


def _coerce(name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in {"", "none", "null"})
        if is_null and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, inner[0], value)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        items: list[Any]
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise ValueError(f"{name} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, args[0], v) for v in items)
        if len(args) != len(items):
            raise ValueError(f"{name} must have {len(args)} items")
        return tuple(_coerce(name, a, v) for a, v in zip(args, items, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{name} must be a boolean")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name} must be an integer") from None
        raise ValueError(f"{name} must be an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{name} must be a number") from None
        raise ValueError(f"{name} must be a number")
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value
    raise ValueError(f"{name}: unsupported type {tp!r}")


def validate(config: SandboxConfig) -> None:
    """Reject configurations that would make the sandbox misbehave instead of failing loudly later."""
    if config.speed <= 0:
        raise ValueError("speed must be > 0")
    if config.zerotrace_rate_limit_weight < 1 or config.zerotrace_rate_limit_window <= 0:
        raise ValueError("the rate limit needs weight >= 1 and window > 0")
    if not 0 <= config.zerotrace_markup_bps <= 2000:
        raise ValueError("zerotrace_markup_bps must be 0..2000")
    if config.itrx_min_energy < 1 or config.itrx_max_energy < config.itrx_min_energy:
        raise ValueError("itrx energy bounds are inconsistent")
    if config.delivery_timeout <= 0:
        raise ValueError("delivery_timeout must be > 0")
    for item in config.zerotrace_accounts:
        account_fields(item)
    for name in ("zerotrace_webhook_schedule", "itrx_callback_schedule"):
        if any(d < 0 for d in getattr(config, name)):
            raise ValueError(f"{name} delays must be >= 0")


def account_fields(item: str) -> tuple[str, str, str, int | None]:
    """``apiKey:apiSecret:webhookSecret[:weight]`` of :attr:`SandboxConfig.zerotrace_accounts`."""
    parts = item.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise ValueError(f"zerotrace_accounts: {item[:40]!r} is not apiKey:apiSecret:webhookSecret[:weight]")
    weight = None
    if len(parts) == 4:
        if not parts[3].isdigit() or int(parts[3]) < 1:
            raise ValueError(f"zerotrace_accounts: the weight of {parts[0][:40]!r} must be an integer >= 1")
        weight = int(parts[3])
    return parts[0], parts[1], parts[2], weight


def apply_patch(config: SandboxConfig, patch: dict[str, Any]) -> list[str]:
    """Apply a validated patch atomically (all fields or none); returns the names changed."""
    trial = config.copy()
    for name, value in patch.items():
        if name in IMMUTABLE_FIELDS:
            raise ValueError(f"{name} cannot be changed at run time")
        setattr(trial, name, coerce_value(name, value))
    validate(trial)
    for name in patch:
        setattr(config, name, getattr(trial, name))
    return list(patch)


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> SandboxConfig:
    """Build a config from ``ORDER_WORKER_SANDBOX_<FIELD>`` variables, then keyword overrides."""
    env = os.environ if environ is None else environ
    config = SandboxConfig()
    for name in field_names():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            setattr(config, name, coerce_value(name, raw))
    for name, value in overrides.items():
        setattr(config, name, coerce_value(name, value))
    validate(config)
    return config
