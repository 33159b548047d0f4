"""Partner API clients. They know HTTP and the partners, nothing of Dramatiq, the ledger or the bus."""
