"""Broker URLs: where a client connects (one node, or a cluster's nodes tried in turn), and how a URL is
shown in an error (host and port only, never the credentials). No pika here, so the service's settings
can share these rules without loading the AMQP client.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


def broker_urls(urls: str | Sequence[str]) -> list[str]:
    """The URLs to try, in turn: a sequence of them, or a string holding one or several separated by
    commas (a cluster's nodes, as the service's ``ORDER_WORKER_BROKER_URL``). A comma inside a URL, in a
    password or an option, must be percent-encoded (``%2C``), so splitting never cuts one in two."""
    listed = urls.split(",") if isinstance(urls, str) else list(urls)
    found = [url.strip() for url in listed if url.strip()]
    if not found:
        raise ValueError("no broker URL given")
    return found


def describe_url(url: str) -> str:
    """A broker URL as it may be shown in an error: host and port, never the credentials."""
    parts = urlsplit(url)
    default_port = 5671 if parts.scheme == "amqps" else 5672
    try:
        port = parts.port or default_port
    except ValueError:  # not a number: the URL is wrong, and its text is not shown
        port = default_port
    return f"{parts.hostname or '?'}:{port}"
