"""JSON Schemas and the AsyncAPI document of the wire contracts, generated from the pydantic models so
they cannot drift.

``tests/test_contracts.py`` fails when a model changed and the shipped files were not regenerated
(``order-worker schemas --out worker/schemas``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from worker.messages import CreateOrderCommand, OrderEvent, PollOrderCommand, ResolveOrderCommand
from worker.partners import registry

SCHEMA_DIR = Path(__file__).parent
ASYNCAPI = "asyncapi.json"

MODELS: dict[str, type[BaseModel]] = {
    "create_order.json": CreateOrderCommand,
    "poll_order.json": PollOrderCommand,
    "resolve_order.json": ResolveOrderCommand,
    "event.json": OrderEvent,
}


def models() -> dict[str, type[BaseModel]]:
    """The contract's models, and each installed partner's create params as ``create_order.params.<id>``."""
    params = {
        f"create_order.params.{name}.json": registry.get(name).params_model for name in registry.names()
    }
    return {**MODELS, **params}


def render_schemas() -> dict[str, str]:
    rendered: dict[str, str] = {}
    for name, model in models().items():
        schema: dict[str, Any] = model.model_json_schema()
        if model is CreateOrderCommand:
            # Which partners exist is a deployment's choice; the shipped schema names the installed ones.
            schema["properties"]["provider"]["enum"] = registry.names()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        rendered[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    rendered[ASYNCAPI] = render_asyncapi()
    return rendered


def render_asyncapi() -> str:
    from worker.schemas.asyncapi import asyncapi_document

    return json.dumps(asyncapi_document(), indent=2) + "\n"


def write_schemas(target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = target / name
        path.write_text(text)
        written.append(path)
    return written
