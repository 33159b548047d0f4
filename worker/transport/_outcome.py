"""What is provable about a failed partner request, and the one exception that carries it.

The classification is the whole point: whether a failed create may be sent again decides between a
safe retry and a double charge. The transport knows what happened to the bytes; a partner's client adds
what the partner's answer means; the pipeline combines that with the partner's capabilities.
"""

from __future__ import annotations

from enum import StrEnum


class Fate(StrEnum):
    """What is known about whether the partner acted on a request that failed."""

    NOT_SENT = "not_sent"
    """No byte reached the partner (connection refused, DNS, connect timeout): always safe to send again."""
    REFUSED = "refused"
    """The partner answered and did not act (rate limit, upstream down, bad input...)."""
    UNKNOWN = "unknown"
    """The request may have been acted on: timeout after sending, reset, 5xx, unreadable answer."""


class PartnerError(Exception):
    """A failed partner call. ``reason`` is safe to publish: it never contains secrets or tokens.

    A plain exception class rather than a frozen dataclass: contextlib and pickling both need to set
    attributes (``__traceback__``, ``args``) on exceptions in flight.
    """

    def __init__(
        self,
        fate: Fate,
        code: str,
        reason: str,
        retryable: bool,
        retry_after: float | None = None,
        http_status: int | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(fate, code, reason, retryable, retry_after, http_status, rate_limited)
        self.fate = fate
        self.code = code
        """The partner's own code where there is one ('5' for RATE_LIMIT; itrx 'errno_<n>'), else a
        transport code such as 'timeout', 'connection_reset', 'http_503'."""
        self.reason = reason
        self.retryable = retryable
        """True when sending the same request again later can succeed (rate limit, 5xx, network)."""
        self.retry_after = retry_after
        self.http_status = http_status
        self.rate_limited = rate_limited
        """The partner refused for its rate limit: the account's shared budget holds every replica's
        calls until ``retry_after``."""

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"

    def __repr__(self) -> str:
        return f"PartnerError(fate={self.fate.value}, code={self.code!r}, retryable={self.retryable})"
