"""Acme's API for the test: orders in memory, idempotent creates, statuses the test moves by hand."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AcmeServer:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_ref: dict[str, str] = {}
        self.creates = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def set_status(self, order_id: str, status: str) -> dict[str, Any]:
        with self.lock:
            self.orders[order_id]["status"] = status
            return dict(self.orders[order_id])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/orders" or self.headers.get("X-Acme-Key") != server.api_key:
                    self._reply(403, {"error": "forbidden"})
                    return
                with server.lock:
                    server.creates += 1
                    order_id = server.by_ref.get(body["ref"])
                    if order_id is None:
                        order_id = f"acme-{len(server.orders) + 1}"
                        server.by_ref[body["ref"]] = order_id
                        server.orders[order_id] = {"id": order_id, "status": "open", "amount": body["amount"]}
                    self._reply(200, server.orders[order_id])

            def do_GET(self) -> None:
                order = server.orders.get(self.path.removeprefix("/orders/"))
                if self.headers.get("X-Acme-Key") != server.api_key or order is None:
                    self._reply(404, {"error": "no such order"})
                    return
                with server.lock:
                    self._reply(200, dict(order))

        return Handler
