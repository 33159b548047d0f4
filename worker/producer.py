"""The Python producer API the README documents: ``worker.producer.CommandProducer``.

Kept as a stable public path for producers outside this project; the implementation lives with the rest
of the messaging code in ``worker.bus.publishing``.
"""

from __future__ import annotations

from worker.bus.publishing import CommandProducer

__all__ = ["CommandProducer"]
