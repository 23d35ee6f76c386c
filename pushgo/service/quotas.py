"""Quotas and rate limits: per API key (``Principal.rate_per_s``, ``daily_notifications``) and
per channel (``PUSHGO_CHANNEL_RATE_PER_S``, ``PUSHGO_CHANNEL_DAILY_NOTIFICATIONS``).

Two mechanisms, each applied to both kinds of subject:

- **A request rate** (per second): a token bucket per subject in this process, on the
  gateway's clock (``Context.now``). A key's bucket is taken at the front door, once per HTTP
  request, right after authentication; a channel's once per operation sent to it (a bulk
  item too). Each bucket holds ``max(1, int(rate))`` tokens (one second's worth, at least one
  request) and refills at ``rate`` a second. With ``pushgo serve --workers N`` each process
  enforces ``rate / N`` (the kernel spreads connections over the workers), so the whole
  gateway admits about ``rate``.
- **Notifications a day** (UTC days): counted in ``quota_usage`` (pushgo.store.quotas) in
  the transaction that accepts the operation, so every process sharing the database shares
  the count. A channel send counts the deliveries it wrote, a direct send its tokens; an
  idempotent replay (same ``op_id``) counts nothing. A send is refused when the day's count
  has already reached the limit before it; the send that reaches it is admitted whole, so the
  count may end above the limit by less than one send (and by a few concurrent sends from
  different processes, which read the count at the same time).

The gateway token (``ROOT``) is never limited by key quotas; channel limits apply to
everyone. A refusal is a :class:`Refusal` (``quota_exceeded``, 429): ``Retry-After`` is the
wait for the next token, or the seconds until the next UTC day. Answers carry the
``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` fields
(draft-ietf-httpapi-ratelimit-headers) of the limit closest to running out among those the
request used, and ``RateLimit-Policy`` listing them all.

Must not import pushgo.api, pushgo.mcp or starlette.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from pushgo.errors import QuotaExceeded
from pushgo.service.context import Context
from pushgo.service.principal import Principal
from pushgo.store import quotas as quota_store

DAY_MS = 86_400_000
#: Buckets remembered per process at most; the least recently used is forgotten first (a
#: forgotten bucket comes back full).
MAX_BUCKETS = 50_000
#: Keys whose notifications of the day /metrics shows (the busiest first).
METRIC_KEYS = 100

KEY = "key"
CHANNEL = "channel"
RATE = "rate"
DAILY = "daily"


def day_of(now_ms: int) -> int:
    """The UTC day (days since the epoch) of ``now_ms``."""
    return now_ms // DAY_MS


def seconds_to_next_day(now_ms: int) -> int:
    return max(1, math.ceil(((day_of(now_ms) + 1) * DAY_MS - now_ms) / 1000))


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one limit stands, as the ``RateLimit-*`` fields tell it."""

    limit: int
    remaining: int
    reset_s: int
    window_s: int


def rate_headers(standings: list[Standing]) -> tuple[tuple[str, str], ...]:
    """The fields of the limit closest to running out, and the policy of every one."""
    if not standings:
        return ()
    worst = min(standings, key=lambda s: (s.remaining, -s.reset_s))
    policy = ", ".join(f"{s.limit};w={s.window_s}" for s in standings)
    return (("ratelimit-limit", str(worst.limit)),
            ("ratelimit-remaining", str(worst.remaining)),
            ("ratelimit-reset", str(worst.reset_s)),
            ("ratelimit-policy", policy))


class Refusal(QuotaExceeded):
    """A quota's refusal, knowing which kind of limit (rate, daily) of which kind of
    subject (key, channel) refused, for /metrics."""

    def __init__(self, message: str, retry_after: float, standing: Standing, kind: str,
                 subject: str) -> None:
        super().__init__(message, retry_after, rate_headers([standing]))
        self.kind = kind
        self.subject = subject


@dataclass
class Usage:
    """The limits one HTTP request used, for its answer's ``RateLimit-*`` fields (the front
    door makes one per request of a limited caller; the services add what they learn)."""

    standings: dict[tuple[str, str], Standing] = field(default_factory=dict)

    def note(self, what: tuple[str, str], standing: Standing) -> None:
        self.standings[what] = standing

    def headers(self) -> tuple[tuple[str, str], ...]:
        return rate_headers(list(self.standings.values()))

    @contextmanager
    def active(self) -> Iterator[Usage]:
        token = USAGE.set(self)
        try:
            yield self
        finally:
            USAGE.reset(token)


#: The request's usage, while the front door serves one of a limited caller.
USAGE: ContextVar[Usage | None] = ContextVar("pushgo_quota_usage", default=None)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: int  # ms, the gateway clock


