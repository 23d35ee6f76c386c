"""Delivery: the private stream hub, and (later) provider senders and the dispatcher."""
