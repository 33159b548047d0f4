"""Bounds on what a partner's answer may cost: time, bytes on the wire, bytes after decompression.

The partner decides what it sends; it must never decide how long a worker thread waits or how much memory
it takes. urllib3's read timeout bounds each ``recv`` only (a partner sending one byte per second keeps a
call alive forever) and its decoders inflate whatever arrives. So the socket is read through
:class:`DeadlineSocket`, which gives every ``recv`` only the time left before the answer's deadline and
stops counting at a byte cap, and compressed bodies are inflated by :class:`BoundedDecoder`, which never
produces more than the cap, however small the compressed input.
"""

from __future__ import annotations

import contextlib
import io
import socket
import time
import zlib
from collections.abc import Callable
from typing import Any

# http.client refuses more than 100 header lines and any line over 64 KiB by itself; these bounds are
# tighter and apply to the whole header block.
MAX_HEADER_COUNT = 100


class AnswerTooLarge(Exception):
    """The answer went over one of its caps; ``what`` says which ("body", "decoded body", "headers")."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(what, limit)
        self.what = what
        self.limit = limit


class AnswerDeadline(TimeoutError):
    """The whole answer did not arrive within the read timeout (each byte may have come in time)."""


_SLACK = 0.02


class _DeadlineReader(io.RawIOBase):
    """The raw file http.client reads an answer from: every ``recv`` gets the time left, and the total
    read is capped (the header block is bounded separately; this is the backstop for the whole answer)."""

    def __init__(self, sock: socket.socket, deadline: float, cap: int) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline
        self._cap = cap
        self._read = 0
        self._timeout = sock.gettimeout()
        self._wait = self._timeout if self._timeout is not None else float("inf")
        self.closing = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.closing:
            return 0
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise AnswerDeadline("answer deadline passed")
        if left < self._wait - _SLACK:
            # Each change is a syscall, so the wait is only shortened when it would overshoot by more
            # than the slack: the deadline holds to within that.
            self._wait = left
            self._sock.settimeout(left)
        count = self._raw.readinto(buffer)
        if count:
            self._read += count
            if self._read > self._cap:
                raise AnswerTooLarge("answer", self._cap)
        return count or 0

    def close(self) -> None:
        # The connection may carry the next request: give its socket back the timeout it had.
        with contextlib.suppress(OSError):
            self._sock.settimeout(self._timeout)
        self._raw.close()
        super().close()


class _AnswerFile(io.BufferedReader):
    """http.client closes the answer's file when the body ends by its framing; bytes still buffered then
    came after the answer, so the connection is out of step and must not carry another request."""

    def __init__(self, raw: _DeadlineReader, on_leftover: Callable[[], None]) -> None:
        super().__init__(raw)
        self._deadline_raw = raw
        self._on_leftover = on_leftover

    def close(self) -> None:
        if not self.closed:
            self._deadline_raw.closing = True  # peek must not wait for more bytes
            with contextlib.suppress(OSError, ValueError):
                if self.peek(1):
                    self._on_leftover()
        super().close()


class DeadlineSocket:
    """Stands in for a connection's socket while one answer is read (see :class:`_DeadlineReader`);
    everything but ``makefile`` goes to the real socket, so closing and shutting down behave as usual."""

    def __init__(
        self, sock: socket.socket, deadline: float, cap: int, on_leftover: Callable[[], None]
    ) -> None:
        self._sock = sock
        self._deadline = deadline
        self._cap = cap
        self._on_leftover = on_leftover

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        return _AnswerFile(_DeadlineReader(self._sock, self._deadline, self._cap), self._on_leftover)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_GZIP = 16 + zlib.MAX_WBITS
_ENCODINGS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": zlib.MAX_WBITS}


class _Stage:
    """One content coding, inflated with a bound on every call's output."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._wbits = _ENCODINGS[name]
        self._inflater = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        """Up to ``room + 1`` bytes of output: one more than fits is enough to know the cap is passed."""
        out = bytearray()
        while data and len(out) <= room:
            try:
                out += self._inflater.decompress(data, room + 1 - len(out))
            except zlib.error:
                if self._started or self._name != "deflate":
                    raise
                # "deflate" is a zlib stream by the RFC, raw deflate in practice more often than not.
                self._wbits = -zlib.MAX_WBITS
                self._inflater = zlib.decompressobj(self._wbits)
                continue
            self._started = True
            data = self._inflater.unconsumed_tail
            if self._inflater.eof and self._inflater.unused_data:
                data = self._inflater.unused_data  # another gzip member follows
                self._inflater = zlib.decompressobj(self._wbits)
        return bytes(out)


class BoundedDecoder:
    """Decodes a ``Content-Encoding`` chain chunk by chunk, raising :class:`AnswerTooLarge` as soon as the
    decoded body would pass ``cap``: a small gzip bomb costs the cap, not its inflated size. Codings other
    than gzip and deflate pass through undecoded: we ask for identity, and an answer in a coding we do not
    know is better given to the provider client as it came than refused."""

    def __init__(self, encoding: str, cap: int) -> None:
        names = [part.strip().lower() for part in encoding.split(",") if part.strip()]
        self.active = bool(names) and all(name in _ENCODINGS for name in names)
        self._stages = [_Stage(name) for name in reversed(names)] if self.active else []
        self._cap = cap
        self._size = 0

    def feed(self, data: bytes) -> bytes:
        if not self.active:
            return data
        for stage in self._stages:
            data = stage.feed(data, self._cap - self._size)
        self._size += len(data)
        if self._size > self._cap:
            raise AnswerTooLarge("decoded body", self._cap)
        return data
