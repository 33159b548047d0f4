"""HTTP client CPU per partner call: a client from another git revision against this tree's, back to back.

Starts the sandbox as a subprocess (its CPU is not the client's), creates one 0trace order, then each
client in turn makes N signed ``POST /api/v1/order`` calls on one thread over a keep-alive connection,
alternating clients for ROUNDS rounds so that drift on a shared machine hits both alike. The CPU figure
is the calling thread's CPU time inside ``post()`` only (request building, socket syscalls, parsing,
reading), so signing and JSON are left out; calls/s is wall-clock over the whole loop, signing included.

    .venv/bin/python -m bench.transport_compare --calls 3000 --rounds 3 [--baseline REV]

The baseline is ``worker/providers/http.py`` (the hand-written client on httptools) of REV, by default
the last revision that had it; it is written to a temporary file and imported from there, and needs
``httptools`` installed (it is no longer a dependency).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sandbox_throughput import listening_sandbox
from worker.partners.signing import new_nonce
from worker.partners.zerotrace.settings import DEVELOPMENT_API_KEY as SANDBOX_ZEROTRACE_API_KEY
from worker.partners.zerotrace.settings import DEVELOPMENT_API_SECRET as SANDBOX_ZEROTRACE_API_SECRET
from worker.partners.zerotrace.signing import sign_body
from worker.transport import PartnerHttp

REPO = Path(__file__).resolve().parent.parent
CREATE = (
    b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01",'
    b'"toAddress":"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw","refundAddress":"bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"}'
)


def _headers(body: bytes, **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-API-KEY": SANDBOX_ZEROTRACE_API_KEY,
        "X-API-SIGN": sign_body(body, SANDBOX_ZEROTRACE_API_SECRET),
        "X-API-NONCE": new_nonce(),
        **extra,
    }


def _last_revision_with_old_client() -> str:
    removed = subprocess.run(
        ["git", "rev-list", "-n", "1", "HEAD", "--", "worker/providers/http.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{removed}^"


def _baseline_class(revision: str, folder: Path) -> Any:
    source = subprocess.run(
        ["git", "show", f"{revision}:worker/providers/http.py"], cwd=REPO, check=True, capture_output=True
    ).stdout
    path = folder / "baseline_http.py"
    # Its outcome types now live in the transport; the same classes, so both clients raise the same errors.
    path.write_bytes(source.replace(b"worker.providers.base", b"worker.transport"))
    spec = importlib.util.spec_from_file_location("baseline_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_http"] = module
    spec.loader.exec_module(module)
    return module.PartnerHttp


def _run(http: Any, url: str, body: bytes, calls: int) -> tuple[float, float]:
    """(µs of thread CPU inside post() per call, calls per second)."""
    cpu = 0.0
    started = time.perf_counter()
    for _ in range(calls):
        headers = _headers(body)
        before = time.thread_time()
        answer = http.post(f"{url}/api/v1/order", body, headers)
        cpu += time.thread_time() - before
        if answer.status != 200:
            raise RuntimeError(f"sandbox answered {answer.status}")
    wall = time.perf_counter() - started
    return cpu / calls * 1e6, calls / wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="git revision holding worker/providers/http.py")
    args = parser.parse_args()
    args.baseline = args.baseline or _last_revision_with_old_client()
    proc, host, port = listening_sandbox(uvloop=False)
    url = f"http://{host}:{port}"
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "urllib3": []}
    try:
        with tempfile.TemporaryDirectory() as folder:
            clients = {
                "baseline": _baseline_class(args.baseline, Path(folder))(pool_size=1),
                "urllib3": PartnerHttp(pool_size=1, proxy_from_env=False),
            }
            created = clients["urllib3"].post(
                f"{url}/api/v1/create", CREATE, _headers(CREATE, **{"Idempotency-Key": "tc-" + new_nonce()})
            )
            data = json.loads(created.body)["data"]
            body = json.dumps({"id": data["id"], "token": data["token"]}, separators=(",", ":")).encode()
            for client in clients.values():
                _run(client, url, body, 200)  # warm-up: connection, caches
            for _ in range(args.rounds):
                for name, client in clients.items():
                    results[name].append(_run(client, url, body, args.calls))
            for client in clients.values():
                client.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(
        f"{args.rounds} rounds x {args.calls} signed POST /api/v1/order, one thread, keep-alive, "
        "sandbox subprocess"
    )
    print("| client | CPU µs/call in post() (median, range) | calls/s (median, range) |")
    print("|---|---|---|")
    for name, rows in results.items():
        cpu = [r[0] for r in rows]
        rate = [r[1] for r in rows]
        label = (
            f"{args.baseline}: providers/http.py (httptools)"
            if name == "baseline"
            else "worker.transport (urllib3)"
        )
        print(
            f"| {label} | {statistics.median(cpu):.0f} ({min(cpu):.0f}-{max(cpu):.0f}) "
            f"| {statistics.median(rate):.0f} ({min(rate):.0f}-{max(rate):.0f}) |"
        )


if __name__ == "__main__":
    main()
