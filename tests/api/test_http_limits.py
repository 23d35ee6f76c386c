"""The HTTP connection's limits, through a real Hypercorn server configured as ``pushgo serve``
configures it, with raw sockets: the header deadline, the body deadline (408), the connection
cap (503 with Retry-After), keep-alive after an early answer, and a client that goes away in
the middle of its body (499, not 500).

The deadlines are set low (0.5 s) so that the tests stay short; they assert what happens,
never how long it took.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from pushgo.app import Gateway
from tests.helpers import eventually
from tests.live import hypercorn_server

TOKEN = "http-limits-token"
AUTH = f"authorization: Bearer {TOKEN}\r\n"
MAX_CONNECTIONS = 4
#: Between two bytes of a slow client: well under any deadline, so only their sum counts.
TRICKLE_S = 0.05


@pytest.fixture
def db_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/pushgo.db"  # the connection's limits, not the store's


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"token": TOKEN, "http_header_timeout_s": 0.5, "http_body_timeout_s": 0.5,
            "http_max_connections": MAX_CONNECTIONS}


@pytest.fixture
async def port(gateway: Gateway) -> AsyncIterator[int]:
    async with hypercorn_server(gateway) as base:
        yield int(base.rsplit(":", 1)[1])


class Conn:
    """One raw HTTP/1.1 connection: write bytes, read whole answers."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _more(self) -> bool:
        try:
            chunk = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return False
        self.buffer += chunk
        return True

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next whole answer (Content-Length framed or chunked)."""
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in self.buffer:
                if not await self._more():
                    raise ConnectionError(f"closed before an answer: {self.buffer!r}")
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in lines[1:])}
            if headers.get("transfer-encoding") == "chunked":
                return status, headers, await self._chunks()
            length = int(headers.get("content-length", "0"))
            await self._at_least(length)
            body, self.buffer = self.buffer[:length], self.buffer[length:]
            return status, headers, body

    async def _at_least(self, n: int) -> None:
        while len(self.buffer) < n:
            if not await self._more():
                raise ConnectionError("closed in the middle of an answer")

    async def _chunks(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                await self._at_least(len(self.buffer) + 1)
            size_line, _, self.buffer = self.buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            await self._at_least(size + 2)
            body, self.buffer = body + self.buffer[:size], self.buffer[size + 2:]
            if size == 0:
                return body

    async def closed(self) -> bool:
        """True once the server has closed the connection (nothing more to read)."""
        with anyio.fail_after(10):
            while await self._more():
                pass
        return True


async def connect(port: int) -> Conn:
    return Conn(await anyio.connect_tcp("127.0.0.1", port))


def request(method: str, path: str, body: bytes = b"", *, auth: bool = True,
            ctype: str = "application/json", length: int | None = None) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nhost: pushgo.test\r\n{AUTH if auth else ''}"
            f"content-type: {ctype}\r\ncontent-length: {len(body) if length is None else length}"
            "\r\n\r\n")
    return head.encode() + body


async def test_a_client_slower_than_the_header_deadline_is_disconnected(port):
    conn = await connect(port)
    closed = False
    with anyio.fail_after(20):
        await conn.send(b"GET /healthz HTTP/1.1\r\nhost: pushgo.test\r\nx-slow: ")
        while not closed:  # one byte at a time, never ending the headers
            try:
                await conn.send(b"a")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                closed = True
                break
            await anyio.sleep(TRICKLE_S)
            with anyio.move_on_after(0):
                closed = not await conn._more()
    assert closed and b"200" not in conn.buffer
    # A client that sends its headers at once is served as before.
    fresh = await connect(port)
    await fresh.send(request("GET", "/healthz"))
    assert (await fresh.answer())[0] == 200


async def test_a_body_slower_than_the_body_deadline_gets_408_and_the_connection_closes(port):
    conn = await connect(port)
    body = json.dumps({"channel_id": "x", "title": "slow"}).encode()
    await conn.send(request("POST", "/message", length=len(body) + 1000))
    status = 0
    with anyio.fail_after(20):
        for byte in body * 100:  # far more than the deadline lets through
            try:
                await conn.send(bytes([byte]))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                break
            await anyio.sleep(TRICKLE_S)
            if b"\r\n\r\n" in conn.buffer:
                break
            with anyio.move_on_after(0):
                await conn._more()
    status, headers, raw = await conn.answer()
    assert status == 408
    assert json.loads(raw)["error_code"] == "request_timeout"
    assert headers.get("connection") == "close"
    assert await conn.closed()


async def admitted(port: int) -> Conn | None:
    """A connection that was served (so it is counted), or None if it was refused."""
    conn = await connect(port)
    await conn.send(request("GET", "/healthz"))
    if (await conn.answer())[0] == 200:
        return conn
    await conn.stream.aclose()
    return None


async def test_connections_past_the_cap_get_503_while_open_ones_still_work(port):
    # The server's own start-up probe may not be closed on its side yet: retry until in.
    open_ones: list[Conn] = []
    for _ in range(MAX_CONNECTIONS):
        conn = await eventually(lambda: admitted(port))
        assert conn is not None
        open_ones.append(conn)
    extra = await connect(port)
    await extra.send(request("GET", "/healthz"))
    status, headers, raw = await extra.answer()
    assert status == 503 and int(headers["retry-after"]) >= 1
    assert json.loads(raw)["error_code"] == "server_busy"
    assert await extra.closed()
    for conn in open_ones:  # not starved
        await conn.send(request("GET", "/healthz"))
        assert (await conn.answer())[0] == 200
    await open_ones.pop().stream.aclose()
    assert await eventually(lambda: admitted(port))  # a place freed is a place taken


async def test_keep_alive_goes_on_after_answers_given_before_the_body_was_read(port):
    conn = await connect(port)
    payload = json.dumps({"channel_id": "x", "title": "t" * 2000}).encode()
    early = [
        request("POST", "/message", payload, auth=False),  # 401 at the front door
        request("POST", "/no/such/route", payload),  # 404
        request("POST", "/message", payload, ctype="text/plain"),  # 400 before the body
        request("POST", "/message", b"{" + b" " * 40_000 + b"}"),  # 413 from its length
    ]
    expected = [401, 404, 400, 413]
    for i in range(100):
        raw = early[i % len(early)]
        # Headers and body in two writes: the answer may come before the body is in.
        await conn.send(raw[:200])
        await conn.send(raw[200:])
        status, headers, _ = await conn.answer()
        assert status == expected[i % len(early)], (i, status)
        assert headers.get("connection") != "close"
        await conn.send(request("GET", "/healthz"))
        assert (await conn.answer())[0] == 200, i


async def test_a_large_unread_body_is_answered_with_connection_close(port):
    conn = await connect(port)
    await conn.send(request("POST", "/message", b"{", length=10_000_000))
    status, headers, _ = await conn.answer()
    assert (status, headers.get("connection")) == (413, "close")
    assert await conn.closed()


async def test_a_client_gone_in_the_middle_of_its_body_counts_as_499_not_500(port):
    for path in ("/message", "/channel/subscribe", "/messages/bulk"):
        conn = await connect(port)
        await conn.send(request("POST", path, b'{"channel_id": "', length=5000))
        await anyio.sleep(TRICKLE_S)  # the gateway is now reading the body
        await conn.stream.aclose()
    base = f"http://127.0.0.1:{port}"

    async def counted() -> dict[tuple[str, str], float]:
        async with httpx.AsyncClient() as client:
            resp = await client.get(base + "/metrics",
                                    headers={"authorization": f"Bearer {TOKEN}"})
        found = {}
        for route, status, value in re.findall(
                r'pushgo_http_requests_total\{method="POST",route="([^"]+)",status="(\d+)"\}'
                r" ([0-9.e+]+)", resp.text):
            found[(route, status)] = float(value)
        return found if len(found) >= 3 else {}

    found = await eventually(counted)
    assert found == {("/message", "499"): 1.0, ("/channel/subscribe", "499"): 1.0,
                     ("/messages/bulk", "499"): 1.0}
