"""Scheduled sends going out on time: a task that releases scheduled deliveries when their
``deliver_at`` comes (``pushgo.service.schedule``), then tells the listeners as if the work
had just been accepted: the dispatcher claims the provider deliveries, the private hub wakes
the device streams and warp-link sessions of their channels, delivery status re-reads, and on
PostgreSQL one ``NOTIFY`` wakes the other processes' (``wakeups.py``).

Schedules live only in the database: every process runs this task, whichever reaches a due
operation first releases it (the others skip it), and a restarted process finds what is due.
It sleeps until the earliest scheduled delivery, but never longer than ``POLL_S``: a schedule
written by another process (or a clock moved by a test) is seen within that.

Must not import pushgo.api or starlette.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from pushgo.delivery.waker import Waker
from pushgo.errors import StoreUnavailable
from pushgo.service.context import Context
from pushgo.service.schedule import Schedules

log = logging.getLogger("pushgo.schedule")

POLL_S = 1.0
#: A due schedule that could not be released (another process holds it) is looked at again
#: after at least this long.
MIN_WAIT_S = 0.05


class Scheduler:
    def __init__(self, ctx: Context, schedules: Schedules, poll_s: float = POLL_S) -> None:
        self.ctx = ctx
        self.schedules = schedules
        self.poll_s = poll_s
        self._waker = Waker()

    def wake(self) -> None:
        """Look again now (a test moved its clock)."""
        self._waker.wake()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        task_status.started()
        while True:
            self._waker.arm()
            wait = self.poll_s
            try:
                released = await self.schedules.release_due()
                if released:
                    for channel_id in released:
                        self.ctx.accepted(channel_id)
                    continue  # more may be due than one release takes
                due = await self.schedules.next_due()
                if due is not None:
                    wait = min(wait, max(MIN_WAIT_S, (due - self.ctx.now()) / 1000))
            except StoreUnavailable as exc:
                log.warning("releasing scheduled sends failed",
                            extra={"fields": {"error": exc.message}})
            except Exception:
                log.exception("releasing scheduled sends failed")
            await self._waker.sleep(wait)
