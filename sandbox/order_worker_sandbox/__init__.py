"""Partner sandbox: strict local simulators of the 0trace Partner API and the itrx energy API.

It is the test oracle of order-worker, so it errs on the strict side wherever the specs
(``shared/spec/0trace-partner-api.md``, ``shared/spec/itrx-energy-api.md``) leave room.

Running it
==========

* CLI: ``order-worker sandbox`` or ``python -m order_worker_sandbox [--host 127.0.0.1] [--port 8090]
  [--speed FACTOR] [--webhook-url URL] [--itrx-callback-url URL] [--set NAME=VALUE ...]``;
  ``--list-settings`` prints every setting. Settings also come from ``ORDER_WORKER_SANDBOX_<NAME>``
  (e.g. ``ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET``); credentials default to the development constants
  of ``order_worker_sandbox.config`` (the worker's settings default to the same values). ``--port 0``
  binds a free port; the first stdout line is always
  ``order-worker sandbox listening on http://HOST:PORT``.
* In-process (tests): ``with order_worker_sandbox.testing.running_sandbox(**settings) as sb:`` serves on
  ``127.0.0.1:<ephemeral>`` in a background thread; ``sb.base_url``, ``sb.control`` (a
  :class:`~order_worker_sandbox.testing.SandboxControl`), ``sb.port``. ``wait_until(fn, timeout)`` polls a
  condition with a bound. Both APIs share one origin: 0trace under ``/api/v1/...``, itrx under
  ``/api/v1/frontend/...``.

Control API (``/_sandbox/``, JSON, unauthenticated, errors ``{"error": str}`` with 400/404)
==========================================================================================

* ``GET /ping`` -> ``{"ok": true}``
* ``GET /clock`` -> ``{"now": sandbox_unix_s, "speed": f, "pending_timers": n}``;
  ``POST /clock {"speed"?: f, "advance"?: sandbox_s}`` -> same (due timers fire before the answer).
* ``POST /drive {"provider": "0trace", "id", "status", "direct"?: false, "force"?: false, "resume"?: false,
  "emergency_status"?: ["LIMIT"], "refund"?: false}`` -> ``{"provider","id","status","path":[...]}``.
  Walks intermediate statuses (one webhook each) unless ``direct``; leaving DONE/EXPIRED needs ``force``;
  driving cancels the order's automatic steps unless ``resume``.
  ``POST /drive {"provider": "itrx", "serial", "status": int, "refund_amount"?: sun, "resume"?: false}``
  -> ``{"provider","serial","status","refund_amount"}`` (41 refunds the whole amount by default).
* ``POST /faults {"endpoint": "0trace.create"|"itrx.order"|"0trace.*"|"*"|..., "kind": "latency"|
  "latency_after"|"http_500"|"http_503"|"http_429"|"error"|"reset"|"idle_close"|"lose_response", "times"?: n,
  "probability"?: p, "latency_ms"?: ms, "retry_after"?: s, "status"?: http, "body"?: json}`` -> the rule
  (``id``, ``fired``...); ``GET /faults``; ``DELETE /faults[?endpoint=]``; ``DELETE /faults/{id}``.
  Without ``times``/``probability`` a rule fires once. ``lose_response`` commits, then resets the TCP
  connection; ``reset`` resets before anything is processed; ``idle_close`` closes a kept-alive
  connection (never a new one) without reading the request. Endpoint names: ``0trace.currencies|pairs|
  price|create|order|emergency|qr|keys_rotate|codes|codes_enable``, ``itrx.order|order_query|order_price|
  index_data|summary|reclaim``.
* ``GET/POST /webhooks {"zerotrace_webhook_url", "zerotrace_webhook_schedule": [s...],
  "itrx_default_callback_url", "itrx_callback_schedule": [s...], "itrx_callback_on", "delivery_timeout"}``.
* ``GET /deliveries[?provider=0trace|itrx&ref=<id|serial>]`` -> every webhook/callback with its exact
  ``body`` and ``attempts`` (``n, at, timestamp, http_status, error, ok``) and ``state``
  (pending|delivered|gave_up|skipped).
* ``GET /orders[?provider=]`` -> ledger of every order created, oldest first: ``{"provider",
  "id"|"serial", "idempotency_key"|"out_trade_no", "status", "created_at" (real unix s), "history":
  [{"status", "at" (sandbox unix s)}], ...}``;
  ``GET /orders/{provider}/{id|serial}`` -> the DTO / query object.
* ``GET /stats`` -> ``requests`` and ``responses`` per endpoint, ``auth_failures`` by reason,
  ``signature_failures``, ``rate_limited``, ``faults_triggered``, ``orders_created``,
  ``webhooks``/``callbacks`` (queued, attempts, delivered, failed_attempts, gave_up, skipped).
* ``GET /config`` (includes ``current_credentials``, i.e. secrets after any rotation) and
  ``POST /config {name: value}`` (any setting but host/port); ``POST /assets {"code", "usd"?, "enabled"?,
  "send"?}``; ``POST /reset`` (orders, nonces, budgets, faults, deliveries, stats, secrets, settings).

Time
====

Lifecycle timers, deposit windows and delivery retry ladders run on *sandbox time* (``--speed`` and
``/clock advance``); DTO ``time.*`` fields are sandbox time. Nonce memory, the rate-limit window, the itrx
TIMESTAMP tolerance, delivery timeouts and the webhook/callback timestamp headers use the *real* clock,
because they face real clients and receivers.

Choices where the specs are silent (summary; details in each module)
===================================================================

0trace: auth headers on optional-auth endpoints force full authentication; nonces must match
``[A-Za-z0-9_-]{16,64}`` and are recorded only after a valid signature; lower-case hex signatures only;
unknown/disabled code suffix -> 3; weight is charged once authenticated (also for 4xx and idempotent
replays); Idempotency-Key scope is the partner, comparison is byte-exact body (+ code suffix), kept until
reset, failures not remembered; out-of-bounds amounts -> 1/400 on create and ``errors`` on price;
``emergency`` on a non-EMERGENCY order -> 1/400; ``codes`` duplicates/cap -> 1/400, unknown delete -> 6;
``codes/enable`` is ``POST {"code", "enabled"}``; webhooks retry on non-2xx/timeout/redirect on
``zerotrace_webhook_schedule``, re-signed per attempt with the current webhookSecret; the catalog is
served live (no 30 s cache); qrPng is a real 256x256 QR (segno).
itrx: see ``order_worker_sandbox.itrx`` (errors) and ``order_worker_sandbox.itrx_orders`` (lifecycle,
callback body assumption); callbacks succeed only on HTTP 200.
"""

from __future__ import annotations

from order_worker_sandbox.config import SandboxConfig
from order_worker_sandbox.testing import RunningSandbox, SandboxControl, running_sandbox, wait_until

__all__ = ["RunningSandbox", "SandboxConfig", "SandboxControl", "running_sandbox", "wait_until"]
