"""The built-in partners as tests use them: bound to clients a test chooses (scripted, or real ones against
a stub), and orders built from the example params each partner plug-in documents."""

from __future__ import annotations

import copy
import random
import uuid
from typing import Any

from worker.partners import registry
from worker.partners.itrx import ItrxSession, ItrxSettings
from worker.partners.registry import Connected
from worker.partners.zerotrace import ZeroTraceSession, ZeroTraceSettings
from worker.settings import Settings

TRON = str(registry.get("itrx").example_params["receive_address"])
BTC_REFUND = str(registry.get("0trace").example_params["refundAddress"])


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


def zerotrace_params(**overrides: Any) -> dict[str, Any]:
    """The 0trace example order the partner plug-in documents, so tests submit what a user would."""
    return {**registry.get("0trace").example_params, **overrides}


def zerotrace_command(
    command_id: str | None = None, metadata: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    command = {
        "command_id": command_id or f"zt-{uuid.uuid4().hex}",
        "provider": "0trace",
        "params": zerotrace_params(**overrides),
    }
    if metadata:
        command["metadata"] = metadata
    return command


def itrx_command(command_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    params = {**registry.get("itrx").example_params, **overrides}
    return {"command_id": command_id or f"ix-{uuid.uuid4().hex}", "provider": "itrx", "params": params}


def commands_mix(count: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Half 0trace, half itrx, shuffled with the seed; command ids carry the prefix and the seed."""
    rng = random.Random(seed)
    commands = [
        zerotrace_command(f"{prefix}-zt-{seed}-{i:06d}")
        if i % 2 == 0
        else itrx_command(f"{prefix}-ix-{seed}-{i:06d}")
        for i in range(count)
    ]
    rng.shuffle(commands)
    return commands


TV10_ORDER: dict[str, Any] = {
    "id": "1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b",
    "type": "float",
    "status": "PENDING",
    "time": {"reg": 1716800000, "expiration": 1716801800, "left": 1677, "update": 1716800123, "finish": None},
    "from": {
        "code": "btc",
        "network": "Bitcoin",
        "amount": "0.01000000",
        "address": "bc1qexamplepayinaddress00000001",
        "tx": {"id": "abcdef0123456789", "amount": "0.01000000"},
    },
    "to": {
        "code": "usdt_trc20",
        "network": "Tron",
        "amount": "619.987654",
        "address": "TXyzExampleRecipientAddress0001",
        "tx": {"id": None, "amount": None},
    },
    "back": {"address": "bc1qexamplerefundaddress0000001", "tx": {"id": None}},
    "emergency": {"status": [], "choice": "NONE"},
    "rate": "62450.12345678",
    "networkFee": "1.20",
    "markupBps": 50,
}
"""The order inside the 0trace spec's webhook test vector TV10 (a full DTO, spec §9)."""


def zerotrace_order_dto(
    order_id: str, status: str, *, registered: int, updated: int, left: int, token: str | None = None
) -> dict[str, Any]:
    """TV10's order as another order, the size a real answer or webhook carries (~700 bytes); its deposit
    window is the partner's 30 minutes from ``registered``."""
    dto = copy.deepcopy(TV10_ORDER)
    dto.update(id=order_id, status=status)
    dto["time"] = {
        "reg": registered,
        "expiration": registered + 1800,
        "left": left,
        "update": updated,
        "finish": None,
    }
    if token is not None:
        dto["token"] = token
    return dto
