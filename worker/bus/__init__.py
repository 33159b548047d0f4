"""Everything that speaks AMQP: the command envelope, the queues and exchanges, publishing, the outbox
relay, the event watcher, the dead-letter rescuer and the Dramatiq broker the workers consume with.

The rest of the service reaches RabbitMQ only through here (or through Dramatiq's actors), so the order
pipeline, the ledger, the partners and the webhooks stay free of Dramatiq and pika (``[tool.importlinter]``
in pyproject.toml). Modules:

* ``envelope``: the command format and its checks, one parse per body; no AMQP library needed.
* ``topology``: every queue and exchange declaration, in one definition.
* ``connection``: the one blocking-connection lifecycle the other modules share.
* ``publishing``: confirmed publishing in batches (the relay's events, the scheduler's commands); one
  command at a time goes through the client package's ``order_worker_client.producer``.
* ``relay``: the outbox relay to ``orders.events``.
* ``watcher``: reading ``orders.events``.
* ``dead_letters``: the dead-letter rescuer.
* ``broker``: the workers' Dramatiq broker, from public middleware and hooks.
* ``rabbitmq``: the Dramatiq internals the broker cannot do without, isolated.
"""
