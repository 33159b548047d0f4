"""A short cache of partner prices, per worker process.

Many producers asking the same question within seconds (a checkout page refreshing, a batch pricing the
same pair) would otherwise each spend a call of the partner's rate budget on an answer that has not
changed. The key is the provider, the account (each has its own markup) and the validated params in a
canonical form, so a create's params and the price fields they reduce to share an entry. Entries live a
few seconds (``ORDER_WORKER_QUOTE_CACHE_SECONDS``); a price older than that is asked for again.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import datetime

from order_worker_client.quotes import Quote, quote_age
from pydantic import BaseModel

CacheKey = tuple[str, str, str]
MAX_ENTRIES = 10_000


def cache_key(provider: str, account: str, params: BaseModel) -> CacheKey:
    """Equal for params that price the same: fields sorted, unset optional fields left out."""
    canonical = json.dumps(
        params.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
    )
    return provider, account, canonical


class QuoteCache:
    """Thread-safe; ``seconds`` of 0 keeps nothing. Bounded: past ``max_entries`` the oldest go first."""

    def __init__(self, seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, tuple[float, Quote]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: CacheKey, now: float, moment: datetime) -> Quote | None:
        """The cached quote marked ``cached`` with its age at ``moment``, or None when absent or stale."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, quote = entry
            if now - stored_at >= self.seconds:
                del self._entries[key]
                return None
        return quote.model_copy(update={"cached": True, "age_seconds": quote_age(quote.quoted_at, moment)})

    def put(self, key: CacheKey, quote: Quote, now: float) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            self._entries[key] = (now, quote)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
