"""Summarise py-spy collapsed stacks (``--format raw``) of the worker processes: where the CPU goes.

Each sample is attributed to one bucket by its deepest (leaf) Python frame, because C calls (sqlite3,
json, hmac, AES-GCM) are charged to the Python line that made them:

    .venv/bin/python -m bench.profile_summary bench/results/pyspy-<run>.txt
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")

_TRANSPORT = ("worker/transport/_client.py", "worker/transport/_pool.py", "worker/transport/_limits.py")
"""The transport's own modules (``worker/transport/_helpers.py`` holds the partner clients' helpers)."""

_LEDGER_PARTS = ("SqlLedger.", "Orders.", "Outbox.", "Rejections.", "Pushes.", "RateBudget.")
"""The classes whose methods make up ``SqlLedger`` (worker/ledger/sql.py): a frame names the part."""

# (bucket, predicate on (function, file)) in priority order, applied to the leaf frame.
BUCKETS: list[tuple[str, Any]] = [
    (
        "ledger: DB engine (sqlite3/psycopg calls)",
        lambda fn, f: (
            (f.endswith("worker/ledger/engine.py") and fn.startswith("Session."))
            or f.endswith("worker/ledger/sqlite.py")
            or "psycopg" in f
        ),
    ),
    (
        "HTTP client (PartnerHttp, urllib3, socket)",
        lambda fn, f: (
            any(
                p in f
                for p in ("urllib3/", "http/client.py", "socket.py", "selectors.py", "ssl.py", "email/")
            )
            or f.endswith(_TRANSPORT)
        ),
    ),
    ("broker (dramatiq, pika)", lambda fn, f: "dramatiq/" in f or "pika/" in f),
    ("metrics (prometheus_client)", lambda fn, f: "prometheus_client/" in f),
    ("pydantic (validation, event JSON)", lambda fn, f: "pydantic" in f),
    ("json (stdlib)", lambda fn, f: f.endswith(("json/encoder.py", "json/decoder.py", "json/__init__.py"))),
    ("sealing (AES-GCM)", lambda fn, f: f.endswith("worker/sealing.py") or "cryptography/" in f),
    (
        "signing (HMAC, nonce)",
        lambda fn, f: f.endswith("worker/signing.py") or f.endswith(("hmac.py", "secrets.py")),
    ),
    ("logging", lambda fn, f: "logging/" in f),
    ("order-worker code (other)", lambda fn, f: "worker/" in f and "site-packages" not in f),
    ("threading / stdlib other", lambda fn, f: True),
]


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames = []
        for raw in head.split(";"):
            match = _FRAME.match(raw.strip())
            if match:
                frames.append((match["func"], match["file"]))
        stacks.append((frames, int(count)))
    return stacks


def summarise(path: Path, top: int = 25) -> dict[str, Any]:
    stacks = parse(path)
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    in_actor = 0
    total = 0
    for frames, count in stacks:
        total += count
        if not frames:
            continue
        fn, f = frames[-1]
        for name, test in BUCKETS:
            if test(fn, f):
                buckets[name] += count
                break
        leaves[f"{fn} ({f.split('site-packages/')[-1]})"] += count
        names = [fr[0] for fr in frames]
        if "create_order" in names or "poll_order" in names:
            in_actor += count
            stage = next(
                (
                    n
                    for n in reversed(names)
                    if n.startswith(("OrderPipeline.", *_LEDGER_PARTS, "ZeroTraceClient.", "TokenSealer."))
                ),
                "actor (outside the pipeline)",
            )
            stages[stage] += count
    return {
        "samples": total,
        "share_in_actors": round(in_actor / max(total, 1), 3),
        "buckets": {k: round(v / max(total, 1), 3) for k, v in buckets.most_common()},
        "deepest_pipeline_frame": {k: round(v / max(in_actor, 1), 3) for k, v in stages.most_common(top)},
        "top_leaves": {k: round(v / max(total, 1), 3) for k, v in leaves.most_common(top)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(json.dumps(summarise(args.path, args.top), indent=2))


if __name__ == "__main__":
    main()
