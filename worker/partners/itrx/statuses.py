"""itrx's numeric order statuses on the canonical ones."""

from __future__ import annotations

from worker.status import Status

STATUSES: dict[int, Status] = {
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


def map_status(raw: int) -> Status | None:
    """None for a status itrx may add later: the caller records it and keeps the order where it is."""
    return STATUSES.get(raw)
