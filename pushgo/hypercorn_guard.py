"""One connection's failure never ends the server: a guard around Hypercorn's per-connection
``TCPServer``, installed where pushgo starts Hypercorn (``pushgo serve``).

Hypercorn 0.17–0.18 lets an exception raised while serving one connection escape that
connection's task. On Trio that task runs in the listeners' nursery, so the exception ends the
whole server (exit status 1); on asyncio it is only logged ("Task exception was never
retrieved"). Two such failures are known:

- ``trio.BusyResourceError`` ("another task is currently sending data on this SocketStream"):
  ``TCPServer._close()`` calls ``stream.send_eof()`` without the send lock, and Trio's
  ``SocketStream.send_eof`` holds the stream's send side across a checkpoint. A response written
  in that moment (``protocol_send(RawData)`` → ``send_all``) gets ``BusyResourceError``, which
  ``protocol_send`` does not count as a lost peer (it catches only Broken/ClosedResourceError).
  h2c clients that end with GOAWAY while answers are in flight hit it under load.
- ``KeyError`` from ``H2Protocol._handle_events``: a DATA frame for a stream whose response has
  already ended (a client still sending a body after a 404 or 401 that did not read it — legal
  HTTP/2), or for streams dropped when the connection was marked closed in the middle of a
  batch of frames. One crafted h2c request was enough to stop a Trio server.

``install()`` swaps the ``TCPServer`` class that Hypercorn's Trio and asyncio workers build for
each connection (the name ``TCPServer`` in ``hypercorn.trio.run`` / ``hypercorn.asyncio.run``)
for a subclass that

1. treats ``BusyResourceError`` from a send like a broken connection (the connection is
   closing: the same handling Hypercorn gives ``BrokenResourceError``), and
2. contains anything else that escapes a connection: Hypercorn has already closed that
   connection's socket (its ``run`` closes in ``finally``) and cancelled its other streams; the
   guard logs one warning with the exception types and where they were raised — never their
   messages, which can quote request bytes — and lets the server go on. Cancellation (server
   shutdown) still propagates.

The subclass only wraps the methods it names (calling Hypercorn's own), and is installed only
on the Hypercorn versions it was checked against (``TESTED``); on another version ``install()``
logs that it left Hypercorn as it is. ``install()`` is idempotent.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import PurePath
from typing import Any

log = logging.getLogger("pushgo.http")

#: Hypercorn (major, minor) versions whose ``TCPServer`` this guard was checked against.
TESTED = ((0, 17), (0, 18))

_installed: dict[str, type] = {}


def hypercorn_version() -> tuple[int, ...]:
    parts: list[int] = []
    for piece in metadata.version("hypercorn").split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def supported() -> bool:
    return hypercorn_version()[:2] in TESTED


def install() -> bool:
    """Guard Hypercorn's Trio and asyncio TCP servers; False when this Hypercorn is untested."""
    if _installed:
        return True
    if not supported():
        log.warning("hypercorn connection guard not installed", extra={"fields": {
            "hypercorn": ".".join(map(str, hypercorn_version())),
            "tested": [f"{a}.{b}" for a, b in TESTED]}})
        return False
    import hypercorn.asyncio.run as asyncio_run
    import hypercorn.trio.run as trio_run

    trio_cls = guarded_trio_server(getattr(trio_run, "TCPServer"))  # noqa: B009
    asyncio_cls = guarded_asyncio_server(getattr(asyncio_run, "TCPServer"))  # noqa: B009
    # The name each worker calls once per accepted connection.
    setattr(trio_run, "TCPServer", trio_cls)  # noqa: B010
    setattr(asyncio_run, "TCPServer", asyncio_cls)  # noqa: B010
    _installed.update(trio=trio_cls, asyncio=asyncio_cls)
    return True


def guarded_trio_server(base: type[Any]) -> type[Any]:
    """``base`` (Hypercorn's Trio ``TCPServer``) with the two guards of this module."""
    import trio
    from hypercorn.events import Closed, Event

    class GuardedTrioTCPServer(base):  # type: ignore[misc]
        async def protocol_send(self, event: Event) -> None:
            try:
                await super().protocol_send(event)
            except trio.BusyResourceError:
                # send_eof() holds the send side: the connection is being closed.
                await self.protocol.handle(Closed())

        async def run(self) -> None:
            await _contained(super().run())

    return GuardedTrioTCPServer


def guarded_asyncio_server(base: type[Any]) -> type[Any]:
    """``base`` (Hypercorn's asyncio ``TCPServer``) with the containment guard."""

    class GuardedAsyncioTCPServer(base):  # type: ignore[misc]
        async def run(self) -> None:
            await _contained(super().run())

    return GuardedAsyncioTCPServer


async def _contained(coro: Any) -> None:
    try:
        await coro
    except Exception as exc:  # one connection's failure, however it failed
        _report(exc)
    except BaseExceptionGroup as group:  # errors mixed with cancellation
        errors, rest = group.split(Exception)
        if errors is not None:
            _report(errors)
        if rest is not None:
            raise rest from None


def _report(exc: BaseException) -> None:
    log.warning("connection closed after a server error", extra={"fields": {
        "errors": [describe(leaf) for leaf in leaves(exc)]}})


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def describe(exc: BaseException) -> str:
    """``Type at package/module.py:line`` (where it was raised) — no message: Hypercorn's
    messages can quote the raw request, secrets included."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    parts = PurePath(tb.tb_frame.f_code.co_filename).parts
    return f"{type(exc).__name__} at {'/'.join(parts[-3:])}:{tb.tb_lineno}"
