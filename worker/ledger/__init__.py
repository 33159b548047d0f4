"""The order ledger: the source of truth, one row per command_id."""
