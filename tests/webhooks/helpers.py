"""Builders for the push-receiver tests: a real SQLite ledger and pipeline, an itrx stub, signed pushes.

Every secret configured here is a *canary*: a distinctive value that the canary guard (conftest) looks
for in every response body, every outbox row, the ledger file itself and the captured log output.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from pydantic import SecretStr

from tests.support.partners import zerotrace_order_dto
from tests.support.settings import settings_of
from worker.ledger import open_ledger
from worker.ledger.base import Ledger
from worker.messages import CreateOrderCommand, EventError
from worker.partners import registry
from worker.partners.base import PartnerOrder
from worker.partners.itrx.signing import canonical_json, itrx_sign
from worker.partners.zerotrace.client import parse_order
from worker.partners.zerotrace.signing import sign_body
from worker.pipeline import OrderPipeline, partner_ref
from worker.sealing import TokenSealer
from worker.settings import Settings
from worker.status import Status
from worker.transport import PartnerHttp
from worker.webhooks.receiver import Headers, PushReceiver, PushResult

# --- canaries ----------------------------------------------------------------------------------------
CANARY_ZT_WEBHOOK_NEW = "canary-zt-whsec-NEW-5f1d2c3b4a6978879"
CANARY_ZT_WEBHOOK_OLD = "canary-zt-whsec-OLD-0a9b8c7d6e5f4a3b2"
CANARY_ZT_API_SECRET = "canary-zt-apisec-77e1c0ffee4242d00d"
CANARY_ITRX_SECRET = "CANARYITRXSECRET00112233445566778899AABBCCDDEEFF"
CANARY_ITRX_PREVIOUS = "CANARYITRXPREVIOUS99887766554433221100FFEEDDCC"
CANARY_ITRX_API_KEY = "CANARYITRXAPIKEY5A4DB0B0C1E24F1E"
CANARY_TOKEN = "canary-order-token-v8k3Po9xQ2mN7bL4cD1eF6"
_TOKEN_KEY_MATERIAL = base64.b64encode(b"canary-token-key-material-32b!!!").decode()
CANARY_TOKEN_KEY = f"ck1:{_TOKEN_KEY_MATERIAL}"
THIRD_SECRET = "not-a-configured-secret-1234567890"

CANARIES: tuple[str, ...] = (
    CANARY_ZT_WEBHOOK_NEW,
    CANARY_ZT_WEBHOOK_OLD,
    CANARY_ZT_API_SECRET,
    CANARY_ITRX_SECRET,
    CANARY_ITRX_PREVIOUS,
    CANARY_ITRX_API_KEY,
    CANARY_TOKEN,
    _TOKEN_KEY_MATERIAL,
)

T0 = 1_760_000_000.0
TRON_ADDRESS = "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"
ZT_PARAMS: dict[str, Any] = {
    "fromCcy": "btc",
    "toCcy": "usdt_trc20",
    "direction": "from",
    "amount": "0.01",
    "toAddress": "TXyzExampleRecipientAddress0001",
    "refundAddress": "bc1qexamplerefundaddress0000001",
}
ITRX_PARAMS: dict[str, Any] = {"energy_amount": 65_000, "period": "1H", "receive_address": TRON_ADDRESS}


class Clock:
    """A settable clock shared by the receiver and the pipeline."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Seen:
    """Everything the tests received from the code under test, for the canary guard."""

    bodies: list[bytes] = []  # noqa: RUF012 - deliberately process-wide
    worlds: list[World] = []  # noqa: RUF012


# --- itrx stub ---------------------------------------------------------------------------------------


@dataclass
class StubRequest:
    path: str
    serial: str | None
    api_key: str | None


