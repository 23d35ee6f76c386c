"""Waker: the sleep of a delivery loop (the outbox pump, the repeat driver, the scheduler)
that a wake-up ends early.

A loop calls `arm()` as a pass begins, does its work, then `sleep(seconds)`; a `wake()` that
comes at any time after `arm()`, during the work included, ends that sleep at once (it is not
lost). The sleep runs on the event loop's clock (Trio's MockClock in tests); the loops work out
how long from the gateway's clock.
"""

from __future__ import annotations

import anyio


class Waker:
    def __init__(self) -> None:
        self._event = anyio.Event()

    def arm(self) -> None:
        """A new pass begins: only wake-ups from now on end the next sleep."""
        self._event = anyio.Event()

    def wake(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less if woken since the last `arm()`."""
        with anyio.move_on_after(seconds):
            await self._event.wait()


class WakesOnAccept:
    """The DeliveryListener side of a loop that sleeps on `self._waker`: accepted work (and
    `wake()`: the clock moved, another process made work) ends its sleep at once."""

    _waker: Waker

    def operation_accepted(self, channel_id: str) -> None:
        self._waker.wake()

    def subscriptions_changed(self, device_key: str) -> None:
        pass

    def wake(self) -> None:
        """Look again now."""
        self._waker.wake()
