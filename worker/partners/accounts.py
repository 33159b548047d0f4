"""Several accounts at one partner: the settings group of each account beyond the default one.

A deployment may hold several accounts at a partner (brands, regions, reference codes), each with its own
credentials, webhook secrets and rate budget. The partner's own group (``ORDER_WORKER_ZEROTRACE_*``) stays
the account ``default``, so a deployment that names no other account reads exactly what it read before.
Its ``ACCOUNTS`` setting names the others; account ``eu`` reads ``ORDER_WORKER_ZEROTRACE_EU_*`` (and secret
files of the same names, lower case), with the same fields as the partner's group.

What an account leaves unset is inherited from the default group only where both accounts talk to the
same partner the same way (its URL, timeouts, proxy, TLS files, the window of its budget); credentials,
webhook secrets and the weight budget are the account's own and fall back to the partner's defaults, so a
forgotten secret is refused by the production-safety check instead of silently borrowing another account's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.messages import DEFAULT_ACCOUNT
from worker.partners.contract import PartnerSettings

NOT_INHERITED = frozenset({"weight_budget", "accounts"})
"""Fields of :class:`PartnerSettings` that belong to one account; every other field of it is inherited."""
INHERITED = tuple(name for name in PartnerSettings.model_fields if name not in NOT_INHERITED)


def group_key(provider: str, account: str) -> str:
    """How an account is named where the service names one thing per account (the shared rate budget,
    ``Settings.partners`` keys, messages): the provider alone for the default account, so the budget of
    a deployment that had one account keeps its name and its charges across the upgrade."""
    return provider if account == DEFAULT_ACCOUNT else f"{provider}:{account}"


def env_prefix(model: type[PartnerSettings], account: str) -> str:
    """The variable prefix of an account's settings: ``ORDER_WORKER_ZEROTRACE_EU_`` for ``eu``."""
    prefix = str(model.model_config.get("env_prefix", ""))
    return prefix if account == DEFAULT_ACCOUNT else f"{prefix}{account.upper()}_"


def check_names(model: type[PartnerSettings], accounts: list[str]) -> None:
    """Refuse an account whose variables would be read by the default group too: account ``previous`` of
    itrx would set ``ORDER_WORKER_ITRX_PREVIOUS_API_SECRETS``, a field of the default group."""
    for account in accounts:
        clash = [name for name in model.model_fields if name.startswith(account + "_")]
        if clash:
            raise ValueError(
                f"account {account!r}: its variables would clash with {env_prefix(model, DEFAULT_ACCOUNT)}"
                f"{clash[0].upper()}; choose another name"
            )


def account_group(
    model: type[PartnerSettings],
    default: PartnerSettings,
    account: str,
    given: Mapping[str, Any] | None = None,
) -> PartnerSettings:
    """Account ``account``'s settings: its own variables (or ``given`` values), the default group's where
    it sets none of the inherited ones."""
    own = model(_env_prefix=env_prefix(model, account), **dict(given or {}))
    inherited: dict[str, Any] = {
        name: getattr(default, name) for name in INHERITED if name not in own.model_fields_set
    }
    return own.model_copy(update={**inherited, "accounts": []})


def every_group(
    model: type[PartnerSettings], default: PartnerSettings, given: Mapping[str, Mapping[str, Any]]
) -> dict[str, PartnerSettings]:
    """The default group and each account it names, by account name; ``given[account]`` holds values
    given in code for that account."""
    check_names(model, default.accounts)
    groups = {DEFAULT_ACCOUNT: default}
    for account in default.accounts:
        groups[account] = account_group(model, default, account, given.get(account))
    return groups