class ItrxStub:
    """``GET /api/v1/frontend/order/query?serial=`` on 127.0.0.1, answering from ``orders``.

    ``fail[serial] = (http_status, body)`` scripts a failure for one serial; an unknown serial gets
    itrx's own ``errno 404`` answer.
    """

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, tuple[int, bytes]] = {}
        self.requests: list[StubRequest] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                serial = (parse_qs(parts.query).get("serial") or [None])[0]
                with stub._lock:
                    stub.requests.append(StubRequest(parts.path, serial, self.headers.get("API-KEY")))
                    failure = stub.fail.get(serial or "")
                    answer = stub.orders.get(serial or "")
                if parts.path != "/api/v1/frontend/order/query":
                    status, body = 404, b'{"detail":"Not found."}'
                elif failure is not None:
                    status, body = failure
                elif answer is None:
                    status, body = 200, b'{"errno":404,"message":"Order not found"}'
                else:
                    status, body = 200, json.dumps({"errno": 0, **answer}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def set_order(self, serial: str, status: int, **extra: Any) -> dict[str, Any]:
        answer = itrx_query_answer(serial, status, **extra)
        with self._lock:
            self.orders[serial] = answer
        return answer

    def queries_for(self, serial: str) -> list[StubRequest]:
        with self._lock:
            return [r for r in self.requests if r.serial == serial]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def itrx_query_answer(serial: str, status: int, **extra: Any) -> dict[str, Any]:
    """The order-query object of itrx spec §5.2 (without errno)."""
    return {
        "receive_address": TRON_ADDRESS,
        "order_no": serial,
        "energy_amount": 65_000,
        "pay_amount": 65_000.0,
        "amount": 6_500_000,
        "details": [],
        "create_time": "2024-03-01T16:00:01.004512+08:00",
        "api_name": "webhook-tests",
        "period": 0,
        "status": status,
        "refund_amount": 0,
        **extra,
    }


# --- building pushes -----------------------------------------------------------------------------------


def zt_dto(order_id: str, status: str, updated_at: float, **extra: Any) -> dict[str, Any]:
    """A 0trace order DTO (spec §9), carrying a (canary) token a webhook should never contain anyway."""
    dto = zerotrace_order_dto(
        order_id, status, registered=int(T0), updated=int(updated_at), left=1200, token=CANARY_TOKEN
    )
    dto.update(extra)
    return dto


def zt_body(dto: Any, event: str = "order.status_changed", ts_ms: int | None = None) -> bytes:
    body = {"event": event, "order": dto, "ts": int(T0 * 1000) if ts_ms is None else ts_ms}
    return json.dumps(body, separators=(",", ":")).encode()


def zt_headers(
    raw: bytes, secret: str, timestamp: float | str, *, sign: str | None = None, event: str | None = None
) -> dict[str, list[str]]:
    ts = timestamp if isinstance(timestamp, str) else str(int(timestamp))
    return {
        "x-partner-webhook-sign": [sign if sign is not None else sign_body(raw, secret)],
        "x-partner-webhook-timestamp": [ts],
        "x-partner-webhook-event": [event or "order.status_changed"],
        "content-type": ["application/json"],
    }


def itrx_callback_payload(
    serial: str | None, out_trade_no: str | None, status: int, **extra: Any
) -> dict[str, Any]:
    """What the sandbox sends: the order-query object without errno, plus out_trade_no and serial."""
    payload = itrx_query_answer(serial or "", status, **extra)
    if serial is None:
        del payload["order_no"]
    else:
        payload["serial"] = serial
    if out_trade_no is not None:
        payload["out_trade_no"] = out_trade_no
    return payload


def itrx_signed(
    payload: Any, secret: str, timestamp: int | str, *, form: str = "compact"
) -> tuple[bytes, dict[str, list[str]]]:
    """Body bytes and headers of an itrx callback.

    ``compact``: the sandbox/itrx way, compact sorted JSON sent and signed as is. ``python_default``: the
    same compact body on the wire, signed over ``json.dumps(body, sort_keys=True)`` (docs' Python sample,
    V7a). ``python_default_raw``: the spaced form both sent and signed.
    """
    ts = str(timestamp)
    compact = canonical_json(payload)
    spaced = json.dumps(payload, sort_keys=True).encode()
    if form == "compact":
        raw, signed = compact, compact
    elif form == "python_default":
        raw, signed = compact, spaced
    elif form == "python_default_raw":
        raw, signed = spaced, spaced
    else:
        raise ValueError(form)
    return raw, itrx_headers(ts, itrx_sign(secret, ts, signed))


def itrx_headers(timestamp: str, signature: str) -> dict[str, list[str]]:
    return {"timestamp": [timestamp], "signature": [signature], "content-type": ["application/json"]}


# --- the world -------------------------------------------------------------------------------------------


@dataclass
class Seeded:
    command_id: str
    order_id: str | None
    partner_ref: str


@dataclass
class World:
    settings: Settings
    ledger: Ledger
    pipeline: OrderPipeline
    receiver: PushReceiver
    clock: Clock
    stub: ItrxStub
    db_path: Path
    http: PartnerHttp
    sealer: TokenSealer
    _n: int = 0
    exceptions: list[BaseException] = field(default_factory=list)

    # --- seeding ---------------------------------------------------------------------------------------
    def _command(self, provider: str) -> CreateOrderCommand:
        self._n += 1
        params = ZT_PARAMS if provider == "0trace" else ITRX_PARAMS
        return CreateOrderCommand(
            command_id=f"wh-{provider}-{self._n:06d}-{uuid.uuid4().hex[:8]}",
            provider=provider,  # type: ignore[arg-type]
            params=params,
            metadata={"pipeline": "webhook-tests"},
        )

    def _begin(self, command: CreateOrderCommand) -> str:
        ref = partner_ref(self.settings.calls.idempotency_namespace, command.command_id)
        now = self.clock()
        self.ledger.claim(command, ref, now)
        attempt = self.ledger.begin_attempt(command.command_id, now, 90.0)
        assert attempt is not None
        return ref

    def seed_zerotrace(
        self, status: str = "NEW", updated_at: float = T0, order_id: str | None = None
    ) -> Seeded:
        """A created 0trace order (real sealed token), as the create actor would have left it."""
        command = self._command("0trace")
        ref = self._begin(command)
        order_id = order_id or str(uuid.uuid4())
        observed = parse_order(zt_dto(order_id, status, updated_at))
        sealed = self.sealer.seal(CANARY_TOKEN, order_id)
        now = self.clock()
        events = self.ledger.record_created(
            command.command_id, observed, sealed, self.sealer.active_key_id, False, now + 45, now
        )
        assert len(events) == 1
        return Seeded(command.command_id, order_id, ref)

    def seed_itrx(self, serial: str | None = None) -> Seeded:
        """A created itrx order (status processing, provider status 'accepted', as ItrxClient.create says)."""
        command = self._command("itrx")
        ref = self._begin(command)
        serial = serial or uuid.uuid4().hex
        created = PartnerOrder(
            order_id=serial,
            provider_status="accepted",
            status=Status.PROCESSING,
            order={"serial": serial, "out_trade_no": ref},
        )
        now = self.clock()
        assert self.ledger.record_created(command.command_id, created, None, None, False, now + 30, now)
        return Seeded(command.command_id, serial, ref)

    def seed_itrx_in_doubt(self) -> Seeded:
        """An itrx create whose answer was lost: in_doubt, no serial known, only our out_trade_no."""
        command = self._command("itrx")
        ref = self._begin(command)
        error = EventError(code="timeout", reason="read timed out after sending")
        assert self.ledger.mark_in_doubt(command.command_id, error, self.clock())
        return Seeded(command.command_id, None, ref)

    def seed_itrx_submitting(self) -> Seeded:
        """An itrx create in flight: intent committed, no answer recorded yet."""
        command = self._command("itrx")
        ref = self._begin(command)
        return Seeded(command.command_id, None, ref)

    # --- pushing ---------------------------------------------------------------------------------------
    def zerotrace(self, raw: bytes, headers: Headers) -> PushResult:
        result = self.receiver.receive("0trace", raw, headers)
        Seen.bodies.append(result.body())
        return result

    def itrx(self, raw: bytes, headers: Headers) -> PushResult:
        result = self.receiver.receive("itrx", raw, headers)
        Seen.bodies.append(result.body())
        return result

    def call(self, provider: str, raw: bytes, headers: Headers) -> PushResult:
        """As the HTTP server does it: an exception out of the receiver is answered 503 ``unavailable``."""
        try:
            result = self.receiver.receive(provider, raw, headers)
        except Exception as error:
            self.exceptions.append(error)
            result = PushResult(503, "unavailable")
        Seen.bodies.append(result.body())
        return result

    # --- reading the ledger ----------------------------------------------------------------------------
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def events(self, command_id: str | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows as event bodies, oldest first."""
        rows = self._query("SELECT body FROM outbox ORDER BY created_at, rowid")
        out = [json.loads(bytes(row[0])) for row in rows]
        return [
            e
            for e in out
            if (command_id is None or e["command_id"] == command_id)
            and (event_type is None or e["type"] == event_type)
        ]

    def outbox_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM outbox")[0][0])

    def push_keys(self) -> set[str]:
        return {row[0] for row in self._query("SELECT dedupe_key FROM pushes")}

    def close(self) -> None:
        self.ledger.close()
        self.http.close()
        self.stub.close()


def make_settings(db_path: Path, stub_url: str, **overrides: Any) -> Settings:
    """The world's settings; ``zerotrace_<name>`` and ``itrx_<name>`` overrides go to that partner's group."""
    zerotrace: dict[str, Any] = {
        "base_url": stub_url,
        "api_key": "webhook-tests-0trace-key",
        "api_secret": SecretStr(CANARY_ZT_API_SECRET),
        "webhook_secrets": [SecretStr(CANARY_ZT_WEBHOOK_NEW), SecretStr(CANARY_ZT_WEBHOOK_OLD)],
    }
    itrx: dict[str, Any] = {
        "base_url": stub_url,
        "api_key": CANARY_ITRX_API_KEY,
        "api_secret": SecretStr(CANARY_ITRX_SECRET),
        "previous_api_secrets": [SecretStr(CANARY_ITRX_PREVIOUS)],
        "check_balance": False,
    }
    values: dict[str, Any] = {
        "ledger_url": SecretStr(f"sqlite:///{db_path}"),
        "token_keys": [SecretStr(CANARY_TOKEN_KEY)],
        "http_connect_timeout": 2.0,
        "http_read_timeout": 5.0,
    }
    for name, value in overrides.items():
        if name.startswith("zerotrace_"):
            zerotrace[name.removeprefix("zerotrace_")] = value
        elif name.startswith("itrx_"):
            itrx[name.removeprefix("itrx_")] = value
        else:
            values[name] = value
    return settings_of(partners={"0trace": zerotrace, "itrx": itrx}, **values)


def build_world(directory: Path, clock: Clock | None = None, **overrides: Any) -> World:
    directory.mkdir(parents=True, exist_ok=True)
    db_path = directory / f"ledger-{uuid.uuid4().hex[:8]}.db"
    stub = ItrxStub()
    clock = clock or Clock()
    settings = make_settings(db_path, stub.url, **overrides)
    ledger = open_ledger(settings.ledger.ledger_url.get_secret_value())
    ledger.migrate()
    http = PartnerHttp(connect_timeout=2.0, read_timeout=5.0, pool_size=4)
    sealer = TokenSealer.from_settings(settings.tokens.token_keys)
    pipeline = OrderPipeline(settings, ledger, registry.connect(settings, http=http), sealer, clock=clock)
    receiver = PushReceiver(settings, ledger, pipeline, clock=clock)
    world = World(settings, ledger, pipeline, receiver, clock, stub, db_path, http, sealer)
    Seen.worlds.append(world)
    return world


# --- HTTP ---------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class AppServer:
    """``build_app(receiver)`` on a real aiohttp AppRunner, bound to 127.0.0.1 on an ephemeral port."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="aiohttp", daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: list[tuple[str, str]] | None = None
    ) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers or []:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            answer = Answer(response.status, response.getheader("Content-Type"), response.read())
        finally:
            conn.close()
        Seen.bodies.append(answer.body)
        return answer

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)
        self.loop.close()


def zt_http_headers(
    raw: bytes, secret: str = CANARY_ZT_WEBHOOK_NEW, now: float = T0
) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("X-Partner-Webhook-Event", "order.status_changed"),
        ("X-Partner-Webhook-Timestamp", str(int(now))),
        ("X-Partner-Webhook-Sign", sign_body(raw, secret)),
    ]


@dataclass
class Leak:
    where: str
    canary: str


def find_leaks(texts: Mapping[str, bytes | str], canaries: Sequence[str] = CANARIES) -> list[Leak]:
    leaks = []
    for where, text in texts.items():
        blob = text.encode("utf-8", "replace") if isinstance(text, str) else text
        for canary in canaries:
            if canary.encode() in blob:
                leaks.append(Leak(where, canary[:12] + "..."))
    return leaks


def ledger_files(world: World) -> Iterator[tuple[str, bytes]]:
    for suffix in ("", "-wal"):
        path = Path(f"{world.db_path}{suffix}")
        if path.exists():
            yield path.name, path.read_bytes()
