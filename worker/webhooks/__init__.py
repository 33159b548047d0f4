"""The push receiver: every partner's webhooks and callbacks, checked on raw bytes, applied via the ledger."""
