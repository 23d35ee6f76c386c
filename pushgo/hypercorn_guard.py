"""Hypercorn as ``pushgo serve`` runs it: its configuration (:func:`server_config`), and a
guard around Hypercorn's per-connection ``TCPServer`` so that one connection's failure never
ends the server, a client slow with its headers is cut off and the number of open connections
is capped.

Limits (on both the Trio and asyncio workers, from the settings via :class:`ServerConfig`):

- ``PUSHGO_HTTP_HEADER_TIMEOUT_S``: Hypercorn's ``read_timeout`` would also end quiet
  streams (SSE) and its ``keep_alive_timeout`` counts from the end of the last answer, so the
  guard runs its own deadline in Hypercorn's idle timer: a connection has that long for a
  request's headers from its start, or, kept alive, from the first byte of the next request
  (HTTP/1; an h2c connection keeps Hypercorn's keep-alive timeout). A body's deadline is the
  application's (pushgo.api.reading).
- ``PUSHGO_HTTP_MAX_CONNECTIONS``: past it a new connection is answered 503 ``server_busy``
  with ``Retry-After`` and closed (after reading what the client sent, for at most a second,
  so that the close is no reset that loses the answer); open connections go on. A connection
  the client closes leaves at once (Hypercorn would hold it until its keep-alive timeout).

The guard against failures:

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

On Trio without a read timeout (pushgo sets none) the subclass reads without Hypercorn's
infinite per-read deadline, a cancel scope each idle connection would hold.

The subclass only wraps the methods it names (calling Hypercorn's own), and is installed only
on the Hypercorn versions it was checked against (``TESTED``); on another version ``install()``
logs that it left Hypercorn as it is. ``install()`` is idempotent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import PurePath
from typing import Any

import anyio
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, Event, RawData

from pushgo.settings import Settings

log = logging.getLogger("pushgo.http")

GRACEFUL_TIMEOUT_S = 5.0
KEEP_ALIVE_TIMEOUT_S = 75.0
#: How long a refused connection is kept to deliver its 503 (read and drop, then close).
REFUSE_LINGER_S = 1.0
MAX_LINGER_READ = 64 * 1024
#: Bytes asked of the socket per read (Hypercorn's own size).
READ_CHUNK = 64 * 1024
BUSY_RETRY_AFTER_S = 1

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


class ServerConfig(Config):
    """Hypercorn's Config with pushgo's per-connection limits, and sockets bound up front.

    ``header_timeout_s``: how long a client has for a request's headers, counted from the
    connection's start, or on a kept-alive connection from the first byte of the next request
    (Hypercorn's ``keep_alive_timeout`` still bounds the wait for that byte).
    ``max_connections``: open connections of this server; past it a new one is answered 503
    with ``Retry-After`` and closed, and the open ones are left alone.
    """

    header_timeout_s: float | None = None
    max_connections: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.open_connections = 0
        self._bound: Sockets | None = None

    def bind_now(self) -> None:
        """Bind the listening sockets now (an OSError names a taken address); the server
        started next uses them."""
        self._bound = super().create_sockets()

    def create_sockets(self) -> Sockets:
        bound, self._bound = self._bound, None
        return bound if bound is not None else super().create_sockets()


def server_config(settings: Settings, binds: list[str]) -> ServerConfig:
    """The Hypercorn configuration of ``pushgo serve`` (and of the tests' real servers)."""
    config = ServerConfig()
    config.bind = binds
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # Longer than the usual idle timeouts of proxies in front, so they close first.
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    config.header_timeout_s = settings.http_header_timeout_s
    config.max_connections = settings.http_max_connections
    return config


def busy_answer() -> bytes:
    """The whole HTTP/1.1 answer to a connection past the cap."""
    from pushgo.api.envelope import error_body
    from pushgo.errors import ServerBusy

    body = error_body(ServerBusy(message="too many open connections"), None)
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"retry-after: {BUSY_RETRY_AFTER_S}\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


class _Limited:
    """The connection cap and the header deadline, for Hypercorn's TCPServer of either
    backend (which supplies ``config``, ``context``, ``protocol`` and ``_initiate_server_close``;
    the subclass supplies ``_refuse``)."""

    config: Config
    context: Any
    _initiate_server_close: Callable[[], Awaitable[None]]

    @property
    def protocol(self) -> Any:
        return self._watched

    @protocol.setter
    def protocol(self, value: Any) -> None:
        # Hypercorn assigns its protocol once the connection starts: watch what it is fed.
        self._watched = _Watched(value, self) if isinstance(self.config, ServerConfig) else value

    async def _refuse(self, answer: bytes) -> None:
        raise NotImplementedError

    def data_arrived(self) -> None:
        arrival = getattr(self, "_arrival", None)
        if arrival is not None:
            arrival.set()

    def _ended(self) -> anyio.Event:
        ended: anyio.Event | None = getattr(self, "_ended_event", None)
        if ended is None:
            ended = self._ended_event = anyio.Event()
        return ended

    async def _run_limited(self, run: Callable[[], Awaitable[None]]) -> None:
        config = self.config
        if not isinstance(config, ServerConfig) or config.max_connections is None:
            await run()
            return
        if config.open_connections >= config.max_connections:
            await self._refuse(busy_answer())
            return
        config.open_connections += 1
        try:
            await run()
        finally:
            config.open_connections -= 1

    async def _idle_timeout(self) -> None:
        """Hypercorn runs this while no request is in flight (from the connection's start,
        and after each answer) and cancels it once a request's headers are in."""
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                async def on_shutdown() -> None:
                    await self.context.terminated.wait()
                    scope.cancel()

                async def on_closed() -> None:
                    # The client closed: stop now (Hypercorn would wait out the keep-alive
                    # timeout, holding the connection's task and its place under the cap).
                    await self._ended().wait()
                    scope.cancel()

                tg.start_soon(on_shutdown)
                tg.start_soon(on_closed)
                await self._until_idle_ends()
                scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._initiate_server_close()

    async def _until_idle_ends(self) -> None:
        config = self.config
        header_s = config.header_timeout_s if isinstance(config, ServerConfig) else None
        watched = getattr(self, "_watched", None)
        h2 = type(getattr(watched, "protocol", None)).__name__ == "H2Protocol"
        served = getattr(self, "_served", False)
        self._served = True
        if header_s is None or h2:
            await anyio.sleep(config.keep_alive_timeout)
            return
        if served:  # kept alive: wait for the next request to begin
            self._arrival = anyio.Event()
            with anyio.move_on_after(config.keep_alive_timeout):
                await self._arrival.wait()
            if not self._arrival.is_set():
                return
        await anyio.sleep(header_s)


class _Watched:
    """Hypercorn's protocol object, telling the connection when request bytes arrive."""

    def __init__(self, inner: Any, connection: _Limited) -> None:
        self._inner = inner
        self._connection = connection

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData) and event.data:
            self._connection.data_arrived()
        await self._inner.handle(event)
        if isinstance(event, Closed):
            self._connection._ended().set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def guarded_trio_server(base: type[Any]) -> type[Any]:
    """``base`` (Hypercorn's Trio ``TCPServer``) with the two guards of this module."""
    import trio

    class GuardedTrioTCPServer(_Limited, base):  # type: ignore[misc]
        async def protocol_send(self, event: Event) -> None:
            try:
                await super().protocol_send(event)
            except trio.BusyResourceError:
                # send_eof() holds the send side: the connection is being closed.
                await self.protocol.handle(Closed())

        async def run(self) -> None:
            await _contained(self._run_limited(super().run))

        async def _read_data(self) -> None:
            if self.config.read_timeout is not None:
                await super()._read_data()
                return
            # Without a read timeout Hypercorn still puts each read under a deadline (an
            # infinite one): a cancel scope that every idle connection (thousands of
            # WebSockets) would hold. The same loop without it.
            while True:
                try:
                    data = await self.stream.receive_some(READ_CHUNK)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                await self.protocol.handle(RawData(bytes(data)))
                if data == b"":
                    break
            await self.protocol.handle(Closed())

        async def _refuse(self, answer: bytes) -> None:
            stream = self.stream
            try:
                with anyio.move_on_after(REFUSE_LINGER_S):
                    await stream.send_all(answer)
                    await stream.send_eof()
                    while await stream.receive_some(MAX_LINGER_READ):
                        pass  # the client's request, read so that closing is no reset
            except (trio.BrokenResourceError, trio.ClosedResourceError, AttributeError, OSError):
                pass
            finally:
                await stream.aclose()

    return GuardedTrioTCPServer


def guarded_asyncio_server(base: type[Any]) -> type[Any]:
    """``base`` (Hypercorn's asyncio ``TCPServer``) with the containment guard."""

    class GuardedAsyncioTCPServer(_Limited, base):  # type: ignore[misc]
        async def run(self) -> None:
            await _contained(self._run_limited(super().run))

        async def _refuse(self, answer: bytes) -> None:
            try:
                with anyio.move_on_after(REFUSE_LINGER_S):
                    self.writer.write(answer)
                    await self.writer.drain()
                    self.writer.write_eof()
                    while await self.reader.read(MAX_LINGER_READ):
                        pass  # the client's request, read so that closing is no reset
            except (OSError, RuntimeError):
                pass
            finally:
                self.writer.close()
                with contextlib.suppress(OSError, RuntimeError):
                    await self.writer.wait_closed()

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
