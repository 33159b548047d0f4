"""``worker.producer.CommandProducer``, kept importable for producers written against it.

The producer API lives in the client package, ``order_worker_client.producer`` (also exported as
``order_worker_client.CommandProducer``), which producers install without the service's dependencies.
"""

from __future__ import annotations

from order_worker_client.producer import CommandProducer

__all__ = ["CommandProducer"]
