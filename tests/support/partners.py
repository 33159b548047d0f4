"""The built-in partners bound to clients a test chooses (scripted, or real ones against a stub)."""

from __future__ import annotations

from typing import Any

from worker.partners import registry
from worker.partners.itrx import ItrxSession, ItrxSettings
from worker.partners.registry import Connected
from worker.partners.zerotrace import ZeroTraceSession, ZeroTraceSettings
from worker.settings import Settings


def bound(settings: Settings, zerotrace: Any, itrx: Any) -> dict[str, Connected]:
    """Both built-in partners with ``settings``' groups, calling through the given client objects
    (anything with the methods of ZeroTraceClient and ItrxClient that the test exercises)."""
    zt_group = registry.partner_settings(settings, "0trace")
    itrx_group = registry.partner_settings(settings, "itrx")
    assert isinstance(zt_group, ZeroTraceSettings) and isinstance(itrx_group, ItrxSettings)
    zt, it = registry.get("0trace"), registry.get("itrx")
    return {
        "0trace": Connected(zt, zt_group, ZeroTraceSession(zerotrace), zt.push_scheme(zt_group)),
        "itrx": Connected(it, itrx_group, ItrxSession(itrx, itrx_group), it.push_scheme(itrx_group)),
    }
