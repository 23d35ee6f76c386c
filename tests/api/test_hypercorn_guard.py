"""One connection's failure never ends ``pushgo serve`` (pushgo/hypercorn_guard.py).

- The Trio send race, driven deterministically: ``send_eof()`` holds the stream's send side
  (as Trio's ``SocketStream.send_eof`` does across its checkpoint) while a response is
  written; the write must count as a lost peer, not raise ``BusyResourceError`` out of the
  connection.
- Through the real server: an h2c client that keeps sending a request body after the answer
  (legal HTTP/2) made Hypercorn raise ``KeyError`` in its h2 protocol; on Trio that ended the
  whole process. ``pushgo serve`` must close that one connection, log one line without the
  request's bytes, and keep serving — on Trio and asyncio.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext

from pushgo import hypercorn_guard
from tests.live import ServerProcess

SECRET = "guard-secret-password-1"


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the send race is Trio's (asyncio has no concurrent-send detector)


class EofHoldingStream:
    """A Trio stream whose ``send_eof`` keeps the send side busy until ``release`` is set;
    ``send_all`` meanwhile raises ``BusyResourceError`` as a SocketStream's would."""

    def __init__(self) -> None:
        self.busy = False
        self.eof_started = trio.Event()
        self.release = trio.Event()
        self.sent: list[bytes] = []
        self.closed = False

    async def send_all(self, data: bytes) -> None:
        if self.busy:
            raise trio.BusyResourceError("another task is currently sending data on this "
                                         "SocketStream")
        self.sent.append(data)
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        if self.busy:
            raise trio.BusyResourceError("another task is currently sending data")
        self.busy = True
        try:
            self.eof_started.set()
            await self.release.wait()
        finally:
            self.busy = False

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


class RecordingProtocol:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)


def connection(cls: type[Any]) -> tuple[Any, EofHoldingStream, RecordingProtocol]:
    stream = EofHoldingStream()
    server = cls(None, Config(), WorkerContext(None), {}, stream)
    protocol = RecordingProtocol()
    server.protocol = protocol
    return server, stream, protocol


@pytest.mark.anyio
async def test_a_write_during_send_eof_is_a_lost_peer_not_a_crash() -> None:
    server, stream, protocol = connection(hypercorn_guard.guarded_trio_server(TCPServer))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._close)  # what protocol_send(Closed()) runs
        await stream.eof_started.wait()
        # Unguarded, this raised BusyResourceError out of the connection's task.
        await server.protocol_send(RawData(data=b"HTTP/1.1 200 OK\r\n\r\n"))
        stream.release.set()
    assert any(isinstance(e, Closed) for e in protocol.events)
    assert stream.closed
    # The stream still works for the next send (no lock left held).
    stream.busy = False
    await server.protocol_send(RawData(data=b"x"))
    assert stream.sent == [b"x"]


@pytest.mark.anyio
async def test_other_errors_of_one_connection_are_contained_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    class Failing(TCPServer):
        async def run(self) -> None:
            async with trio.open_nursery() as nursery:  # as Hypercorn's TaskGroup fails
                nursery.start_soon(trio.sleep_forever)
                raise KeyError(f"request bytes {SECRET}")

    server, _stream, _protocol = connection(hypercorn_guard.guarded_trio_server(Failing))
    with caplog.at_level("WARNING", logger="pushgo.http"):
        await server.run()  # returns: contained
    [record] = [r for r in caplog.records if r.name == "pushgo.http"]
    errors = record.fields["errors"]  # type: ignore[attr-defined]
    assert errors and errors[0].startswith("KeyError at ")
    assert SECRET not in json.dumps(errors) and SECRET not in record.getMessage()


@pytest.mark.anyio
async def test_cancellation_still_propagates() -> None:
    class Waiting(TCPServer):
        async def run(self) -> None:
            await trio.sleep_forever()

    server, _stream, _protocol = connection(hypercorn_guard.guarded_trio_server(Waiting))
    with trio.move_on_after(0.05) as scope:
        await server.run()
    assert scope.cancelled_caught


def test_install_is_version_checked_and_idempotent() -> None:
    import hypercorn.asyncio.run as asyncio_run
    import hypercorn.trio.run as trio_run

    assert hypercorn_guard.supported()  # the Hypercorn pushgo depends on is a checked one
    assert hypercorn_guard.install() and hypercorn_guard.install()
    # The name each worker builds its connections from (not a re-export of the module).
    trio_server, asyncio_server = vars(trio_run)["TCPServer"], vars(asyncio_run)["TCPServer"]
    assert trio_server.__name__ == "GuardedTrioTCPServer"
    assert issubclass(trio_server, TCPServer)
    assert asyncio_server.__name__ == "GuardedAsyncioTCPServer"


# -- through pushgo serve ------------------------------------------------------------------


@pytest.fixture(params=["trio", "asyncio"])
def server(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[ServerProcess]:
    srv = ServerProcess({"PUSHGO_DB_URL": f"sqlite:///{tmp_path}/pushgo.db",
                         "PUSHGO_ASYNC_BACKEND": request.param}, str(tmp_path / "server.log"))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def body_after_answer(port: int) -> None:
    """h2c: POST to an unknown route (answered 404 without reading the body), then send the
    body — DATA on a stream whose response has ended."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", "/no-such-route"), (":scheme", "http"),
                          (":authority", "127.0.0.1"), ("content-type", "application/json")])
    sock.sendall(conn.data_to_send())
    answered = False
    while not answered:
        data = sock.recv(65536)
        assert data, "connection closed before the 404"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.StreamEnded):
                answered = True
        sock.sendall(conn.data_to_send())
    conn.send_data(1, json.dumps({"password": SECRET}).encode(), end_stream=True)
    sock.sendall(conn.data_to_send())
    try:
        while sock.recv(65536):  # until the server closes the connection (or keeps it)
            pass
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        sock.close()


def test_pushgo_serve_outlives_a_connection_that_breaks_hypercorn(server: ServerProcess
                                                                   ) -> None:
    for _ in range(2):
        body_after_answer(server.port)
        assert server.proc is not None and server.proc.poll() is None, server.log()
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    log = server.log()
    assert "connection closed after a server error" in log
    assert SECRET not in log
