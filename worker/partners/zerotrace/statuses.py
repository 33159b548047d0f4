"""0trace's raw statuses on the canonical ones."""

from __future__ import annotations

from worker.status import Status

STATUSES: dict[str, Status] = {
    "NEW": Status.AWAITING_DEPOSIT,
    "PENDING": Status.CONFIRMING,
    "EXCHANGE": Status.PROCESSING,
    "EMERGENCY": Status.ACTION_REQUIRED,
    "DONE": Status.COMPLETED,
    "EXPIRED": Status.EXPIRED,
}


def map_status(raw: str) -> Status | None:
    """None for a status 0trace may add later: the caller records it and keeps the order where it is."""
    return STATUSES.get(raw)
