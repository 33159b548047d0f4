"""The push receiver: 0trace webhooks and itrx callbacks, verified on raw bytes, applied via the ledger."""
