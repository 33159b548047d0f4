"""The peer users would pick instead: plain Celery tasks making the same signed 0trace calls with requests.

Written for the benchmark, configured fairly and plainly:

* broker: the same RabbitMQ (py-amqp transport), classic durable queues (Celery's default);
* ``worker_prefetch_multiplier = 4`` (Celery's default), no result backend (``task_ignore_result``),
  no task events, no remote control (no pidbox traffic);
* ``task_acks_late`` from ``BENCH_ACKS_LATE`` (the run states which; ``1`` acks after the task like
  Dramatiq does, ``0`` is Celery's default and acks on receipt);
* concurrency: ``-P threads -c THREADS`` in each of PROCESSES worker processes, the same processes x
  threads as the Dramatiq runs; one ``requests.Session`` (keep-alive pool) per thread.

``peer.create`` signs and POSTs ``/api/v1/create`` with an Idempotency-Key, parses the answer and enqueues
``peer.poll`` with the order id and token (what a plain implementation does: no ledger, token in the
message). ``peer.poll`` signs and POSTs ``/api/v1/order`` and parses the answer. ``peer.noop`` does nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from typing import Any

import requests
from celery import Celery

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SANDBOX = os.environ.get("BENCH_SANDBOX_URL", "http://127.0.0.1:8090")
POLL_QUEUE = os.environ.get("BENCH_POLL_QUEUE", "peer.poll")
API_KEY = os.environ.get("BENCH_API_KEY", "sandbox-0trace-key")
API_SECRET = os.environ.get("BENCH_API_SECRET", "sandbox-0trace-api-secret-0123456789abcdef").encode()

app = Celery("bench_peer", broker=BROKER_URL)
app.conf.update(
    task_acks_late=os.environ.get("BENCH_ACKS_LATE", "1") == "1",
    worker_prefetch_multiplier=4,
    task_ignore_result=True,
    worker_send_task_events=False,
    worker_enable_remote_control=False,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_create_missing_queues=True,
)

_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def _signed_post(path: str, payload: dict[str, Any], extra: dict[str, str] | None = None) -> Any:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-API-KEY": API_KEY,
        "X-API-SIGN": hmac.new(API_SECRET, body, hashlib.sha256).hexdigest(),
        "X-API-NONCE": secrets.token_hex(16),
        **(extra or {}),
    }
    response = _session().post(f"{SANDBOX}{path}", data=body, headers=headers, timeout=(3, 10))
    answer = response.json()
    if response.status_code != 200 or answer.get("code") != 0:
        raise RuntimeError(f"{path}: HTTP {response.status_code} code {answer.get('code')}")
    return answer["data"]


@app.task(name="peer.create")
def create(command_id: str, params: dict[str, Any]) -> None:
    data = _signed_post(
        "/api/v1/create", {"type": "float", **params}, {"Idempotency-Key": f"peer-{command_id}"}
    )
    poll.apply_async((data["id"], data["token"]), queue=POLL_QUEUE)


@app.task(name="peer.poll")
def poll(order_id: str, token: str) -> str:
    data = _signed_post("/api/v1/order", {"id": order_id, "token": token})
    return str(data["status"])


@app.task(name="peer.noop")
def noop(*args: Any, **kwargs: Any) -> None:
    """Nothing: Celery's own cost per message."""
