"""Finding partners: the ``order_worker.partners`` entry-point group, and binding them to settings.

Built-in partners are found the same way as a third party's (this project's own metadata names them), so
there is one path for every partner and a test can prove that a partner defined outside ``worker`` works
end to end. The group is read once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points

from pydantic import BaseModel, ValidationError

from worker.messages import CreateOrderCommand
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
    """A partner's settings group: given in code (``Settings.partners``), else from the environment."""
    model = get(name).settings_model
    return model(**settings.partners.get(name, {}))


@dataclass(frozen=True)
class Connected:
    """A partner bound to its settings and this process's HTTP pool: what the pipeline calls."""

    partner: Partner
    settings: PartnerSettings
    session: PartnerSession
    push: PushScheme | None
    http: PartnerHttp | None = None
    """The partner's own HTTP client, closed with the process's runtime."""

    @property
    def name(self) -> str:
        return self.partner.name


def checked_groups(
    settings: Settings, groups: Mapping[str, PartnerSettings] | None = None
) -> dict[str, PartnerSettings]:
    """Every installed partner's settings group (``groups`` when already read), refused (ValueError) when it
    would send the public development credentials to a partner that is not on this host, or when its
    transport settings do not hold together (checked at start-up, not at the first call)."""
    checked = (
        dict(groups) if groups is not None else {name: partner_settings(settings, name) for name in names()}
    )
    settings.check_production_safety(checked)
    for name, group in checked.items():
        try:
            transport_settings(settings.calls, group)
        except ValidationError as error:
            problems = "; ".join(str(item["msg"]) for item in error.errors(include_input=False))
            raise ValueError(f"{name} transport: {problems}") from None
    return checked


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


def connect(
    settings: Settings, observer: Observer | None = None, http: PartnerHttp | None = None
) -> dict[str, Connected]:
    """Every installed partner, bound to its checked settings group and an HTTP client of its own (its
    proxy and certificates are its own); ``http`` makes all of them share one (tests)."""
    connected = {}
    for name, group in checked_groups(settings).items():
        client = http or PartnerHttp(transport_settings(settings.calls, group))
        connected[name] = Connected(
            partner=get(name),
            settings=group,
            session=get(name).connect(group, client, named_results(observer, get(name))),
            push=get(name).push_scheme(group),
            http=client,
        )
    return connected


def named_results(observer: Observer | None, partner: Partner) -> Observer | None:
    """``observer`` fed named results (:func:`~worker.transport.call_result`) instead of raw codes, so a
    metric label says ``rate_limited`` where the partner said ``5`` and its values stay a closed set."""
    if observer is None:
        return None
    codes = partner.capabilities.call_results

    def observe(provider: str, endpoint: str, result: str, seconds: float, weight: int) -> None:
        observer(provider, endpoint, call_result(result, codes), seconds, weight)

    return observe
