"""The AsyncAPI 3.0 document of the message contract, generated from the same models as the JSON Schemas.

It describes the service as an application on RabbitMQ: the command queues it receives on, the events
exchange it sends on (with the exchange's exact type and arguments, which a client must match when it
declares), each message's payload, AMQP properties and headers, and examples. Schemas come from the
pydantic models through one ``$ref`` space (``#/components/schemas``), so a payload in the document is the
same schema a Python client validates with. Every installed partner gets its own create message (typed
params) and its own event message (typed ``order``), a plug-in's included.

The AMQP bindings (version 0.3.0) have no field for exchange or queue arguments; they are given as the
``x-arguments`` extension of the exchange or queue object, and repeated in the channel's description.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from order_worker_client import topology
from order_worker_client.commands import (
    ENVELOPE_FIELDS,
    CreateOrderCommand,
    PollOrderCommand,
    ResolveOrderCommand,
)
from order_worker_client.events import SCHEMA_VERSION, EventType, OrderEvent
from order_worker_client.quotes import Quote, QuoteError, QuoteRequest
from order_worker_client.quoting import SENT_AT_HEADER
from pydantic import BaseModel, create_model
from pydantic.json_schema import models_json_schema

from worker.bus.topology import work_queue_arguments
from worker.partners import registry
from worker.settings import BusSettings

AMQP_BINDING = "0.3.0"
REF = "#/components/schemas/{model}"
VERSION = "0.1.0"


def _event_model(provider: str, order_model: type[BaseModel] | None) -> type[BaseModel]:
    """The event as one partner's events carry it: its provider id, and its order typed when the plug-in
    names an order model."""
    fields: dict[str, Any] = {"provider": (Literal[provider], ...)}
    if order_model is not None:
        fields["order"] = (order_model | None, None)
    title = _identifier(provider) + "OrderEvent"
    return create_model(title, __base__=OrderEvent, __doc__=OrderEvent.__doc__, **fields)


def _create_model(provider: str, params_model: type[BaseModel]) -> type[BaseModel]:
    title = _identifier(provider) + "CreateOrderCommand"
    fields: dict[str, Any] = {
        "provider": (Literal[provider], ...),
        "params": (params_model, ...),
    }
    return create_model(title, __base__=CreateOrderCommand, __doc__=CreateOrderCommand.__doc__, **fields)


def _identifier(provider: str) -> str:
    """A provider id as a component key and model title (``0trace`` -> ``0trace``, ``my.bank`` ->
    ``My_bank``)."""
    key = re.sub(r"[^A-Za-z0-9]", "_", provider)
    return key[:1].upper() + key[1:]


def _key(provider: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", provider)


def _schemas(models: list[type[BaseModel]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each model's ``$ref`` and every schema they need, in one namespace."""
    refs, top = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF, title="order-worker"
    )
    return {model.__name__: refs[(model, "validation")] for model in models}, top.get("$defs", {})


def _envelope(queue: str, actor: str, command_ref: dict[str, Any]) -> dict[str, Any]:
    """The Dramatiq message a command travels in (``order_worker_client.commands.envelope``)."""
    return {
        "type": "object",
        "description": "Dramatiq's message format; the command is `kwargs`.",
        "required": list(ENVELOPE_FIELDS),
        "properties": {
            "queue_name": {"type": "string", "const": queue, "description": "The queue it is published to."},
            "actor_name": {"type": "string", "const": actor},
            "args": {"type": "array", "maxItems": 0},
            "kwargs": command_ref,
            "options": {
                "type": "object",
                "description": "Optional: max_retries (0-20), min_backoff and max_backoff (ms, 0-900000), "
                "trace_context (W3C traceparent/tracestate). Other options are ignored.",
            },
            "message_id": {"type": "string", "description": "Unique per message (a UUID)."},
            "message_timestamp": {"type": "integer", "description": "Milliseconds since the epoch."},
        },
    }