@dataclass
class Charge:
    """The daily quotas one operation counts against, checked and counted in its write
    transaction (``Prepared.write``, on a store thread)."""

    day: int
    reset_s: int
    #: (subject, limit, subject kind): ``key:<id>``/``channel:<id>``.
    limits: list[tuple[str, int, str]]
    #: Each subject's count after the write (for the answer's fields).
    after: dict[str, int] = field(default_factory=dict)

    def check(self, conn: Connection) -> None:
        """Refuse the operation when a subject has used its day already."""
        used = quota_store.used(conn, [s for s, _, _ in self.limits], self.day)
        for subject, limit, kind in self.limits:
            count = used.get(subject, 0)
            self.after[subject] = count
            if count >= limit:
                raise Refusal(f"the {kind}'s daily quota of {limit} notifications is used "
                              "up; it resets at 00:00 UTC", self.reset_s,
                              Standing(limit, 0, self.reset_s, 86_400), DAILY, kind)

    def count(self, conn: Connection, notifications: int) -> None:
        quota_store.add(conn, [s for s, _, _ in self.limits], self.day, notifications)
        for subject, _limit, _kind in self.limits:
            self.after[subject] = self.after.get(subject, 0) + notifications

    def standings(self) -> Iterator[tuple[tuple[str, str], Standing]]:
        for subject, limit, _kind in self.limits:
            left = max(0, limit - self.after.get(subject, 0))
            yield (DAILY, subject), Standing(limit, left, self.reset_s, 86_400)


class Quotas:
    """The buckets live on the event loop (the front door and the send path call them
    there; no lock); the daily counts in the store."""

    def __init__(self, ctx: Context, processes: int = 1) -> None:
        self.ctx = ctx
        #: Gateway processes sharing the rates (``--workers N``): each enforces rate / N.
        self.processes = max(1, processes)
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        #: Refusals by (kind, subject kind), for /metrics.
        self.refusals: dict[tuple[str, str], int] = {}

    @property
    def channel_rate(self) -> float | None:
        return self.ctx.settings.channel_rate_per_s

    @property
    def channel_daily(self) -> int | None:
        return self.ctx.settings.channel_daily_notifications

    # -- the front door -------------------------------------------------------------------

    def admit(self, principal: Principal) -> Usage | None:
        """One request of ``principal``: its key's rate taken (a :class:`Refusal` when
        there is none left). A Usage for the answer's fields when any limit may apply to
        the request, else None."""
        keyed = not principal.is_root and (principal.rate_per_s is not None
                                            or principal.daily_notifications is not None)
        if not keyed and self.channel_rate is None and self.channel_daily is None:
            return None
        usage = Usage()
        if not principal.is_root and principal.rate_per_s is not None:
            usage.note((RATE, f"key:{principal.key_id}"),
                       self._take(KEY, principal.key_id, principal.rate_per_s))
        return usage

    # -- the send path --------------------------------------------------------------------

    def take_channel(self, channel_id: str) -> None:
        """One operation to ``channel_id``: the channel's rate taken, when it has one."""
        rate = self.channel_rate
        if rate is None:
            return
        standing = self._take(CHANNEL, channel_id, rate)
        usage = USAGE.get()
        if usage is not None:
            usage.note((RATE, f"channel:{channel_id}"), standing)

    def charge(self, principal: Principal, channel_id: str | None, now: int) -> Charge | None:
        """The daily quotas an operation prepared at ``now`` counts against (``channel_id``
        None: a direct send), or None when none applies."""
        limits: list[tuple[str, int, str]] = []
        if not principal.is_root and principal.daily_notifications is not None:
            limits.append((f"key:{principal.key_id}", principal.daily_notifications, KEY))
        if channel_id is not None and self.channel_daily is not None:
            limits.append((f"channel:{channel_id}", self.channel_daily, CHANNEL))
        if not limits:
            return None
        return Charge(day_of(now), seconds_to_next_day(now), limits)

    def accepted(self, charge: Charge) -> None:
        """An operation counted against ``charge`` was written: its standing for the
        answer."""
        usage = USAGE.get()
        if usage is not None:
            for what, standing in charge.standings():
                usage.note(what, standing)

    def refused(self, exc: Refusal) -> None:
        """Count a refusal made on a store thread (once, from the event loop)."""
        self._count(exc.kind, exc.subject)

    # -- the shared count -------------------------------------------------------------------

    async def used_today(self) -> dict[str, int]:
        """Notifications each API key sent today (UTC; the busiest ``METRIC_KEYS``)."""
        rows = await self.ctx.store.read(quota_store.used_by_prefix, "key:",
                                         day_of(self.ctx.now()), METRIC_KEYS)
        return {subject.removeprefix("key:"): n for subject, n in rows.items()}

    async def purge(self) -> int:
        """Forget the counts of past days."""
        return await self.ctx.store.run(quota_store.purge, day_of(self.ctx.now()))

    # -- the buckets ------------------------------------------------------------------------

    def _take(self, kind: str, name: str, rate_per_s: float) -> Standing:
        rate = rate_per_s / self.processes
        burst = max(1, int(rate))
        now = self.ctx.now()
        bucket = self._buckets.get((kind, name))
        if bucket is None:
            bucket = _Bucket(float(burst), now)
            self._buckets[(kind, name)] = bucket
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end((kind, name))
            elapsed = max(0, now - bucket.at) / 1000
            bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate)
            bucket.at = now
        window = max(1, math.ceil(burst / rate))
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / rate
            full = math.ceil(round((burst - bucket.tokens) / rate, 6))
            self._count(RATE, kind)
            raise Refusal(f"the {kind}'s rate of {rate_per_s:g} requests a second is used "
                          f"up; retry in {max(1, math.ceil(wait))} s", wait,
                          Standing(burst, 0, full, window), RATE, kind)
        bucket.tokens -= 1
        full = math.ceil(round((burst - bucket.tokens) / rate, 6))
        return Standing(burst, int(bucket.tokens), full, window)

    def _count(self, kind: str, subject: str) -> None:
        self.refusals[(kind, subject)] = self.refusals.get((kind, subject), 0) + 1
