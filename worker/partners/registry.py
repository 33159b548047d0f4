"""Finding partners: the ``order_worker.partners`` entry-point group, and binding them to settings.

Built-in partners are found the same way as a third party's (this project's own metadata names them), so
there is one path for every partner and a test can prove that a partner defined outside ``worker`` works
end to end. The group is read once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from worker.messages import DEFAULT_ACCOUNT, CreateOrderCommand
from worker.partners.accounts import every_group, group_key
from worker.partners.contract import Partner, PartnerSession, PartnerSettings, PushScheme
from worker.settings import CallSettings, Settings
from worker.transport import Observer, PartnerHttp, TransportSettings, call_result

ENTRY_POINT_GROUP = "order_worker.partners"


class UnknownPartnerError(LookupError):
    """A provider id that no installed partner plug-in answers to."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name, known)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown provider {self.name[:64]!r} (known: {', '.join(self.known) or 'none installed'})"


@functools.cache
def registered() -> Mapping[str, Partner]:
    """Every installed partner by provider id. A broken or duplicate plug-in is a start-up error naming
    it, never a partner that silently goes missing."""
    found: dict[str, Partner] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        partner = entry.load()
        if not isinstance(partner, Partner):
            raise TypeError(f"entry point {entry.name} = {entry.value} is not a partner plug-in")
        if partner.name != entry.name:
            raise ValueError(f"entry point {entry.name} names a partner called {partner.name!r}")
        if partner.name in found:
            raise ValueError(f"two partner plug-ins answer to {partner.name!r}")
        found[partner.name] = partner
    return dict(sorted(found.items()))


def names() -> list[str]:
    return list(registered())


def get(name: str) -> Partner:
    partner = registered().get(name)
    if partner is None:
        raise UnknownPartnerError(name, names())
    return partner


def check_command(command: CreateOrderCommand) -> BaseModel:
    """The command's params, validated by its partner. Raises UnknownPartnerError, pydantic's
    ValidationError or ValueError (a reason the producer can read)."""
    return get(command.provider).check_params(command.params, command.ref_code)


def partner_settings(settings: Settings, name: str) -> PartnerSettings:
    """A partner's settings group (its default account): given in code (``Settings.partners``), else from
    the environment."""
    model = get(name).settings_model
    return model(**settings.partners.get(name, {}))


def account_groups(
    settings: Settings, name: str, default: PartnerSettings | None = None
) -> dict[str, PartnerSettings]:
    """Every account of a partner by account name, the default one first; an account's values given in
    code are ``Settings.partners["<provider>:<account>"]``."""
    model = get(name).settings_model
    default = default if default is not None else partner_settings(settings, name)
    given = {account: settings.partners.get(group_key(name, account), {}) for account in default.accounts}
    return every_group(model, default, given)


class UnknownAccountError(LookupError):
    """A command named an account that the deployment's settings do not define for its provider."""

    def __init__(self, provider: str, account: str, known: list[str]) -> None:
        super().__init__(provider, account, known)
        self.provider = provider
        self.account = account
        self.known = known

    def __str__(self) -> str:
        return f"{self.provider} has no account {self.account[:32]!r} (known: {', '.join(self.known)})"


@dataclass(frozen=True)
class Connected:
    """A partner account bound to its settings and this process's HTTP pool: what the pipeline calls.

    The pipeline's map holds each partner's default account; the others hang off it (:attr:`others`), so
    everything that handles "the partner" keeps doing so and only what names an account looks further."""

    partner: Partner
    settings: PartnerSettings
    session: PartnerSession
    push: PushScheme | None
    http: PartnerHttp | None = None
    """The partner's own HTTP client, closed with the process's runtime."""
    account: str = DEFAULT_ACCOUNT
    others: Mapping[str, Connected] = field(default_factory=dict)
    """The partner's other accounts by name (set on the default account only)."""

    @property
    def name(self) -> str:
        return self.partner.name

    @property
    def key(self) -> str:
        """The account's name where one thing is kept per account (its shared rate budget)."""
        return group_key(self.partner.name, self.account)

    def for_account(self, account: str | None) -> Connected:
        """The named account of this partner (None: the default one); raises UnknownAccountError."""
        if account is None or account == self.account:
            return self
        found = self.others.get(account)
        if found is None:
            raise UnknownAccountError(self.name, account, [self.account, *self.others])
        return found

    def every_account(self) -> list[Connected]:
        return [self, *self.others.values()]


