"""The repeat driver: makes the rounds of sends repeated until acknowledged
(pushgo.service.receipts), one task under ``Gateway.running()``.

It sleeps until the next round is due on the gateway's clock (``Context.now()``), at most
``POLL_S`` (a repeat created by another process sharing the outbox is seen within it), and
wakes early when this process accepts work (a new repeat may be due sooner than the one it
waits for). Each pass makes every due round in pages; the deliveries a round writes are sent
by the outbox pump, woken like for any accepted operation.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from pushgo.delivery.waker import Waker, WakesOnAccept
from pushgo.errors import StoreUnavailable
from pushgo.service.context import Context
from pushgo.service.receipts import Receipts

log = logging.getLogger("pushgo.repeats")

#: The longest sleep between two looks at the repeats (seconds of the gateway's clock).
POLL_S = 15.0
#: After a failed pass (the store did not answer), the next one comes this much later.
RETRY_S = 1.0
#: The shortest sleep: a round still due after a pass is held by another process.
MIN_S = 0.05


class RepeatDriver(WakesOnAccept):
    def __init__(self, ctx: Context, receipts: Receipts) -> None:
        self.ctx = ctx
        self.receipts = receipts
        self._waker = Waker()
        #: Passes made, and the gateway clock when the last one began (tests wait for a pass
        #: that saw the time they set instead of waiting on time).
        self.passes = 0
        self.last_pass_at: int | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        task_status.started()
        while True:
            self._waker.arm()
            began = self.ctx.now()
            delay = await self._pass()
            self.passes += 1
            self.last_pass_at = began
            if delay > 0:
                await self._waker.sleep(delay)

    async def _pass(self) -> float:
        """Make what is due; how long to sleep before the next pass (seconds)."""
        try:
            while True:
                rounds = await self.receipts.run_due()
                if rounds.made or rounds.stopped:
                    log.info("repeat rounds", extra={"fields": {
                        "sent_again": rounds.made, "expired": rounds.stopped}})
                if not rounds.more:
                    break
            due = await self.receipts.next_due()
        except StoreUnavailable as exc:
            log.warning("repeat round failed", extra={"fields": {"error": exc.message}})
            return RETRY_S
        except Exception:
            log.exception("repeat round failed")
            return RETRY_S
        if due is None:
            return POLL_S
        return min(POLL_S, max(MIN_S, (due - self.ctx.now()) / 1000))
