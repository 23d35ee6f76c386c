"""The console's sampler: every ``SAMPLE_S`` seconds (pushgo.service.console) it records the
provider queue's depth (queued and due deliveries, read from the store) and how many
deliveries this process's pump sent since the previous sample, into the console's in-memory
:class:`~pushgo.service.console.History` (the last hour). It also lends the console this
process's breakers.

Runs under ``Gateway.running()`` on the runtime clock (a test's MockClock moves it); a store
that does not answer costs one sample, never the task.

Must not import pushgo.store or pushgo.api.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc

from pushgo.delivery.pump import OutboxPump
from pushgo.errors import StoreUnavailable
from pushgo.service.console import SAMPLE_S, Console, Sample

log = logging.getLogger("pushgo.console")


class Sampler:
    def __init__(self, console: Console, pump: OutboxPump) -> None:
        self.console = console
        self.pump = pump
        self._sent_before = self._sent_total()
        console.local_breakers = self.breakers

    def _sent_total(self) -> int:
        return sum(self.pump.sent_by_route.values())

    async def sample(self) -> Sample | None:
        """Take one sample now (None when the store did not answer; the sends then count
        towards the next one)."""
        try:
            queued, due = await self.console.queue_depth()
        except StoreUnavailable as exc:
            log.warning("console sample failed", extra={"fields": {"error": exc.message}})
            return None
        total = self._sent_total()
        sample = Sample(self.console.ctx.now(), queued, due, total - self._sent_before)
        self._sent_before = total
        self.console.history.add(sample)
        return sample

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        task_status.started()
        while True:
            await anyio.sleep(SAMPLE_S)
            try:
                await self.sample()
            except Exception:
                log.exception("console sample failed")

    def breakers(self) -> dict[str, dict[str, Any]]:
        """This process's breaker of each provider it sends to."""
        return {route: {"state": breaker.state.name.lower(), "failures": breaker.failures,
                        "opened": breaker.opened, "last_error": breaker.last_error}
                for route, breaker in self.pump.breakers.items()}