def checked_groups(
    settings: Settings, groups: Mapping[str, PartnerSettings] | None = None
) -> dict[str, PartnerSettings]:
    """Every installed partner's settings group (``groups`` when already read), refused (ValueError) when it
    would send the public development credentials to a partner that is not on this host, or when its
    transport settings do not hold together (checked at start-up, not at the first call). The groups of
    the partners' other accounts are read and checked the same way."""
    return {name: accounts[DEFAULT_ACCOUNT] for name, accounts in checked_accounts(settings, groups).items()}


def checked_accounts(
    settings: Settings, groups: Mapping[str, PartnerSettings] | None = None
) -> dict[str, dict[str, PartnerSettings]]:
    """:func:`checked_groups` with every account of each partner, by partner and account name."""
    defaults = (
        dict(groups) if groups is not None else {name: partner_settings(settings, name) for name in names()}
    )
    every = {}
    for name, default in defaults.items():
        try:
            every[name] = account_groups(settings, name, default)
        except ValidationError as error:
            problems = "; ".join(_problem(item) for item in error.errors(include_input=False))
            raise ValueError(f"{name} accounts: {problems}") from None
    flat = {
        group_key(name, account): group
        for name, accounts in every.items()
        for account, group in accounts.items()
    }
    settings.check_production_safety(flat)
    for key, group in flat.items():
        try:
            transport_settings(settings.calls, group)
        except ValidationError as error:
            problems = "; ".join(str(item["msg"]) for item in error.errors(include_input=False))
            raise ValueError(f"{key} transport: {problems}") from None
    return every


def _problem(item: Any) -> str:
    where = ".".join(str(part) for part in item["loc"])
    return f"{where}: {item['msg']}" if where else str(item["msg"])


def transport_settings(calls: CallSettings, group: PartnerSettings) -> TransportSettings:
    """How one partner's calls travel: the partner's own values where its group sets them (timeouts, pool,
    proxy, TLS files), the shared ``http_*`` ones otherwise."""
    return TransportSettings(
        connect_timeout=group.connect_timeout or calls.http_connect_timeout,
        read_timeout=group.read_timeout or calls.http_read_timeout,
        pool_size=group.pool_size or calls.http_pool_size,
        idle_expiry=calls.http_idle_expiry,
        max_response_bytes=calls.http_max_response_bytes,
        proxy_from_env=calls.http_proxy_from_env,
        proxy_url=group.proxy_url,
        ca_bundle=group.ca_bundle,
        client_cert=group.client_cert,
        client_key=group.client_key,
    )


AccountObserver = Callable[[str, str, str, str, float, int], None]
"""``(provider, account, endpoint, result, seconds, weight)`` per partner call: the transport's
:data:`~worker.transport.Observer` with the account whose session made the call."""


def connect(
    settings: Settings, observer: AccountObserver | None = None, http: PartnerHttp | None = None
) -> dict[str, Connected]:
    """Every installed partner, each account bound to its checked settings group and an HTTP client of
    its own (its proxy and certificates are its own); ``http`` makes all of them share one (tests)."""
    connected = {}
    for name, accounts in checked_accounts(settings).items():
        partner = get(name)
        bound = {}
        for account, group in accounts.items():
            client = http or PartnerHttp(transport_settings(settings.calls, group))
            bound[account] = Connected(
                partner=partner,
                settings=group,
                session=partner.connect(group, client, named_results(observer, partner, account)),
                push=partner.push_scheme(group),
                http=client,
                account=account,
            )
        default = bound.pop(DEFAULT_ACCOUNT)
        connected[name] = replace(default, others=bound)
    return connected


def named_results(observer: AccountObserver | None, partner: Partner, account: str) -> Observer | None:
    """``observer`` fed the account and named results (:func:`~worker.transport.call_result`) instead of
    raw codes, so a metric label says ``rate_limited`` where the partner said ``5`` and its values stay a
    closed set."""
    if observer is None:
        return None
    codes = partner.capabilities.call_results

    def observe(provider: str, endpoint: str, result: str, seconds: float, weight: int) -> None:
        observer(provider, account, endpoint, call_result(result, codes), seconds, weight)

    return observe
