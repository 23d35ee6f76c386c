"""Who the client is, and how many wrong channel passwords it may try.

Every channel-password check (the HTTP API, bulk items, legacy MCP tools, the OAuth pages)
goes through :meth:`pushgo.service.channels.Channels.authorize`, which asks the
:class:`PasswordThrottle` first. Failed checks are counted per client address and per
(channel, address) in token buckets; an address out of tokens is answered ``rate_limited``
(429, ``Retry-After``) before the store is read, the success cache looked at or the KDF run.
Only failures cost a token for good: a success gives the address's token back and forgets the
(channel, address) count, so the owner keeps working, and no address can lock out another.

The client address of a request is computed once, by :func:`client_address`, at the front
door, and reaches the services in the :data:`CLIENT` context variable (every task a request
starts inherits it). State is per process and bounded: at most ``MAX_KEYS`` buckets of each
kind, the least recently used forgotten first.

Must not import pushgo.api, pushgo.mcp, pushgo.oauth or starlette.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from pushgo.errors import RateLimited

#: The caller when no request is being served (the CLI, in-process calls).
LOCAL = "local"

#: The client address of the request being served (set by the HTTP front door).
CLIENT: ContextVar[str] = ContextVar("pushgo_client", default=LOCAL)

#: Buckets remembered per kind at most; the least recently used is forgotten first.
MAX_KEYS = 50_000

#: Failed checks one request (a /channel/sync, a /messages/bulk body) may cause; its later
#: password checks are answered ``rate_limited`` without hashing.
REQUEST_FAILURES = 3

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Rule:
    """``burst`` failures at once, then one more every ``every_s`` seconds."""

    burst: int
    every_s: float


#: Five wrong passwords for one channel from one address, then one a minute.
PAIR_RULE = Rule(burst=5, every_s=60.0)
#: Twenty wrong passwords from one address (any channels), then one every 15 seconds.
ADDRESS_RULE = Rule(burst=20, every_s=15.0)


# --------------------------------------------------------------------------- client address

def _parse(text: str) -> Address | None:
    """An address from a peer or an ``X-Forwarded-For`` entry (``[v6]:port`` and ``v4:port``
    accepted), IPv4-mapped IPv6 unwrapped; None when it is not one."""
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=64)
def networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks of the ``trusted_proxies`` setting (already validated by settings)."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   trusted: tuple[Network, ...]) -> str:
    """The address every limiter keys on. The connection's peer, unless the peer is a trusted
    proxy: then the right-most address of ``X-Forwarded-For`` (all its headers, in order)
    that is not a trusted proxy itself — entries left of it were written by the client and
    prove nothing. A malformed entry stops the walk at the last trusted hop.

    IPv6 clients are keyed by their /64 (one host usually owns a whole /64)."""
    address = _parse(peer) if peer else None
    if address is None:
        return peer or "unknown"
    if trusted and _trusted(address, trusted):
        hops = [item for header in forwarded_for for item in header.split(",")]
        for item in reversed(hops):
            hop = _parse(item)
            if hop is None:
                break
            address = hop
            if not _trusted(hop, trusted):
                break
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@contextmanager
def calling_from(address: str) -> Iterator[None]:
    """Serve the code inside as a request from ``address``."""
    token = CLIENT.set(address)
    try:
        yield
    finally:
        CLIENT.reset(token)


def current_client() -> str:
    return CLIENT.get()


# --------------------------------------------------------------------------- token buckets

class _Buckets:
    """Token buckets of one rule, keyed by strings, at most ``size`` of them (LRU)."""

    def __init__(self, rule: Rule, size: int) -> None:
        self.rule = rule
        self.size = size
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at (s)

    def tokens(self, key: str, now: float) -> float:
        entry = self._state.get(key)
        if entry is None:
            return float(self.rule.burst)
        tokens, at = entry
        return min(float(self.rule.burst), tokens + max(0.0, now - at) / self.rule.every_s)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token (0 when it has one now)."""
        return max(0.0, (1.0 - self.tokens(key, now)) * self.rule.every_s)

    def add(self, key: str, now: float, delta: float) -> None:
        tokens = min(float(self.rule.burst), self.tokens(key, now) + delta)
        if tokens >= self.rule.burst:
            self._state.pop(key, None)  # a full bucket is the same as none
            return
        self._state[key] = (tokens, now)
        self._state.move_to_end(key)
        while len(self._state) > self.size:
            self._state.popitem(last=False)

    def forget(self, key: str) -> None:
        self._state.pop(key, None)

    def __len__(self) -> int:
        return len(self._state)


class PasswordThrottle:
    """Failed password checks per client address and per (channel, address).

    ``check`` before anything; ``spend`` right before the KDF runs (it takes a token from
    both buckets, so concurrent guesses cannot all slip through while the first ones hash);
    ``succeeded`` after a check that passed. Times are the caller's, in milliseconds (the
    gateway's injected clock)."""

    def __init__(self, *, pair: Rule = PAIR_RULE, address: Rule = ADDRESS_RULE,
                 size: int = MAX_KEYS) -> None:
        self.pairs = _Buckets(pair, size)
        self.addresses = _Buckets(address, size)

    @staticmethod
    def _pair(channel_id: str, address: str) -> str:
        return f"{channel_id}\0{address}"

    def check(self, channel_id: str, address: str, now_ms: int) -> None:
        """RateLimited (with the wait) when ``address`` may not try ``channel_id`` now."""
        now = now_ms / 1000
        wait = max(self.addresses.wait(address, now),
                   self.pairs.wait(self._pair(channel_id, address), now))
        if wait > 0:
            raise RateLimited(wait)

    def spend(self, channel_id: str, address: str, now_ms: int) -> None:
        """Take one token from both buckets, or raise RateLimited and take none."""
        self.check(channel_id, address, now_ms)
        now = now_ms / 1000
        self.addresses.add(address, now, -1.0)
        self.pairs.add(self._pair(channel_id, address), now, -1.0)

    def succeeded(self, channel_id: str, address: str, now_ms: int, *, spent: bool) -> None:
        """A check passed: give back what it took of the address's budget, and forget the
        failures against this channel from this address."""
        if spent:
            self.addresses.add(address, now_ms / 1000, 1.0)
        self.pairs.forget(self._pair(channel_id, address))


class RequestBudget:
    """The failed checks one request may cause; past them, its other checks answer
    ``rate_limited`` without any hashing."""

    def __init__(self, failures: int = REQUEST_FAILURES) -> None:
        self.left = failures

    def check(self) -> None:
        if self.left <= 0:
            raise RateLimited(1, "too many wrong passwords in this request; the rest were "
                                 "not checked")

    def failed(self) -> None:
        self.left -= 1
