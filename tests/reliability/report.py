"""Turn the reliability verdicts (JSON lines) into a short Markdown table.

    python tests/reliability/report.py [REPORT.jsonl] [--all]

Default input: ``$ORDER_WORKER_RELIABILITY_REPORT`` or ``.run/reliability.jsonl``. Without ``--all`` only
the latest verdict of each scenario (and parameter set) is shown. A criterion that fails because of a
known, reported defect shows as ``FAIL (known)`` with the defect in a footnote.
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
    failed = record.get("failed") or []
    known = record.get("known_issues") or {}
    if not failed:
        return "PASS"
    if all(name in known for name in failed):
        return "FAIL (known)"
    return "FAIL"


def render(records: list[dict[str, Any]], latest_only: bool = True) -> str:
    if latest_only:
        latest: dict[str, dict[str, Any]] = {}
        for record in records:
            latest[label(record)] = record
        records = list(latest.values())
    lines = [
        "| scenario | result | seconds | seed | size | key counts | failed criteria |",
        "|---|---|---:|---:|---|---|---|",
    ]
    notes: dict[str, str] = {}
    for record in records:
        counts = ", ".join(f"{k}={record[k]}" for k in HEADLINE if k in record)
        failed = record.get("failed") or []
        known = record.get("known_issues") or {}
        marks = []
        for name in failed:
            if name in known:
                note = notes.setdefault(known[name], f"[{len(notes) + 1}]")
                marks.append(f"{name} {note}")
            else:
                marks.append(name)
        if record.get("error"):
            marks.append(str(record["error"]).splitlines()[0][:80])
        lines.append(
            f"| {label(record)} | {status(record)} | {record.get('seconds', '')} | {record.get('seed', '')} "
            f"| {record.get('size', '')} | {counts} | {'; '.join(marks)} |"
        )
    total = sum(float(r.get("seconds") or 0) for r in records)
    lines.append("")
    lines.append(
        f"{len(records)} verdicts; {total / 60:.1f} min summed (side-by-side scenarios count twice)."
    )
    if notes:
        lines.append("")
        for text, mark in notes.items():
            lines.append(f"{mark} known issue: {text}")
    return "\n".join(lines)


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