def _command_properties(example: dict[str, Any]) -> dict[str, Any]:
    return {
        "contentType": "application/json",
        "bindings": {"amqp": {"messageType": example["actor_name"], "bindingVersion": AMQP_BINDING}},
        "examples": [{"name": "example", "payload": example}],
    }


def _example_envelope(queue: str, actor: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "queue_name": queue,
        "actor_name": actor,
        "args": [],
        "kwargs": kwargs,
        "options": {},
        "message_id": "2f1c3a9e-5b0d-4c1e-9f3a-7d2b6c8e0a41",
        "message_timestamp": 1796000000000,
    }


def _queue_channel(queue: str, summary: str, messages: list[str]) -> dict[str, Any]:
    delivery_limit = BusSettings.model_fields["delivery_limit"].default
    arguments = work_queue_arguments(queue, delivery_limit)
    return {
        "address": queue,
        "title": queue,
        "description": f"{summary} A quorum queue the service declares on start. Publish to it through the "
        "default exchange (routing key = the queue name), persistent, with `mandatory` set; a producer that "
        f"declares it too must use exactly the arguments given in the binding (`x-delivery-limit` is the "
        f"deployment's ORDER_WORKER_DELIVERY_LIMIT, {delivery_limit} by default), or declare passively.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": queue,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": "/",
                    "x-arguments": arguments,
                },
                "bindingVersion": AMQP_BINDING,
            }
        },
    }


