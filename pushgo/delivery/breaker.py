"""A circuit breaker per provider: a small pure state machine, fed by the outbox pump.

CLOSED: deliveries flow. A transient failure (429, 5xx, a lost connection, a connection that
could not be opened) adds to a streak; a success, or any answer that shows the provider is
serving (a permanent rejection, a dead token), ends it. The breaker OPENS when the streak reaches
``threshold`` failures (a burst: a fan-out answered 503 fills it in moments), or when it has
lasted ``window_s`` with at least two failures and no success in between (a trickle: refused
connections come only as fast as the connection pool's own backoff tries them, and waiting for
20 of those would take minutes).

OPEN: the pump claims nothing for the provider and gives back what it holds for it, without
spending an attempt. After ``cooldown_s`` the breaker turns HALF_OPEN and admits ``probes``
real deliveries, again every ``cooldown_s`` while no answer comes. A failure opens it again; the
first success closes it (the pump then makes the provider's waiting deliveries due at once).

Time is whatever clock the caller passes (``now`` in seconds): the pump passes the runtime
clock, the tests a number. Imports nothing from pushgo.
"""

from __future__ import annotations

import enum

THRESHOLD = 20
WINDOW_S = 10.0
COOLDOWN_S = 10.0
PROBES = 3


class State(enum.IntEnum):
    """The numbers are those of ``pushgo_provider_breaker_state``."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class Breaker:
    def __init__(self, *, threshold: int = THRESHOLD, window_s: float = WINDOW_S,
                 cooldown_s: float = COOLDOWN_S, probes: int = PROBES) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.probes = probes
        self.state = State.CLOSED
        self.last_error: str | None = None
        self.failures = 0  # the current streak
        self.opened = 0  # times it opened, for /metrics
        self._streak_since = 0.0
        self._opened_at = 0.0
        self._next_probe_at = 0.0

    def failure(self, reason: str, now: float) -> bool:
        """A transient failure; True when the state changed."""
        self.last_error = reason
        if self.failures == 0:
            self._streak_since = now
        self.failures += 1
        if self.state is State.CLOSED:
            long = self.failures >= 2 and now - self._streak_since >= self.window_s
            if self.failures < self.threshold and not long:
                return False
        elif self.state is State.OPEN:
            return False
        self._open(now)
        return True

    def success(self) -> bool:
        """The provider served a request; True when the state changed (it closed)."""
        self.failures = 0
        if self.state is State.CLOSED:
            return False
        self.state = State.CLOSED
        self.last_error = None
        return True

    def tick(self, now: float) -> bool:
        """OPEN turns HALF_OPEN once the cool-down is over; True when it did."""
        if self.state is State.OPEN and now >= self._opened_at + self.cooldown_s:
            self.state = State.HALF_OPEN
            self._next_probe_at = now
            return True
        return False

    def admit(self, now: float) -> int | None:
        """How many deliveries may be claimed now: None for no limit (closed), 0 while open,
        ``probes`` once per cool-down while half-open."""
        self.tick(now)
        if self.state is State.CLOSED:
            return None
        if self.state is State.HALF_OPEN and now >= self._next_probe_at:
            self._next_probe_at = now + self.cooldown_s
            return self.probes
        return 0

    def wait_s(self, now: float) -> float:
        """Seconds until the breaker may admit something (0 when it does now)."""
        if self.state is State.CLOSED:
            return 0.0
        at = self._opened_at + self.cooldown_s if self.state is State.OPEN else self._next_probe_at
        return max(0.0, at - now)

    @property
    def holding(self) -> bool:
        """Deliveries for this provider are held back (open or half-open)."""
        return self.state is not State.CLOSED

    def _open(self, now: float) -> None:
        self.state = State.OPEN
        self._opened_at = now
        self.opened += 1
