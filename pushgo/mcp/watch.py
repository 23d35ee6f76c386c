"""Resource subscriptions: who watches which resource, and the watchers that turn changes
into ``notifications/resources/updated``.

A subscription names a resource URI (``pushgo://operations/{op_id}``: its delivery counts
change; ``pushgo://channels/{channel_id}``: something was sent to the channel). The
resources table (pushgo.mcp.resources) says how a URI changes, as an async iterator that
yields once per change and ends when nothing more can change (an operation that is done).

Both eras run the watchers inside the stream that carries their notifications, so a watcher
lives exactly as long as someone can hear it: the initialize era's GET stream of the session
(``resources/subscribe`` / ``resources/unsubscribe`` edit the session's set, which the
stream follows), the 2026-07-28 ``subscriptions/listen`` stream (its filter's
``resourceSubscriptions``). Bounded: ``MAX_SUBSCRIPTIONS`` per session or listen stream, and
at most one notification per resource per ``COALESCE_S`` (changes in between are merged).

Must not import starlette.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import anyio

from pushgo.errors import GatewayError, codes
from pushgo.mcp.auth import SCOPE_CHANNELS, Principal
from pushgo.mcp.sessions import EventStream, Session
from pushgo.protocol import jsonrpc

log = logging.getLogger("pushgo.mcp")

#: Resources one session (or one listen stream) may watch at once.
MAX_SUBSCRIPTIONS = 32
#: At most one notifications/resources/updated per resource per this many seconds.
COALESCE_S = 1.0
#: A watcher that lost the store waits this long before it reads again.
RETRY_S = 5.0

UPDATED = "notifications/resources/updated"


class Signal:
    """A level-triggered wake-up: set any number of times, one wait returns for all of them."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


class ChannelFeed:
    """A delivery listener (pushgo.service.context): wakes the watchers of a channel when
    this process accepts work for it, or hears another process did (PostgreSQL wake-ups)."""

    def __init__(self) -> None:
        self._signals: dict[str, set[Signal]] = {}

    def operation_accepted(self, channel_id: str) -> None:
        for signal in self._signals.get(channel_id, ()):
            signal.set()

    def subscriptions_changed(self, device_key: str) -> None:
        return None

    @contextmanager
    def follow(self, channel_id: str) -> Iterator[Signal]:
        signal = Signal()
        self._signals.setdefault(channel_id, set()).add(signal)
        try:
            yield signal
        finally:
            waiting = self._signals.get(channel_id)
            if waiting is not None:
                waiting.discard(signal)
                if not waiting:
                    self._signals.pop(channel_id, None)


class Watchable(Protocol):
    def watch(self, uri: str) -> AsyncIterator[None]:
        """One item per change of ``uri``; ends when it cannot change any more."""
        ...


def limit_error(limit: int = MAX_SUBSCRIPTIONS) -> jsonrpc.RpcError:
    return jsonrpc.RpcError(
        jsonrpc.INVALID_REQUEST,
        f"Too many resource subscriptions: at most {limit} at once; unsubscribe from one "
        "first", {"error_code": codes.SUBSCRIPTION_LIMIT_EXCEEDED.code, "limit": limit})


async def follow(source: Watchable, uri: str, emit: Callable[[str], Awaitable[None]], *,
                 interval: float = COALESCE_S) -> None:
    """Emit once per change of ``uri``, no more often than every ``interval`` seconds (the
    changes of a quiet spell are merged into one), until the resource cannot change any
    more. A store outage pauses the watcher; a resource gone (or no longer readable) ends
    it."""
    while True:
        try:
            async for _ in source.watch(uri):
                await emit(uri)
                # Quiet for the interval while the source is suspended: what changes
                # meanwhile is one change when it resumes.
                await anyio.sleep(interval)
            return
        except GatewayError as exc:
            if exc.status < 500:
                return
            log.warning("mcp resource watch paused", extra={"fields": {
                "error_code": exc.code}})
            await anyio.sleep(RETRY_S)


class WatchSet(Protocol):
    """What a runner follows: the URIs wanted now, and a wake-up when that set changes."""

    def wanted(self) -> list[str]: ...

    def changed(self) -> anyio.Event: ...

    def finished(self, uri: str) -> None:
        """``uri``'s watcher ended by itself (its resource cannot change any more)."""
        ...


async def run_watchers(watches: WatchSet, source: Watchable,
                       emit: Callable[[str], Awaitable[None]]) -> None:
    """Keep one watcher per wanted URI running, starting and cancelling them as the set
    changes, until cancelled."""
    running: dict[str, anyio.CancelScope] = {}

    async def one(uri: str, scope: anyio.CancelScope) -> None:
        with scope:
            await follow(source, uri, emit)
            if running.get(uri) is scope:
                running.pop(uri)
                watches.finished(uri)

    async with anyio.create_task_group() as tg:
        while True:
            changed = watches.changed()
            wanted = watches.wanted()
            for uri in [u for u in running if u not in wanted]:
                running.pop(uri).cancel()
            for uri in wanted:
                if uri not in running:
                    running[uri] = anyio.CancelScope()
                    tg.start_soon(one, uri, running[uri])
            await changed.wait()


class FixedWatches:
    """A listen stream's subscriptions: fixed when it opens."""

    def __init__(self, uris: list[str]) -> None:
        self._uris = list(uris)
        self._changed = anyio.Event()

    def wanted(self) -> list[str]:
        return list(self._uris)

    def changed(self) -> anyio.Event:
        return self._changed

    def finished(self, uri: str) -> None:
        if uri in self._uris:
            self._uris.remove(uri)


class Source(Protocol):
    """The resources table as the watchers need it (pushgo.mcp.dispatcher.ResourceSet)."""

    def watchable(self, uri: str) -> bool: ...

    def watch(self, uri: str, principal: Principal) -> AsyncIterator[None]: ...

    async def read(self, uri: str, principal: Principal, *, modern: bool) -> Sequence[Any]: ...


class Bound:
    """A resources table's watches as one caller may have them (:class:`Watchable`)."""

    def __init__(self, resources: Source, principal: Principal) -> None:
        self.resources = resources
        self.principal = principal

    def watch(self, uri: str) -> AsyncIterator[None]:
        return self.resources.watch(uri, self.principal)


async def listen_uris(resources: Source, uris: list[str], principal: Principal) -> list[str]:
    """The resources of a 2026-07-28 listen filter that will be watched: those that change
    and that the caller can read now, at most MAX_SUBSCRIPTIONS (the rest are left out of
    the acknowledged filter)."""
    out: list[str] = []
    if not principal.allows(SCOPE_CHANNELS):
        return out
    for uri in list(dict.fromkeys(uris))[:4 * MAX_SUBSCRIPTIONS]:
        if len(out) >= MAX_SUBSCRIPTIONS:
            break
        if not isinstance(uri, str) or not resources.watchable(uri):
            continue
        try:
            await resources.read(uri, principal, modern=True)
        except (jsonrpc.RpcError, GatewayError):
            continue
        out.append(uri)
    return out


async def watch_session(session: Session, stream: EventStream, source: Bound) -> None:
    """Run an initialize-era session's resource watchers, their notifications going out on
    this GET stream, unless another of its GET streams already runs them."""
    if session.watching is not None:
        return
    session.watching = stream.number

    async def updated(uri: str) -> None:
        stream.append(jsonrpc.encode_notification(UPDATED, {"uri": uri}))

    try:
        await run_watchers(session, source, updated)
    finally:
        if session.watching == stream.number:
            session.watching = None
