"""Canonical order statuses, the one vocabulary producers see whatever the partner.

Each partner maps its own raw statuses onto these (``worker.partners.<partner>.statuses``); the raw value
travels in ``provider_status``. The ordering helpers exist because pushes and polls can arrive out of order:
a late observation must never move an order backwards, and nothing leaves a terminal status.
"""

from __future__ import annotations

from order_worker_client.events import Status

__all__ = ["TERMINAL", "Status", "is_terminal", "progress"]


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.EXPIRED, Status.REFUNDED, Status.FAILED})

# Progress along the normal path. Used only to break ties between two observations of the same moment;
# action_required sits beside confirming because a partner may resume from it into processing.
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