def asyncapi_document() -> dict[str, Any]:
    partners = [registry.get(name) for name in registry.names()]
    creates = {p.name: _create_model(p.name, p.params_model) for p in partners}
    events = {p.name: _event_model(p.name, getattr(p, "order_model", None)) for p in partners}
    models: list[type[BaseModel]] = [
        *creates.values(),
        PollOrderCommand,
        ResolveOrderCommand,
        OrderEvent,
        *events.values(),
        QuoteRequest,
        Quote,
        QuoteError,
    ]
    refs, schemas = _schemas(models)
    messages: dict[str, Any] = {}
    create_messages = []
    for partner in partners:
        key = f"createOrder.{_key(partner.name)}"
        command = {
            "command_id": "shop-4711-0001",
            "provider": partner.name,
            "params": dict(partner.example_params),
        }
        example = _example_envelope(topology.CREATE_QUEUE, "create_order", command)
        messages[key] = {
            "name": key,
            "title": f"create_order ({partner.name})",
            "summary": f"Place one {partner.name} order; the command_id makes it idempotent.",
            "payload": _envelope(topology.CREATE_QUEUE, "create_order", refs[creates[partner.name].__name__]),
            **_command_properties(example),
        }
        create_messages.append(key)
    messages["pollOrder"] = {
        "name": "pollOrder",
        "title": "poll_order",
        "summary": "Ask for an order's status now; any change is published as an event.",
        "payload": _envelope(topology.POLL_QUEUE, "poll_order", refs["PollOrderCommand"]),
        **_command_properties(
            _example_envelope(topology.POLL_QUEUE, "poll_order", {"command_id": "shop-4711-0001"})
        ),
    }
    messages["resolveOrder"] = {
        "name": "resolveOrder",
        "title": "resolve_order",
        "summary": "An operator's choice on an order the partner holds for a decision.",
        "payload": _envelope(topology.ACTIONS_QUEUE, "resolve_order", refs["ResolveOrderCommand"]),
        **_command_properties(
            _example_envelope(
                topology.ACTIONS_QUEUE,
                "resolve_order",
                {"action_id": "act-4711-0001", "command_id": "shop-4711-0001", "choice": "EXCHANGE"},
            )
        ),
    }
    event_messages = []
    event_headers = {
        "type": "object",
        "description": "AMQP headers: the W3C trace context of the command, when it carried one.",
        "properties": {"traceparent": {"type": "string"}, "tracestate": {"type": "string"}},
    }
    event_properties = {
        "contentType": "application/json",
        "headers": event_headers,
        "correlationId": {
            "description": "AMQP property correlation_id: the command_id of the command the event answers.",
            "location": "$message.payload#/command_id",
        },
    }
    for partner in partners:
        key = f"orderEvent.{_key(partner.name)}"
        messages[key] = {
            "name": key,
            "title": f"order event ({partner.name})",
            "summary": f"A change of a {partner.name} order's state, with its order typed.",
            "payload": refs[events[partner.name].__name__],
            **event_properties,
            "bindings": {"amqp": {"bindingVersion": AMQP_BINDING}},
            "examples": [{"name": "created", "payload": _event_example(partner.name)}],
        }
        event_messages.append(key)
    messages["orderEvent"] = {
        "name": "orderEvent",
        "title": "order event (any partner)",
        "summary": "The event as every consumer can read it: a `rejected` event (provider may be null) or "
        "an event of a partner this document does not type.",
        "payload": refs["OrderEvent"],
        **event_properties,
        "bindings": {"amqp": {"bindingVersion": AMQP_BINDING}},
    }
    event_messages.append("orderEvent")
    exchange_arguments = topology.events_exchange_arguments(topology.EVENTS_EXCHANGE)
    channels = {
        "createOrder": _queue_channel(topology.CREATE_QUEUE, "Commands that place orders.", create_messages),
        "pollOrder": _queue_channel(
            topology.POLL_QUEUE, "Commands that ask for a status now.", ["pollOrder"]
        ),
        "resolveOrder": _queue_channel(
            topology.ACTIONS_QUEUE, "Operators' choices on held orders.", ["resolveOrder"]
        ),
        "orderEvents": {
            "address": "order.{provider}.{type}",
            "title": topology.EVENTS_EXCHANGE,
            "description": (
                f"Events on the `{topology.EVENTS_EXCHANGE}` exchange: "
                f"type `{topology.EVENTS_EXCHANGE_TYPE}`, durable, arguments `{exchange_arguments}`. "
                "Bind your own queue to it with a routing key "
                "such as `order.#` or `order.itrx.*`. Declare the exchange passively (it exists once the "
                "service ran), or with exactly this type and these arguments: any difference is refused "
                "with PRECONDITION_FAILED. Each message's AMQP properties: message_id = event_id (dedupe "
                "on it; delivery is at least once), type = the event type, correlation_id = the "
                "command_id, content_type application/json, persistent. Events are additive within a "
                f"schema_version (now {SCHEMA_VERSION}): ignore fields you do not know."
            ),
            "parameters": {
                "provider": {"description": "The partner's provider id.", "enum": [p.name for p in partners]},
                "type": {"description": "The event type.", "enum": [t.value for t in EventType]},
            },
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in event_messages},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": topology.EVENTS_EXCHANGE,
                        "type": topology.EVENTS_EXCHANGE_TYPE,
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                        "x-arguments": exchange_arguments,
                    },
                    "bindingVersion": AMQP_BINDING,
                }
            },
        },
    }
    channels.update(_quote_channels())
    messages.update(_quote_messages(refs))
    operations = {
        "receiveCreateOrder": _operation(
            "receive", "createOrder", "The service places the order.", create_messages
        ),
        "receivePollOrder": _operation("receive", "pollOrder", "The service polls the order.", ["pollOrder"]),
        "receiveResolveOrder": _operation(
            "receive", "resolveOrder", "The service hands the choice to the partner.", ["resolveOrder"]
        ),
        "sendOrderEvent": _operation(
            "send", "orderEvents", "The service publishes every change of an order's state.", event_messages
        ),
        "receiveQuoteRequest": {
            **_operation(
                "receive", "quotes", "The service prices a partner order and replies.", ["quoteRequest"]
            ),
            "reply": {
                "address": {
                    "description": "The request's reply_to property: RabbitMQ's direct reply-to "
                    "(amq.rabbitmq.reply-to), consumed with no-ack before the request is published.",
                    "location": "$message.header#/reply_to",
                },
                "channel": {"$ref": "#/channels/quoteReplies"},
                "messages": [
                    {"$ref": "#/channels/quoteReplies/messages/quote"},
                    {"$ref": "#/channels/quoteReplies/messages/quoteError"},
                ],
            },
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "order-worker",
            "version": VERSION,
            "description": "Commands in over RabbitMQ, signed and idempotent partner calls, events out. "
            "Queue and exchange names are the defaults; a deployment may rename them "
            "(ORDER_WORKER_CREATE_QUEUE, ..._POLL_QUEUE, ..._ACTIONS_QUEUE, ..._EVENTS_EXCHANGE).",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "pathname": "/",
                "description": "The deployment's RabbitMQ (vhost /).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _quote_channels() -> dict[str, Any]:
    return {
        "quotes": {
            "address": topology.QUOTES_QUEUE,
            "title": topology.QUOTES_QUEUE,
            "description": "Price requests (AMQP request/reply). Publish through the default exchange with "
            "reply_to = amq.rabbitmq.reply-to, a correlation_id, an expiration no longer than the request's "
            "timeout, and `mandatory` (a request returned unroutable means no quote service runs). A classic "
            "queue whose requests expire: a quote nobody waits for is worthless.",
            "messages": {"quoteRequest": {"$ref": "#/components/messages/quoteRequest"}},
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {
                        "name": topology.QUOTES_QUEUE,
                        "durable": True,
                        "exclusive": False,
                        "autoDelete": False,
                        "vhost": "/",
                        "x-arguments": topology.quotes_queue_arguments(),
                    },
                    "bindingVersion": AMQP_BINDING,
                }
            },
        },
        "quoteReplies": {
            "address": None,
            "description": "The requester's direct reply-to pseudo-queue, named by each request's reply_to.",
            "messages": {
                "quote": {"$ref": "#/components/messages/quote"},
                "quoteError": {"$ref": "#/components/messages/quoteError"},
            },
        },
    }


