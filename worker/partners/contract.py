"""What a partner plug-in provides, and the only things the rest of the service knows about partners.

The pipeline, the webhook receiver, the scheduler and the CLI handle every partner through these types.
What differs between partners and decides money is said here as data, not as code paths elsewhere:
whether a create may be sent again (:attr:`Capabilities.idempotent_create`), whether reading an order
needs a one-time secret from its create (:attr:`Capabilities.secret_to_fetch`), what each call costs in
the partner's rate budget. A third partner is a package that implements :class:`Partner` and names it in
the ``order_worker.partners`` entry-point group; nothing in ``worker`` changes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.messages import ACCOUNT_PATTERN, DEFAULT_ACCOUNT
from worker.partners.base import CreateResult, PartnerOrder, PartnerQuote
from worker.settings import comma_list, group_config
from worker.transport import Observer, PartnerHttp

ACCOUNT_NAME = re.compile(ACCOUNT_PATTERN)


class PartnerSettings(BaseSettings):
    """Settings every partner has; a partner subclasses it with its own fields and environment prefix.

    Each partner reads its own group (``ORDER_WORKER_<PARTNER>_*``, or files of the same names in the
    secrets directory), so a partner's knobs live with its code and adding one touches no core module.
    """

    model_config = group_config()

    development_secrets: ClassVar[frozenset[str]] = frozenset()
    """The public credentials of the local simulator, refused against any partner not on this host."""

    base_url: str = Field(description="The partner API's origin.")
    weight_budget: int = Field(
        0, ge=0, description="The account's rate-limit weight per window, shared by every replica (0: off)."
    )
    weight_window: float = Field(60.0, gt=0, description="The partner's sliding rate-limit window, seconds.")
    weight_headroom: float = Field(0.1, ge=0, lt=1, description="Share of the weight budget never used.")
    weight_max_wait: float = Field(
        5.0, ge=0, description="Seconds a call waits for budget in its thread before it is deferred."
    )
    weight_create_reserve: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of the usable weight budget that reads (polls, quotes, reads a push asks for) "
        "always leave free for creates and operator actions, so a create does not wait behind polls.",
    )
    connect_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds to open a connection to this partner (default: HTTP_CONNECT_TIMEOUT).",
    )
    read_timeout: float | None = Field(
        None, gt=0, description="Seconds for this partner's whole answer (default: HTTP_READ_TIMEOUT)."
    )
    pool_size: int | None = Field(
        None,
        ge=1,
        description="Keep-alive connections to this partner per process (default: HTTP_POOL_SIZE).",
    )
    proxy_url: SecretStr | None = Field(
        None, description="Proxy for this partner's calls, http(s)://[user:password@]host:port (secret)."
    )
    ca_bundle: Path | None = Field(None, description="PEM CA bundle trusted for this partner.")
    client_cert: Path | None = Field(None, description="PEM client certificate for this partner (mTLS).")
    client_key: Path | None = Field(None, description="PEM key of the client certificate, if not in it.")
    accounts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated names of more accounts at this partner, each read from this group's "
        "variables with the account's name inserted (ZEROTRACE_EU_API_KEY); this group is account 'default'.",
    )

    @field_validator("accounts", mode="before")
    @classmethod
    def _account_list(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("accounts")
    @classmethod
    def _account_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not ACCOUNT_NAME.fullmatch(name) or name == DEFAULT_ACCOUNT:
                raise ValueError(
                    f"account {name[:40]!r}: names are 1..24 of a-z, 0-9, _ (starting with a letter), "
                    f"and not {DEFAULT_ACCOUNT!r}"
                )
        if len(set(value)) != len(value):
            raise ValueError("an account is named twice")
        return value

    def secrets(self) -> list[SecretStr]:
        """Every secret of this group (for the production-safety check); subclasses list theirs."""
        return []

    def is_local(self) -> bool:
        """The partner is on this host (the simulator), where development credentials are allowed."""
        return is_loopback_url(self.base_url)

    def uses_development_secrets_remotely(self) -> bool:
        """True when a public simulator credential would be sent to a partner that is not on this host."""
        if self.is_local():
            return False
        return any(secret.get_secret_value() in self.development_secrets for secret in self.secrets())


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_config(partner_prefix: str) -> SettingsConfigDict:
    """The settings configuration of a partner group: ``ORDER_WORKER_<partner_prefix>_*``."""
    return group_config(f"{partner_prefix}_")


@dataclass(frozen=True)
class Capabilities:
    """What the service may assume about a partner; each flag changes a decision about money."""

    idempotent_create: bool
    """A create may be sent again with the same key and never opens a second order. When False, an
    ambiguous create (the request may have arrived) makes the order ``in_doubt`` instead of a retry."""
    secret_to_fetch: bool = False
    """The create answer carries a one-time secret without which the order cannot be read; it is sealed at
    rest. A create answered without it (a replay) leaves the order ``untrackable`` by polling."""
    fetch_by_order_id: bool = True
    """Reading needs only the partner's order id, so an operator can settle an in_doubt order by naming it."""
    precheck: bool = False
    """The session checks something before the first create (a balance) and may refuse the order."""
    weights: Mapping[str, int] = field(default_factory=dict)
    """Cost of a call in the partner's rate budget, by operation (``create``, ``fetch``, ``action``,
    ``quote``); empty: no budget."""
    call_results: Mapping[str, str] = field(default_factory=dict)
    """The partner's own error codes (``PartnerError.code``) as named results of the metrics' closed
    vocabulary (:class:`~worker.transport.CallResult`): only the partner knows that 0trace's ``5`` is its
    rate limit. Codes left out are named by the transport's rules, else ``other``."""
    action_choices: tuple[str, ...] = ()
    """What an operator may answer an ``action_required`` order with; empty: the partner takes no such
    answer through its API. A partner with choices has a session that is :class:`ResolvesActions`.
    Sending the same choice again must be harmless, since a redelivered action whose first call may have
    reached the partner is sent again."""
    action_options: frozenset[str] = frozenset()
    """The option names a choice may carry; any other is refused before the partner is called."""


