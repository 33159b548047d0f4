"""Canonical order statuses and how each partner's raw status maps onto them.

Partners report their own vocabularies; producers only ever see the canonical one (the raw value travels
in ``provider_status``). The ordering helpers exist because pushes and polls can arrive out of order:
a late observation must never move an order backwards, and nothing leaves a terminal status.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SUBMITTING = "submitting"
    AWAITING_DEPOSIT = "awaiting_deposit"
    CONFIRMING = "confirming"
    PROCESSING = "processing"
    ACTION_REQUIRED = "action_required"
    COMPLETED = "completed"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.EXPIRED, Status.REFUNDED, Status.FAILED})

ZEROTRACE_STATUS: dict[str, Status] = {
    "NEW": Status.AWAITING_DEPOSIT,
    "PENDING": Status.CONFIRMING,
    "EXCHANGE": Status.PROCESSING,
    "EMERGENCY": Status.ACTION_REQUIRED,
    "DONE": Status.COMPLETED,
    "EXPIRED": Status.EXPIRED,
}

ITRX_STATUS: dict[int, Status] = {
    0: Status.EXPIRED,
    10: Status.AWAITING_DEPOSIT,
    20: Status.PROCESSING,
    30: Status.PROCESSING,
    31: Status.PROCESSING,
    32: Status.PROCESSING,
    40: Status.COMPLETED,
    41: Status.REFUNDED,
    43: Status.FAILED,
}

# Progress along the normal path. Used only to break ties between two observations of the same moment;
# action_required sits beside confirming because 0trace resumes an emergency into EXCHANGE.
_PROGRESS: dict[Status, int] = {
    Status.SUBMITTING: 0,
    Status.IN_DOUBT: 0,
    Status.AWAITING_DEPOSIT: 1,
    Status.CONFIRMING: 2,
    Status.ACTION_REQUIRED: 2,
    Status.PROCESSING: 3,
    Status.COMPLETED: 4,
    Status.EXPIRED: 4,
    Status.REFUNDED: 4,
    Status.FAILED: 4,
}


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def progress(status: str) -> int:
    return _PROGRESS[Status(status)]


def map_zerotrace(raw: str) -> Status | None:
    """None for a status 0trace may add later: the caller records it and keeps the order where it is."""
    return ZEROTRACE_STATUS.get(raw)


def map_itrx(raw: int) -> Status | None:
    return ITRX_STATUS.get(raw)
