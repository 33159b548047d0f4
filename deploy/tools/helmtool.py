"""``helm template`` and ``helm lint`` without the helm binary.

The Helm CLI is not on PyPI, but Helm's own Go SDK is: ``helm-python-sdk`` ships it as a shared library
(``libhelm_c``, Helm v4) and binds it with ctypes. This module renders and lints charts with that engine,
so templates, ``fail`` messages and ``values.schema.json`` behave exactly as under ``helm install``.

    python deploy/tools/helmtool.py template helm/order-worker -f helm/order-worker/ci/full-values.yaml
    python deploy/tools/helmtool.py lint helm/order-worker -f helm/order-worker/ci/full-values.yaml

Used by deploy/check.sh and tests/deploy (``render`` below).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def _helm_sdk() -> Any:
    """The SDK's module, or None when it is not installed (the callers say how to install it). Imported by
    name so that type checking does not depend on whether the deployment-check tools are installed."""
    try:
        return importlib.import_module("helm_python")
    except ImportError:  # pragma: no cover - reported by the callers with the install hint
        return None


helm: Any = _helm_sdk()

INSTALL_HINT = (
    "run 'bash deploy/check.sh --install' (installs the pinned deployment-check tools into the venv)"
)


class ChartError(Exception):
    """The chart refused the values (schema, ``fail``) or did not render."""


def _require_helm() -> Any:
    if helm is None:
        raise RuntimeError(f"helm-python-sdk is not installed: {INSTALL_HINT}")
    return helm


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of several values files: maps merge, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(files: Iterable[str | Path] = (), sets: Iterable[str] = ()) -> dict[str, Any]:
    """Values from ``-f`` files then ``--set`` strings, in order, as the Helm CLI combines them."""
    lib = _require_helm()
    values: dict[str, Any] = {}
    for path in files:
        values = deep_merge(values, lib.values_from_yaml(Path(path).read_text()) or {})
    for item in sets:
        values = deep_merge(values, lib.parse_set_string(item))
    return values


def render(
    chart: str | Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "order-worker",
    namespace: str = "orders",
    upgrade: bool = False,
) -> dict[str, str]:
    """Render like ``helm template``: template path -> manifest text (NOTES.txt included).

    Raises ChartError with Helm's own message when the values break the schema or a template fails.
    """
    lib = _require_helm()
    with lib.Chart.load(str(chart)) as loaded:
        try:
            return dict(
                loaded.render(
                    values or {},
                    name=release,
                    namespace=namespace,
                    is_install=not upgrade,
                    is_upgrade=upgrade,
                )
            )
        except (lib.HelmValuesError, lib.HelmRenderError) as error:
            raise ChartError(str(error)) from error


def manifests_text(rendered: dict[str, str]) -> str:
    """The rendered templates as one multi-document YAML stream, like ``helm template`` prints."""
    parts = []
    for name in sorted(rendered):
        body = rendered[name].strip().removeprefix("---").strip()
        if name.endswith("NOTES.txt") or not body:
            continue
        parts.append(f"---\n# Source: {name}\n{body}\n")
    return "".join(parts)


def lint(chart: str | Path, values: dict[str, Any] | None = None) -> list[str]:
    """``helm lint --strict``: the warnings and errors, as text (empty list: clean)."""
    lib = _require_helm()
    report = lib.lint(str(chart), values or {}, strict=True)
    problems = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems.extend(str(e) for e in report.get("errors") or [])
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helmtool", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["template", "lint"])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE (repeatable)")
    parser.add_argument("--release", default="order-worker")
    parser.add_argument("--namespace", default="orders")
    parser.add_argument("--output", help="write the manifests here instead of stdout (template)")
    args = parser.parse_args(argv)
    try:
        values = load_values(args.values, args.set)
        if args.command == "lint":
            problems = lint(args.chart, values)
            for problem in problems:
                print(f"[lint] {problem}", file=sys.stderr)
            print(f"helmtool lint {args.chart} {' '.join(args.values)}: {len(problems)} problem(s)")
            return 1 if problems else 0
        text = manifests_text(render(args.chart, values, release=args.release, namespace=args.namespace))
    except (ChartError, RuntimeError) as error:
        print(f"helmtool: {error}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
