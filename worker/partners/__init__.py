"""Partners as plug-ins: the contract every partner implements, the registry that finds them, and the
built-in ones (``zerotrace``, ``itrx``), each a package of its own (client, signing, params, statuses,
pushes, settings).

Partner code knows HTTP and its partner, nothing of the pipeline, the ledger or the bus (import-linter
checks it). A partner is found through the ``order_worker.partners`` entry-point group.
"""

from worker.partners.base import CreateResult, Fate, PartnerError, PartnerOrder, PartnerQuote
from worker.partners.contract import (
    Capabilities,
    GivesQuotes,
    IgnoredPush,
    OffersQuotes,
    Partner,
    PartnerSession,
    PartnerSettings,
    Push,
    PushScheme,
    Refusal,
)
from worker.partners.registry import Connected, UnknownPartnerError, connect, get, names

__all__ = [
    "Capabilities",
    "Connected",
    "CreateResult",
    "Fate",
    "GivesQuotes",
    "IgnoredPush",
    "OffersQuotes",
    "Partner",
    "PartnerError",
    "PartnerOrder",
    "PartnerQuote",
    "PartnerSession",
    "PartnerSettings",
    "Push",
    "PushScheme",
    "Refusal",
    "UnknownPartnerError",
    "connect",
    "get",
    "names",
]
