"""The operator console's reads (``GET /console`` and ``/admin/console/*``): the newest
operations with their deliveries by state, provider health (shared breaker states, and this
process's own breakers), the queue depth and send rate of the last hour, and the last hour's
failures by reason. Each needs the admin scope.

The history of queue depth and sends is kept in memory by each process (:class:`History`,
``HISTORY_SAMPLES`` samples of ``SAMPLE_S`` seconds: one hour), written by the sampler task
of pushgo.delivery.sampler; a restarted process starts a new one. The queue depth is read
from the store (every process sees the whole outbox); the sends are those of this process's
own pump.

Must not import pushgo.api, pushgo.delivery or starlette.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from pushgo.errors import Forbidden, codes
from pushgo.service.context import Context
from pushgo.service.principal import Scope, current
from pushgo.store import console as console_store
from pushgo.store.providers import STALE_MS

#: Seconds between two samples of the queue depth and the sends.
SAMPLE_S = 10.0
#: Samples kept: one hour of them.
HISTORY_SAMPLES = 360
#: The window of the failures by reason, in milliseconds (one hour).
FAILURE_WINDOW_MS = 3_600_000
#: Reasons listed at most.
MAX_REASONS = 50
#: Operations listed at most (and by default).
MAX_OPERATIONS = 200
DEFAULT_OPERATIONS = 30


class Sample(msgspec.Struct, frozen=True):
    """One sample: when (epoch ms), provider deliveries queued and due at that moment, and
    deliveries this process sent since the previous sample."""

    at: int
    queued: int
    due: int
    sent: int


class History:
    """The last ``size`` samples, oldest first."""

    def __init__(self, size: int = HISTORY_SAMPLES) -> None:
        self._samples: deque[Sample] = deque(maxlen=size)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def samples(self) -> list[Sample]:
        return list(self._samples)


def require_admin() -> None:
    if not current().may(Scope.ADMIN):
        raise Forbidden(codes.SCOPE_REQUIRED, "this needs a key with the admin scope")


class Console:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.history = History()
        #: This process's breakers, per provider route (set by the wiring: the pump's).
        self.local_breakers: Callable[[], dict[str, dict[str, Any]]] = dict

    async def queue_depth(self) -> tuple[int, int]:
        """(queued, due) provider deliveries now (for the sampler: no scope check)."""
        return await self.ctx.store.read(console_store.queue_depth, self.ctx.now())

    async def operations(self, limit: int = DEFAULT_OPERATIONS) -> list[dict[str, Any]]:
        require_admin()
        rows = await self.ctx.store.read(console_store.recent_operations,
                                         max(1, min(limit, MAX_OPERATIONS)))
        return [row.wire() for row in rows]

    async def stats(self) -> dict[str, Any]:
        require_admin()
        queued, due = await self.queue_depth()
        return {"interval_s": SAMPLE_S, "capacity": HISTORY_SAMPLES, "now": self.ctx.now(),
                "queued": queued, "due": due,
                "samples": [msgspec.structs.asdict(s) for s in self.history.samples()]}

    async def failures(self) -> dict[str, Any]:
        require_admin()
        since = self.ctx.now() - FAILURE_WINDOW_MS
        rows = await self.ctx.store.read(console_store.failures_since, since, MAX_REASONS)
        return {"since": since, "total": sum(n for _, _, n in rows),
                "reasons": [{"route": route, "reason": why, "count": n}
                            for route, why, n in rows]}

    async def providers(self) -> list[dict[str, Any]]:
        """One entry per provider route this process sends to or some process wrote a health
        row for: the shared state (``provider_health``) and this process's breaker."""
        require_admin()
        shared = {row["route"]: row for row in
                  await self.ctx.store.read(console_store.provider_health_rows)}
        local = self.local_breakers()
        now = self.ctx.now()
        out = []
        for route in sorted(set(shared) | set(local)):
            row, mine = shared.get(route), local.get(route)
            # A row not rewritten for STALE_MS is a dead process's word (as for /deliveries).
            fresh = row is not None and row["updated_at"] >= now - STALE_MS
            source = row if row is not None and fresh else (mine or {})
            state = source.get("state", "closed")
            out.append({"route": route, "configured": mine is not None, "state": state,
                        "shared": row, "shared_fresh": fresh, "local": mine})
        return out
