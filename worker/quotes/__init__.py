"""Price quotes over the bus, the service side: what a quote request is answered with.

:mod:`worker.quotes.service` validates a request, answers from a short cache or asks the partner within
its rate budget, and normalises the answer; :mod:`worker.quotes.cache` is that cache. How requests arrive
and replies leave (a pika consumer on ``orders.quotes``, started in each worker process) is
:mod:`worker.bus.quotes`; the models are the client's (:mod:`order_worker_client.quotes`).
"""

from worker.quotes.cache import QuoteCache, cache_key
from worker.quotes.service import QuoteService

__all__ = ["QuoteCache", "QuoteService", "cache_key"]
