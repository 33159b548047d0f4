"""The main table as a PNG: throughput per contender (left) and where each command's CPU goes (right)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {
    "workers": "#4C72B0",
    "relay": "#8172B2",
    "rabbitmq": "#DD8452",
    "sandbox": "#55A868",
    "client": "#4C72B0",
}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.get("rows", [])
    if not rows:
        return
    labels = [f"{r['name']}  {r['processes']}x{r['threads']}" for r in rows]
    rates = [r["rate_per_s"] for r in rows]
    colours = []
    for r in rows:
        key = r["key"]
        colours.append(
            "#999999"
            if key.startswith("noop")
            else "#DD8452"
            if key.startswith("celery")
            else "#55A868"
            if key.startswith("http_floor")
            else "#C44E52"
            if "lat" in key
            else "#4C72B0"
        )
    height = 0.45 * len(rows) + 1.8
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(16, height), gridspec_kw={"width_ratios": [3, 2]}, sharey=True
    )
    y = list(range(len(rows)))[::-1]
    left.barh(y, rates, color=colours)
    for yi, rate, r in zip(y, rates, rows, strict=True):
        ceiling = next(
            (
                c
                for c in rows
                if c["key"] == "noop_dramatiq_stock"
                and c["processes"] == r["processes"]
                and c["threads"] == r["threads"]
            ),
            None,
        )
        tag = f"{rate:,.0f}/s" + (
            f"  ({rate / ceiling['rate_per_s']:.2f}x no-op)" if ceiling and r is not ceiling else ""
        )
        left.text(rate, yi, "  " + tag, va="center", fontsize=8)
    left.set_yticks(y, labels, fontsize=8)
    left.set_xlabel("commands per second (create+poll rows: 1:1 mix)")
    left.set_xlim(0, max(rates) * 1.35)
    left.set_title("Throughput, same broker and sandbox, one run")
    starts = [0.0] * len(rows)
    for name in ("workers", "relay", "rabbitmq", "sandbox"):
        values = []
        for r in rows:
            phases = [p for p in r["phases"].values() if isinstance(p, dict) and "cpu_us_per_msg" in p]
            cpu = [
                p["cpu_us_per_msg"].get(
                    name if name in p["cpu_us_per_msg"] else "client" if name == "workers" else name, 0
                )
                or 0
                for p in phases
            ]
            values.append(sum(cpu) / len(cpu) if cpu else 0)
        right.barh(y, values, left=starts, color=COLOURS[name], label=name)
        starts = [a + b for a, b in zip(starts, values, strict=True)]
    right.set_xlabel("CPU µs per command (steady-state window)")
    right.set_title("Where the CPU goes (2 cores shared by all)")
    right.legend(fontsize=8, loc="upper right")
    env = result.get("environment", {})
    fig.suptitle(
        f"order-worker benchmark - {result.get('command')} - {env.get('cpus')} CPUs, "
        f"git {env.get('git', {}).get('head')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
