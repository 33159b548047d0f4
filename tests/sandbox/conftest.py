"""Shared fixtures: one in-process sandbox per session (reset before every test) and small wire clients.

The clients build requests by hand (``requests`` with explicit bytes) instead of using the worker's
partner clients, so these tests pin the sandbox to the specs and not to the worker's interpretation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from order_worker_sandbox.config import (
    SANDBOX_ITRX_API_KEY,
    SANDBOX_ITRX_API_SECRET,
    SANDBOX_ZEROTRACE_API_KEY,
    SANDBOX_ZEROTRACE_API_SECRET,
)
from order_worker_sandbox.testing import RunningSandbox, running_sandbox

TRON_OK = "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"  # the docs' example address (valid base58check)
CREATE = {
    "type": "float",
    "fromCcy": "btc",
    "toCcy": "usdt_trc20",
    "direction": "from",
    "amount": "0.01",
    "toAddress": "TXyzExampleRecipientAddress0001",
    "refundAddress": "bc1qexamplerefundaddress0000001",
}


def compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def hmac_hex(secret: str, msg: bytes) -> str:
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RunningSandbox]:
    with running_sandbox() as sb:
        yield sb


@pytest.fixture
def sb(sandbox_server: RunningSandbox) -> RunningSandbox:
    sandbox_server.control.reset()
    return sandbox_server


class ZeroTrace:
    """Hand-rolled 0trace client: every header can be omitted or forged per call."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.key = SANDBOX_ZEROTRACE_API_KEY
        self.secret = SANDBOX_ZEROTRACE_API_SECRET
        self.http = requests.Session()

    def send(
        self,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        *,
        method: str = "POST",
        key: str | None = None,
        secret: str | None = None,
        nonce: str | None = None,
        sign: str | None = None,
        sign_body: bytes | None = None,
        headers: dict[str, str] | None = None,
        omit: tuple[str, ...] = (),
        anonymous: bool = False,
        timeout: float = 10,
    ) -> requests.Response:
        raw = compact(body) if isinstance(body, dict) else (body or b"")
        h: dict[str, str] = {"Content-Type": "application/json"}
        if not anonymous:
            h["X-API-KEY"] = key or self.key
            h["X-API-SIGN"] = sign or hmac_hex(secret or self.secret, raw if sign_body is None else sign_body)
            h["X-API-NONCE"] = secrets.token_hex(16) if nonce is None else nonce
        h.update(headers or {})
        for name in omit:
            h.pop(name, None)
        return self.http.request(method, self.base_url + path, data=raw, headers=h, timeout=timeout)

    def call(
        self, path: str, body: bytes | dict[str, Any] | None = None, **kw: Any
    ) -> tuple[int, dict[str, Any]]:
        r = self.send(path, body, **kw)
        return r.status_code, r.json()

    def create(self, idem: str | None = None, **fields: Any) -> dict[str, Any]:
        headers = {"Idempotency-Key": idem} if idem else None
        status, out = self.call("/api/v1/create", {**CREATE, **fields}, headers=headers)
        assert status == 200 and out["code"] == 0, out
        return dict(out["data"])


class Itrx:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url + "/api/v1/frontend"
        self.key = SANDBOX_ITRX_API_KEY
        self.secret = SANDBOX_ITRX_API_SECRET
        self.http = requests.Session()

    def post(
        self,
        path: str,
        data: dict[str, Any] | bytes,
        *,
        ts: int | None = None,
        secret: str | None = None,
        omit: tuple[str, ...] = (),
        sign_body: bytes | None = None,
        timeout: float = 10,
    ) -> requests.Response:
        body = data if isinstance(data, bytes) else self.encode(data)
        h = self.signed_headers(body, ts=ts, secret=secret, sign_body=sign_body)
        for name in omit:
            h.pop(name, None)
        return self.http.post(self.base_url + path, data=body, headers=h, timeout=timeout)

    @staticmethod
    def encode(data: dict[str, Any]) -> bytes:
        """itrx's canonical JSON (sorted keys, no spaces): what its signature covers."""
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def signed_headers(
        self, body: bytes, *, ts: int | None = None, secret: str | None = None, sign_body: bytes | None = None
    ) -> dict[str, str]:
        stamp = str(int(time.time()) if ts is None else ts)
        sig = hmac_hex(
            secret or self.secret, stamp.encode() + b"&" + (body if sign_body is None else sign_body)
        )
        return {"Content-Type": "application/json", "API-KEY": self.key, "TIMESTAMP": stamp, "SIGNATURE": sig}

    def order(self, **fields: Any) -> requests.Response:
        return self.post("/order", self.order_data(**fields))

    @staticmethod
    def order_data(**fields: Any) -> dict[str, Any]:
        """A valid energy order, ``fields`` overriding or adding to it."""
        return {"energy_amount": 65000, "period": "1H", "receive_address": TRON_OK, **fields}

    def get(
        self, path: str, params: dict[str, Any] | None = None, key: str | None = None
    ) -> requests.Response:
        return self.http.get(
            self.base_url + path, params=params, headers={"API-KEY": key or self.key}, timeout=10
        )


@pytest.fixture
def zt(sb: RunningSandbox) -> ZeroTrace:
    return ZeroTrace(sb.base_url)


@pytest.fixture
def itrx(sb: RunningSandbox) -> Itrx:
    return Itrx(sb.base_url)


def openssl_hmac(secret: str, data: bytes) -> str:
    """The docs' shell recipe, run for real: ``openssl dgst -sha256 -hmac SECRET`` on stdin."""
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", secret],
        input=data,
        capture_output=True,
        check=True,
        timeout=10,
    ).stdout.decode()
    return out.strip().rsplit(" ", 1)[-1]


class Receiver:
    """A tiny webhook/callback endpoint on 127.0.0.1:<ephemeral> that records every request verbatim.

    ``statuses`` is consumed one per request (then ``default_status``); ``delay`` makes it slow.
    Signatures are verified with the openssl CLI on the receiving side, as a partner's ops would.
    """

    def __init__(
        self, kind: str, secret: str, statuses: list[int] | None = None, default_status: int = 200
    ) -> None:
        self.kind = kind
        self.secret = secret
        self.statuses = list(statuses or [])
        self.default_status = default_status
        self.delay = 0.0
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items()}
                receiver._record(self.path, body, headers)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
                self.send_response(status)
                if status in (204, 304):
                    self.end_headers()
                    return
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _record(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        if self.kind == "0trace":
            expected = openssl_hmac(self.secret, body)
            given = headers.get("X-Partner-Webhook-Sign", "")
            ts = int(headers.get("X-Partner-Webhook-Timestamp", "0"))
        else:
            ts_text = headers.get("TIMESTAMP", "0")
            expected = openssl_hmac(self.secret, ts_text.encode() + b"&" + body)
            given = headers.get("SIGNATURE", "")
            ts = int(ts_text)
        with self._lock:
            self.records.append(
                {
                    "path": path,
                    "body": body,
                    "headers": headers,
                    "verified": hmac.compare_digest(expected, given),
                    "skew": time.time() - ts,
                }
            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(kind: str, secret: str, **kw: Any) -> Receiver:
        r = Receiver(kind, secret, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
