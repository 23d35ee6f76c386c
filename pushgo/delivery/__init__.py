"""Delivery: everything between the outbox and a device.

- :mod:`~pushgo.delivery.pump`: the outbox pump (claims due provider deliveries, feeds the
  provider senders of :mod:`pushgo.push`, records each outcome).
- :mod:`~pushgo.delivery.private`: the private route's hub and its Server-Sent-Events stream.
- :mod:`~pushgo.delivery.wakeups`: wake-ups across processes sharing one PostgreSQL outbox.
- :mod:`~pushgo.delivery.providers`: the provider senders built from settings.

Uses the provider client and the service layer; never the HTTP or MCP layers.
"""
