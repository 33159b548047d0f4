"""Throughput of the partner sandbox: signed ``POST /api/v1/order`` vs a trivial endpoint, same run.

Starts ``python -m order_worker_sandbox`` as a subprocess on 127.0.0.1 (ephemeral port, rate limit raised),
creates one order, then drives it with several client *processes*, each holding several keep-alive raw
sockets. Requests are pre-built bytes: the body (and so X-API-SIGN) is fixed, only the nonce changes per
request, which keeps the client cheap enough not to be the bottleneck on a 2-core machine. Every
response is parsed (status line + Content-Length) and non-200 answers are counted as errors.

    .venv/bin/python -m bench.sandbox_throughput [--seconds 5] [--procs 3] [--conns 8] [--uvloop]

Prints a table and one JSON line. Bounded: each phase runs ``--seconds`` and all processes exit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from order_worker_sandbox.config import SANDBOX_ZEROTRACE_API_KEY, SANDBOX_ZEROTRACE_API_SECRET
from order_worker_sandbox.signing import zerotrace_sign

from worker.processes import sandbox_argv

REPO = Path(__file__).resolve().parent.parent

CREATE_BODY = (
    b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01",'
    b'"toAddress":"TXyzExampleRecipientAddress0001","refundAddress":"bc1qexamplerefundaddress0000001"}'
)


def listening_sandbox(uvloop: bool) -> tuple[subprocess.Popen[str], str, int]:
    cmd = sandbox_argv(0, "--quiet", "--rate-limit-weight", "1000000000", "--scenario", "manual")
    if uvloop:
        cmd.append("--uvloop")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    url = line.rsplit(" ", 1)[1].strip()
    host, port = url.removeprefix("http://").split(":")
    return proc, host, int(port)


def _request(host: str, port: int, raw: bytes) -> tuple[int, bytes]:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(raw)
        return _read_response(s, bytearray())


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """Read exactly one HTTP/1.1 response (Content-Length framed) from ``sock``; leftovers stay in buf."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            while len(buf) < total:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed mid-body")
                buf += chunk
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            return int(head[9:12]), body
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


def signed_post(path: str, body: bytes, nonce: str, host: str, port: int, extra: str = "") -> bytes:
    sign = zerotrace_sign(body, SANDBOX_ZEROTRACE_API_SECRET)
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"X-API-KEY: {SANDBOX_ZEROTRACE_API_KEY}\r\nX-API-SIGN: {sign}\r\n"
        f"X-API-NONCE: {nonce}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def create_order(host: str, port: int) -> tuple[str, str]:
    status, body = _request(
        host, port, signed_post("/api/v1/create", CREATE_BODY, os.urandom(16).hex(), host, port)
    )
    data = json.loads(body)
    if status != 200 or data["code"] != 0:
        raise RuntimeError(f"create failed: {status} {body!r}")
    return data["data"]["id"], data["data"]["token"]


def client(
    idx: int,
    host: str,
    port: int,
    phase: str,
    order: tuple[str, str],
    conns: int,
    seconds: float,
    out: Any,
    go: Any,
) -> None:
    body = json.dumps({"id": order[0], "token": order[1]}, separators=(",", ":")).encode()
    sign = zerotrace_sign(body, SANDBOX_ZEROTRACE_API_SECRET)
    if phase == "order":
        prefix = (
            f"POST /api/v1/order HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"X-API-KEY: {SANDBOX_ZEROTRACE_API_KEY}\r\nX-API-SIGN: {sign}\r\nX-API-NONCE: "
        ).encode()
        suffix = f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    else:
        prefix = f"GET /_sandbox/ping HTTP/1.1\r\nHost: {host}:{port}\r\nX-Pad: ".encode()
        suffix = b"\r\n\r\n"
    socks = [socket.create_connection((host, port), timeout=10) for _ in range(conns)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bufs = [bytearray() for _ in socks]
    tag = f"{phase[0]}{idx:03d}{os.urandom(4).hex()}"  # unique per process and per run
    counter = 0
    ok = errors = 0
    go.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s in socks:
            counter += 1
            s.sendall(prefix + f"{tag}{counter:020d}".encode() + suffix)
        for s, buf in zip(socks, bufs, strict=True):
            status, _ = _read_response(s, buf)
            if status == 200:
                ok += 1
            else:
                errors += 1
    for s in socks:
        s.close()
    out.put((ok, errors))


def run_phase(
    host: str, port: int, phase: str, order: tuple[str, str], procs: int, conns: int, seconds: float
) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    go = ctx.Event()
    workers = [
        ctx.Process(target=client, args=(i, host, port, phase, order, conns, seconds, out, go))
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    time.sleep(0.3)  # let every client connect before the clock starts
    t0 = time.monotonic()
    go.set()
    results = [out.get(timeout=seconds + 30) for _ in workers]
    elapsed = time.monotonic() - t0
    for w in workers:
        w.join(10)
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return {
        "phase": phase,
        "ok": ok,
        "errors": errors,
        "seconds": round(elapsed, 2),
        "rps": round(ok / elapsed),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--procs", type=int, default=3, help="client processes")
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections per client process")
    ap.add_argument("--uvloop", action="store_true", help="run the sandbox on uvloop (if installed)")
    args = ap.parse_args()
    server, host, port = listening_sandbox(args.uvloop)
    try:
        order = create_order(host, port)
        # Warm-up (imports, caches, TCP), not measured.
        run_phase(host, port, "order", order, 1, 2, 0.5)
        rows = [
            run_phase(host, port, "ping", order, args.procs, args.conns, args.seconds),
            run_phase(host, port, "order", order, args.procs, args.conns, args.seconds),
        ]
        _, stats_body = _request(host, port, f"GET /_sandbox/stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        stats = json.loads(stats_body)
    finally:
        server.terminate()
        server.wait(10)
    print(f"{'endpoint':<34}{'requests':>10}{'errors':>8}{'seconds':>9}{'req/s':>9}")
    labels = {"ping": "GET /_sandbox/ping (trivial)", "order": "POST /api/v1/order (signed)"}
    for r in rows:
        print(f"{labels[r['phase']]:<34}{r['ok']:>10}{r['errors']:>8}{r['seconds']:>9}{r['rps']:>9}")
    order_row = rows[1]
    summary = {
        "bench": "sandbox_throughput",
        "cpus": os.cpu_count(),
        "procs": args.procs,
        "conns_per_proc": args.conns,
        "uvloop": args.uvloop,
        "ping_rps": rows[0]["rps"],
        "order_rps": order_row["rps"],
        "order_errors": order_row["errors"],
        "server_counted_order_200": stats["responses"].get("0trace.order", {}).get("200", 0),
        "signature_failures": stats["signature_failures"]["0trace"],
        "target_rps": 3000,
        "meets_target": order_row["rps"] >= 3000 and order_row["errors"] == 0,
    }
    print(json.dumps(summary))
    return 0 if summary["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
