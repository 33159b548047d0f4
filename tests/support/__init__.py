"""What the test suites and the benchmarks share, so each runs the stack the same way: the process stack
(``stack``), the throwaway RabbitMQ node (``rabbit``), the TCP fault proxy (``faults``), confirmed
publishing and the event witness (``events``), ledger views (``ledger_views``), partner orders and bindings
(``partners``) and the HTTP CONNECT proxy (``proxy``)."""