@dataclass(frozen=True)
class Refusal:
    """A precheck's verdict that the order cannot succeed (it fails without a create call)."""

    code: str
    reason: str


class PartnerSession(Protocol):
    """One partner account's calls, bound to its settings and the process's HTTP pool. Thread-safe."""

    def create(self, params: Any, partner_ref: str, ref_code: str | None) -> CreateResult:
        """Place the order; ``partner_ref`` is deterministic per command (the idempotency key)."""
        ...

    def fetch(self, order_id: str, secret: str | None) -> PartnerOrder:
        """Read the order as the partner sees it now."""
        ...

    def precheck(self, params: Any) -> Refusal | None:
        """Before the first create, when :attr:`Capabilities.precheck`: a refusal, or None to go ahead.
        Raises :class:`~worker.partners.base.PartnerError` when the check itself failed."""
        ...


@runtime_checkable
class ResolvesActions(Protocol):
    """A session that can answer an order the partner holds for a decision (see
    :attr:`Capabilities.action_choices`). Kept apart from :class:`PartnerSession` so partners without
    such a call implement nothing for it."""

    def resolve_action(
        self, order_id: str, secret: str | None, choice: str, options: Mapping[str, str]
    ) -> None:
        """Send the choice; returns once the partner accepted it. Raises
        :class:`~worker.partners.base.PartnerError` when it did not (its fate says whether it arrived)."""
        ...


@runtime_checkable
class OffersQuotes(Protocol):
    """A partner plug-in that can price an order before it is placed (quotes over the bus). Its sessions
    are :class:`GivesQuotes`; a partner without both answers quote requests ``unsupported``. Kept apart
    from :class:`Partner` so a partner without a price call implements nothing for it."""

    def check_quote_params(self, params: Mapping[str, Any]) -> BaseModel:
        """What to price, validated: the fields the price call takes. A create's params are accepted too
        (checked as a create's, then reduced to those fields), so a producer can price what it is about
        to order. Raises pydantic's ValidationError or ValueError with a reason."""
        ...


@runtime_checkable
class GivesQuotes(Protocol):
    """A session with the partner's price call; its weight in the rate budget is
    ``Capabilities.weights["quote"]`` (absent: free)."""

    def quote(self, params: Any) -> PartnerQuote:
        """The partner's price for the params :meth:`OffersQuotes.check_quote_params` returned. Raises
        :class:`~worker.partners.base.PartnerError` when the partner refused or failed."""
        ...


@dataclass(frozen=True)
class Push:
    """A verified push, reduced to what the receiver needs to find the order and apply it."""

    dedupe_key: str
    """Identifies this delivery's content, so a redelivery is answered as a duplicate."""
    order_id: str | None = None
    partner_ref: str | None = None
    """Our own key as the partner echoes it, to find an order whose create answer was lost."""
    observed: PartnerOrder | None = None
    """The order as the push describes it; None when the push is only a signal to read the order."""


@dataclass(frozen=True)
class IgnoredPush:
    """A verified push that carries nothing to apply (another event type)."""

    dedupe_key: str


class PushScheme(Protocol):
    """How a partner signs and shapes its pushes. Checks run in the receiver's order: headers and time
    window first (cheap), the signature over the raw bytes next, and only a verified body is parsed."""

    signature_header: str
    timestamp_header: str
    max_future: float
    max_age: float
    delivered_status: int | None
    """The one status the partner counts as delivered (itrx: 200); None: any 2xx."""

    def verify(self, raw: bytes, signature: str, timestamp: str) -> bool: ...

    def parse(self, body: Mapping[str, Any]) -> Push | IgnoredPush:
        """Raises ValueError (or KeyError/TypeError) for a body that cannot be applied."""
        ...


@runtime_checkable
class Partner(Protocol):
    """A partner plug-in: static knowledge plus factories bound to settings.

    A plug-in may also name ``order_model``, the pydantic model of the ``order`` its events carry; the
    AsyncAPI document then types that partner's events with it (without one, ``order`` is any object)."""

    name: str
    """The provider id on the wire (commands, events, routing keys, metric labels)."""
    capabilities: Capabilities
    params_model: type[BaseModel]
    settings_model: type[PartnerSettings]
    example_params: Mapping[str, Any]
    """Valid create params against the local simulator, for the demo and the documentation."""

    def check_params(self, params: Mapping[str, Any], ref_code: str | None) -> BaseModel:
        """The validated params model; raises pydantic's ValidationError or ValueError with a reason."""
        ...

    def connect(
        self, settings: PartnerSettings, http: PartnerHttp, observer: Observer | None
    ) -> PartnerSession: ...

    def push_scheme(self, settings: PartnerSettings) -> PushScheme | None: ...