def _quote_messages(refs: dict[str, Any]) -> dict[str, Any]:
    correlation = {
        "description": "AMQP property correlation_id: chosen by the requester, copied onto the reply.",
        "location": "$message.header#/correlation_id",
    }
    return {
        "quoteRequest": {
            "name": "quoteRequest",
            "title": "quote request",
            "contentType": "application/json",
            "correlationId": correlation,
            "headers": {
                "type": "object",
                "properties": {
                    SENT_AT_HEADER: {
                        "type": "integer",
                        "description": "When the request was sent (ms since the epoch): the service answers "
                        "budget_exhausted rather than waiting past the request's timeout.",
                    }
                },
            },
            "payload": refs["QuoteRequest"],
            "examples": [
                {
                    "name": "0trace",
                    "payload": {
                        "provider": "0trace",
                        "params": {
                            "fromCcy": "btc",
                            "toCcy": "usdt_trc20",
                            "direction": "from",
                            "amount": "0.01",
                        },
                        "timeout_seconds": 5,
                    },
                }
            ],
        },
        "quote": {
            "name": "quote",
            "title": "quote",
            "contentType": "application/json",
            "correlationId": correlation,
            "payload": refs["Quote"],
        },
        "quoteError": {
            "name": "quoteError",
            "title": "quote refused",
            "contentType": "application/json",
            "correlationId": correlation,
            "payload": refs["QuoteError"],
        },
    }


def _operation(action: str, channel: str, summary: str, messages: list[str]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
    }
    if action == "send":
        operation["bindings"] = {
            "amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING}
        }
    return operation


def _event_example(provider: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": "0b8e4d5c-7f1a-5e2b-9c3d-4a6f8e0b1c2d",
        "type": "created",
        "seq": 1,
        "occurred_at": "2026-12-07T01:02:03.456Z",
        "command_id": "shop-4711-0001",
        "provider": provider,
        "order_id": "po-1",
        "status": "awaiting_deposit" if provider == "0trace" else "processing",
        "previous_status": "submitting",
        "provider_status": "NEW" if provider == "0trace" else "accepted",
        "source": "create",
        "order": None,
        "error": None,
        "metadata": {},
        "action": None,
    }
