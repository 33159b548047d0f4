"""urllib3's connections with the bounds urllib3 does not have: an idle expiry for pooled connections,
a deadline for the whole answer, and a clear line between failing to connect and failing later.

The bounds are per client, so each client gets its own connection and pool classes (built once, in
:func:`pool_classes`) that PoolManager and ProxyManager instantiate as they would their own.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError

from worker.transport._errors import HandshakeFailed, TunnelRefused
from worker.transport._limits import DeadlineSocket

NEW_CONNECTION_ONLY: ContextVar[bool] = ContextVar("new_connection_only", default=False)
"""Set around one request that must not go on a kept-alive connection: one the partner may have closed as
the request left would end the call UNKNOWN, which a non-idempotent request cannot afford."""


@dataclass(frozen=True)
class ConnectionBounds:
    idle_expiry: float
    answer_seconds: float
    answer_bytes: int
    """Backstop on everything read for one answer (header block + body + read-ahead)."""


class _Bounded:
    """Mixed into urllib3's HTTP and HTTPS connections (before them in the MRO)."""

    bounds: ClassVar[ConnectionBounds]
    _answered_at = 0.0
    _out_of_step = False

    @property
    def is_connected(self) -> bool:
        # urllib3 asks this before reusing a pooled connection and reconnects when it is False.
        if self._out_of_step or (self._answered_at and NEW_CONNECTION_ONLY.get()):
            return False
        if self._answered_at and time.monotonic() - self._answered_at > self.bounds.idle_expiry:
            return False
        connected: bool = super().is_connected  # type: ignore[misc]
        return connected

    def connect(self) -> None:
        self._answered_at = 0.0
        try:
            super().connect()  # type: ignore[misc]
        except HTTPError:
            raise  # urllib3 already says what failed (DNS, refused, connect timeout)
        except OSError as exc:
            if str(exc).startswith("Tunnel connection failed"):  # http.client's text for a non-200 CONNECT
                raise TunnelRefused("the proxy refused the tunnel") from exc
            raise HandshakeFailed("no connection before the request") from exc

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> None:
        """Head and body leave in one ``send``: http.client writes them separately, and on loopback and
        LAN the second small write costs about as much CPU again as the first (it is a second segment)."""
        conn: Any = self
        if conn.sock is None:
            self.connect()  # any CONNECT to a proxy happens here, never between held writes
        self._held: bytes | None = b"" if isinstance(body, bytes) and body else None
        try:
            super().request(method, url, body=body, headers=headers, **kw)  # type: ignore[misc]
            held = self._held
        finally:
            self._held = None
        if held:
            super().send(held)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        held = getattr(self, "_held", None)
        if held is not None and isinstance(data, bytes):
            if not held:
                self._held = data  # the head: wait for the body
                return
            self._held = None
            data = held + data
        super().send(data)  # type: ignore[misc]

    def getresponse(self) -> Any:
        """The answer is read through a :class:`DeadlineSocket` from the moment the request is sent."""
        conn: Any = self
        real = conn.sock
        self._out_of_step = False
        stand_in = DeadlineSocket(
            real, time.monotonic() + self.bounds.answer_seconds, self.bounds.answer_bytes, self._mark
        )
        conn.sock = stand_in
        try:
            response = super().getresponse()  # type: ignore[misc]
        finally:
            if conn.sock is stand_in:
                conn.sock = real
        self._answered_at = time.monotonic()
        return response

    def _mark(self) -> None:
        self._out_of_step = True


def pool_classes(bounds: ConnectionBounds) -> dict[str, type[HTTPConnectionPool]]:
    """Pool classes for PoolManager's ``pool_classes_by_scheme``, their connections carrying ``bounds``."""

    class Connection(_Bounded, HTTPConnection):
        pass

    class TLSConnection(_Bounded, HTTPSConnection):
        pass

    Connection.bounds = TLSConnection.bounds = bounds

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    return {"http": Pool, "https": TLSPool}
