"""Tiny local partner stand-ins for the provider tests (127.0.0.1 only, nothing shared with the sandbox).

``StubServer`` is a well-behaved HTTP/1.1 keep-alive server whose answers each test scripts; it records the
raw bytes it received so tests can recompute signatures exactly as a partner would. ``RawServer`` is a
bare TCP listener for the misbehaving cases (silence, early close, reset, truncation, garbage).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[Received], Reply]


def json_reply(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


class StubServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[Received] = []
        self.responder: Responder = lambda _req: Reply()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    self.client_address[1],
                )
                stub.received.append(request)
                reply = stub.responder(request)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = _handle
            do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def reply(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.responder = lambda _req: json_reply(status, obj, headers)

    def reply_raw(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.responder = lambda _req: Reply(status, body, headers or {})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (headers plus Content-Length body) from a raw connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


class RawServer:
    """Accepts connections and hands each to ``behaviour`` (which owns the socket)."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.behaviour(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()
        self._sock.close()


def hold_silently(server_ref: list[RawServer]) -> Callable[[socket.socket], None]:
    def behaviour(conn: socket.socket) -> None:
        server_ref[0].requests.append(read_request(conn))
        # never answer; the socket is closed by RawServer.close()

    return behaviour


def close_after_request(conn: socket.socket) -> None:
    read_request(conn)
    conn.close()


def reset_after_request(conn: socket.socket) -> None:
    read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def truncate_response(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"code":0,'
    )
    conn.close()


def garbage_response(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"THIS IS NOT HTTP\r\n\r\n")
    conn.close()


class Observations:
    """Records every observer call, as the lead's metrics hook would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, float, int]] = []

    def __call__(self, provider: str, endpoint: str, result: str, seconds: float, weight: int) -> None:
        self.calls.append((provider, endpoint, result, seconds, weight))
