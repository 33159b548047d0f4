"""The HTTP floor: a bare loop of signed 0trace calls with order-worker's HTTP client; no broker, no ledger.

PROCESSES x THREADS threads; each process holds one :class:`worker.transport.PartnerHttp` (the pooled
keep-alive urllib3 client the workers use); each thread repeats: sign and POST ``/api/v1/create`` with an
Idempotency-Key, parse the answer, sign and POST ``/api/v1/order`` with the id and token, parse the answer.
Calls per second over a fixed measured interval (after a warm-up) is the most any pipeline built on this
client could do on this machine with this concurrency.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time
from typing import Any

from worker.partners.signing import new_nonce
from worker.partners.zerotrace.settings import DEVELOPMENT_API_KEY as SANDBOX_ZEROTRACE_API_KEY
from worker.partners.zerotrace.settings import DEVELOPMENT_API_SECRET as SANDBOX_ZEROTRACE_API_SECRET
from worker.partners.zerotrace.signing import sign_body
from worker.transport import PartnerHttp


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _worker(url: str, threads: int, warmup: float, seconds: float, params: dict[str, Any], out: Any) -> None:
    http = PartnerHttp(pool_size=threads, proxy_from_env=False)
    secret = SANDBOX_ZEROTRACE_API_SECRET
    tag = os.urandom(6).hex()
    counts = [0] * threads
    errors = [0] * threads
    start_at = time.monotonic() + 0.2
    measure_from = start_at + warmup
    stop_at = measure_from + seconds
    cpu: dict[str, float] = {}

    def loop(index: int) -> None:
        n = 0
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while (now := time.monotonic()) < stop_at:
            n += 1
            body = _compact({"type": "float", **params})
            headers = {
                "Content-Type": "application/json",
                "X-API-KEY": SANDBOX_ZEROTRACE_API_KEY,
                "X-API-SIGN": sign_body(body, secret),
                "X-API-NONCE": new_nonce(),
                "Idempotency-Key": f"floor-{tag}-{index}-{n:09d}",
            }
            answer = http.post(f"{url}/api/v1/create", body, headers)
            data = json.loads(answer.body)
            ok = answer.status == 200 and data["code"] == 0
            if ok:
                body = _compact({"id": data["data"]["id"], "token": data["data"]["token"]})
                headers = {
                    "Content-Type": "application/json",
                    "X-API-KEY": SANDBOX_ZEROTRACE_API_KEY,
                    "X-API-SIGN": sign_body(body, secret),
                    "X-API-NONCE": new_nonce(),
                }
                answer = http.post(f"{url}/api/v1/order", body, headers)
                ok = answer.status == 200 and json.loads(answer.body)["code"] == 0
            if now >= measure_from:
                counts[index] += 2 if ok else 0
                errors[index] += 0 if ok else 1

    def mark() -> None:
        time.sleep(max(0.0, measure_from - time.monotonic()))
        cpu["start"] = time.process_time()
        time.sleep(max(0.0, stop_at - time.monotonic()))
        cpu["stop"] = time.process_time()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    marker = threading.Thread(target=mark)
    for thread in [*workers, marker]:
        thread.start()
    for thread in [*workers, marker]:
        thread.join()
    http.close()
    out.put((sum(counts), sum(errors), cpu["stop"] - cpu["start"]))


def run(url: str, processes: int, threads: int, seconds: float, params: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    warmup = 1.0
    procs = [
        ctx.Process(target=_worker, args=(url, threads, warmup, seconds, params, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join(10)
    calls = sum(r[0] for r in results)
    cpu = sum(r[2] for r in results)
    return {
        "calls": calls,
        "errors": sum(r[1] for r in results),
        "seconds": seconds,
        "rate_per_s": round(calls / seconds, 1),
        "cpu_us_per_msg": {"client": round(cpu / max(calls, 1) * 1e6, 1)},
    }
