"""The HTTP floor and the SQLite 1 x 8 pipeline row for two revisions of the code, alternated A-B-A-B.

The baseline revision is exported with ``git archive`` to a temporary directory and run from there (its
``bench`` starts its own workers, with that directory on their path); the other side is this tree. Each
run starts its own sandbox and calls ``contenders.floor`` and ``contenders.pipeline`` as ``bench.run``
does. Usage::

    .venv/bin/python -m bench.pipeline_ab [--baseline REV] [--orders 1500] [--floor-seconds 6] [--rounds 2]

Without --baseline, the last revision with the hand-written HTTP client (see ``bench.transport_compare``).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bench.transport_compare import REPO, _last_revision_with_old_client

_DRIVER = """
import json, sys, tempfile
from pathlib import Path
from bench import contenders
logs = Path(tempfile.mkdtemp(prefix="bench-ab-"))
launch = getattr(contenders, "launch_sandbox", None) or getattr(contenders, "start_sandbox")
sandbox = launch(logs, "--rate-limit-weight", "1000000000", "--speed", "1000")
try:
    floor = contenders.floor(sandbox, 1, 8, float(sys.argv[2]))
    pipe = contenders.pipeline(sandbox, logs, "sqlite", 1, 8, int(sys.argv[1]), tmp=logs)
finally:
    sandbox.group.stop()
print(json.dumps({"floor": floor.as_dict(), "pipeline": pipe.as_dict()}, default=str))
"""


def _run(tree: Path, orders: int, floor_seconds: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(orders), str(floor_seconds)],
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _line(label: str, result: dict[str, Any]) -> str:
    floor = result["floor"]["phases"]["calls"]
    pipe = result["pipeline"]
    create, poll = pipe["phases"]["create"], pipe["phases"]["poll"]
    return (
        f"| {label} | {floor['rate_per_s']:.0f} | {floor['cpu_us_per_msg']['client']:.0f} "
        f"| {pipe['rate_per_s']:.0f} ({create['rate_per_s']:.0f} / {poll['rate_per_s']:.0f}) "
        f"| {create['cpu_us_per_msg']['workers']:.0f} / {poll['cpu_us_per_msg']['workers']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", help="git revision to compare this tree with")
    parser.add_argument("--orders", type=int, default=1500)
    parser.add_argument("--floor-seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    baseline = args.baseline or _last_revision_with_old_client()
    archive = subprocess.run(["git", "archive", baseline], cwd=REPO, check=True, capture_output=True).stdout
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as folder:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        for round_no in range(1, args.rounds + 1):
            for label, tree in (
                (f"{baseline}, run {round_no}", Path(folder)),
                (f"this tree, run {round_no}", REPO),
            ):
                lines.append(_line(label, _run(tree, args.orders, args.floor_seconds)))
    print(
        "| revision | HTTP floor calls/s | floor client CPU µs/call | pipeline commands/s (create / poll) "
        "| worker CPU µs per create / poll |"
    )
    print("|---|---:|---:|---:|---:|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
