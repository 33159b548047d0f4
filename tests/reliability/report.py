"""Turn the reliability verdicts (JSON lines) into a short Markdown table.

    python tests/reliability/report.py [REPORT.jsonl] [--all]

Default input: ``$ORDER_WORKER_RELIABILITY_REPORT`` or ``.run/reliability.jsonl``. Without ``--all`` only
the latest verdict of each scenario (and parameter set) is shown. Besides the counts every scenario shares,
each row shows the figures its own pass criteria are about (``FIGURES``), so the table can be read without
the JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HEADLINE = (
    "commands",
    "duplicate_partner_orders",
    "events_lost",
    "missing",
    "unsettled",
    "canary_leaks",
    "tokens_lost_silently",
)
FIGURES = (
    "crash_points",
    "worker_restarts",
    "in_doubt_without_cause",
    "broker_kill9",
    "broker_stop_start",
    "longest_publish_pause_s",
    "longest_event_pause_s",
    "resets_that_cut_a_live_connection",
    "mean_create_attempts",
    "min_gap_between_attempts_s",
    "second_minute_rate_per_s",
    "rate_bound_per_s",
    "settled_after_recovery_s",
    "max_weight_in_any_window",
    "budget_weight",
    "first_call_after_injected_429_s",
    "poison_deliveries",
    "delivery_limit",
    "in_flight_at_sigterm",
    "redelivered_after_ack",
    "worker_exit_code",
    "token_plaintexts_in_ledger",
    "wrong_key_worker_alive",
    "worst_rss_growth",
    "worst_fd_growth",
    "worst_thread_growth",
    "examples",
    "completed",
    "polls",
    "pushes_answered",
    "held_left",
    "idle_closes_by_endpoint",
)


def load(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            print(f"{path}:{number}: not JSON, skipped", file=sys.stderr)
    return records


def label(record: dict[str, Any]) -> str:
    params = record.get("params") or {}
    extra = ", ".join(f"{v}" for v in params.values())
    return f"{record.get('scenario', '?')}" + (f" [{extra}]" if extra else "")


def status(record: dict[str, Any]) -> str:
    if record.get("error"):
        return "ABORTED"
    return "FAIL" if record.get("failed") else "PASS"


def render(records: list[dict[str, Any]], latest_only: bool = True) -> str:
    if latest_only:
        latest: dict[str, dict[str, Any]] = {}
        for record in records:
            latest[label(record)] = record
        records = list(latest.values())
    lines = [
        "| scenario | result | seconds | seed | size | counts | scenario figures | failed criteria |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    for record in records:
        counts = ", ".join(f"{k}={record[k]}" for k in HEADLINE if k in record)
        figures = ", ".join(f"{k}={_compact(record[k])}" for k in FIGURES if k in record)
        problems = list(record.get("failed") or [])
        if record.get("error"):
            problems.append(str(record["error"]).splitlines()[0][:80])
        lines.append(
            f"| {label(record)} | {status(record)} | {record.get('seconds', '')} | {record.get('seed', '')} "
            f"| {record.get('size', '')} | {counts} | {figures} | {'; '.join(problems)} |"
        )
    total = sum(float(r.get("seconds") or 0) for r in records)
    lines.append("")
    lines.append(
        f"{len(records)} verdicts; {total / 60:.1f} min summed (side-by-side scenarios count twice)."
    )
    return "\n".join(lines)


def _compact(value: Any) -> str:
    text = (
        json.dumps(value, separators=(",", ":"), default=str)
        if isinstance(value, (dict, list))
        else str(value)
    )
    return text.replace("|", "/")


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    default = os.environ.get("ORDER_WORKER_RELIABILITY_REPORT") or str(
        Path(__file__).resolve().parents[2] / ".run" / "reliability.jsonl"
    )
    path = Path(args[0] if args else default)
    if not path.exists():
        print(f"no report at {path}", file=sys.stderr)
        return 1
    print(render(load(path), latest_only="--all" not in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
