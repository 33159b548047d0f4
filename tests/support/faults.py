"""A TCP relay that injects network faults (connection resets, a partner that stops listening) and can
read the HTTP requests passing through it, to count partner attempts on the wire."""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class HttpRequestSeen:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _HttpSniffer:
    """Splits a client->server byte stream into HTTP/1.1 requests (Content-Length bodies only)."""

    def __init__(self, sink: Callable[[HttpRequestSeen], None]) -> None:
        self.buffer = b""
        self.sink = sink

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path, *_ = ([*head[0].split(" "), "", ""])[:3]
            self.sink(HttpRequestSeen(time.monotonic(), method, path, headers, body))


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer sees a TCP RST, as when a middlebox or a host dies."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpFaultProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream>, one selector thread for every connection.

    ``reset_all()`` resets both sides of every live connection (RST); ``http_sink`` receives every HTTP
    request a client sent through it (for counting partner attempts on the wire).
    """

    def __init__(
        self, upstream_port: int, http_sink: Callable[[HttpRequestSeen], None] | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.http_sink = http_sink
        self.listener = self._listen(0)
        self._listening = True
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self.resets = 0
        self.reset_connections = 0
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._sniffers: dict[socket.socket, _HttpSniffer] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._commands: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._closed = False
        self._selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="tcp-fault-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(256)
        listener.setblocking(False)
        return listener

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._peers) // 2

    def reset_all(self) -> int:
        """Reset every live connection; returns how many were cut."""
        return self._command("reset")

    def pause(self) -> int:
        """Partner unreachable: stop listening (connects are refused) and reset every live connection."""
        return self._command("pause")

    def resume(self) -> None:
        """Listen again on the same port."""
        self._command("resume")

    def _command(self, command: str) -> int:
        self._done.clear()
        with self._lock:
            self._commands.append(command)
        self._wake_w.send(b"x")
        assert self._done.wait(5), f"proxy did not {command}"
        return self.reset_connections

    def close(self) -> None:
        with self._lock:
            self._commands.append("close")
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select(0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    self._run_commands()
                elif sock in self._peers:
                    self._pump(sock)

    def _run_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for command in commands:
            if command in ("reset", "close", "pause"):
                cut = 0
                for sock in list(self._peers):
                    if self._drop(sock, reset=True):
                        cut += 1
                if command != "close":
                    self.resets += 1
                    self.reset_connections = cut
            if command == "pause" and self._listening:
                self._selector.unregister(self.listener)
                self.listener.close()
                self._listening = False
            if command == "resume" and not self._listening:
                self.listener = self._listen(self.port)
                self._selector.register(self.listener, selectors.EVENT_READ, "accept")
                self._listening = True
            self._done.set()
            if command == "close":
                self._closed = True
                self._selector.close()
                _abort(self.listener)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=3)
        except OSError:
            _abort(client)
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.settimeout(10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._peers[client] = upstream
            self._peers[upstream] = client
        if self.http_sink is not None:
            self._sniffers[client] = _HttpSniffer(self.http_sink)
        self._selector.register(client, selectors.EVENT_READ, "client")
        self._selector.register(upstream, selectors.EVENT_READ, "upstream")
        self.accepted += 1

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            self._drop(sock, reset=True)
            return
        if not data:
            self._drop(sock, reset=False)
            return
        sniffer = self._sniffers.get(sock)
        if sniffer is not None:
            with contextlib.suppress(Exception):
                sniffer.feed(data)
        try:
            peer.sendall(data)
        except OSError:
            self._drop(sock, reset=True)

    def _drop(self, sock: socket.socket, *, reset: bool) -> bool:
        with self._lock:
            peer = self._peers.pop(sock, None)
            if peer is not None:
                self._peers.pop(peer, None)
        if peer is None:
            return False
        for item in (sock, peer):
            self._sniffers.pop(item, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(item)
            if reset:
                _abort(item)
            else:
                with contextlib.suppress(OSError):
                    item.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    item.close()
        return True
