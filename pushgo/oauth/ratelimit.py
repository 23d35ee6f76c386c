"""Token buckets in process memory for the OAuth server: dynamic registrations and pages opened,
per client address. (Channel-password checks are limited on every path alike, by
pushgo.service.throttle.)

The client address is the one the front door computed (pushgo.service.throttle.client_address):
the connection's peer, or, behind a proxy named in ``PUSHGO_TRUSTED_PROXIES``, the client that
proxy reports in ``X-Forwarded-For``; otherwise that header is ignored, since whoever sends it
chooses it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import anyio

#: Buckets remembered at most; the least recently used is forgotten first.
MAX_BUCKETS = 20_000


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True)
class Rule:
    burst: int
    per_second: float


class Limiter:
    def __init__(self, rules: dict[str, Rule],
                 clock: Callable[[], float] = anyio.current_time) -> None:
        self.rules = rules
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def _bucket(self, kind: str, key: str, now: float) -> _Bucket:
        rule = self.rules[kind]
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            bucket = _Bucket(float(rule.burst), now)
            self._buckets[(kind, key)] = bucket
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end((kind, key))
            bucket.tokens = min(rule.burst, bucket.tokens + (now - bucket.at) * rule.per_second)
            bucket.at = now
        return bucket

    def take(self, *keys: tuple[str, str]) -> int:
        """Take one token from each (kind, key) bucket; 0 when all had one, else the seconds
        until they will (and nothing is taken)."""
        now = self.clock()
        buckets = [(self.rules[kind], self._bucket(kind, key, now)) for kind, key in keys]
        wait = 0.0
        for rule, bucket in buckets:
            if bucket.tokens < 1:
                wait = max(wait, (1 - bucket.tokens) / rule.per_second)
        if wait > 0:
            return max(1, math.ceil(wait))
        for _rule, bucket in buckets:
            bucket.tokens -= 1
        return 0


def default_limiter() -> Limiter:
    return Limiter({
        "register": Rule(burst=20, per_second=1 / 6),
        # Authorize and bind pages opened (each is a row until it expires).
        "page": Rule(burst=60, per_second=1.0),
    })
