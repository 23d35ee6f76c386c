"""The HTTP/1.1 side of the test server (h11), for clients that negotiate `http/1.1` over ALPN
(e.g. an OAuth token request made with a plain HTTP/1.1 client).

Owns the keep-alive request loop only; requests go through the same handler, records and
connection rules as HTTP/2. Imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.abc
import h11

from pushgo.testing.exchange import (
    IO_ERRORS,
    READ_SIZE,
    ConnectionInfo,
    Delay,
    Drop,
    GoAway,
    Request,
    Response,
    Silence,
    abort_socket,
    header_text,
)

if TYPE_CHECKING:
    from pushgo.testing.h2server import H2Server


async def serve_http11(server: H2Server, stream: anyio.abc.ByteStream, info: ConnectionInfo) -> None:
    """Keep-alive loop, one request at a time. A stream-level outcome (RST_STREAM, drop) closes
    the connection; GOAWAY becomes its response (if any) with `connection: close`."""
    conn = h11.Connection(h11.SERVER)
    while True:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive(READ_SIZE)
                except IO_ERRORS:
                    data = b""
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                break
            else:  # ConnectionClosed, PAUSED
                return
        info.requests += 1
        rule = server._rule_for(info.requests)
        if isinstance(rule, Silence):
            info.silenced = True
            await anyio.sleep_forever()  # neither reads nor answers; the server's exit ends it
        if isinstance(rule, Drop):
            if rule.reset:
                abort_socket(stream)
            return
        headers = tuple((header_text(k), header_text(v)) for k, v in head.headers)
        request = Request(
            connection_id=info.id, stream_id=info.requests, index=server._next_index(),
            sequence=info.requests,
            http_version="1.1", method=header_text(head.method), path=header_text(head.target),
            authority=next((v for k, v in headers if k == "host"), ""), headers=headers, body=bytes(body),
        )
        server.requests.append(request)
        outcome = await server._call(request)
        while isinstance(outcome, Delay):
            await anyio.sleep(outcome.seconds)
            outcome = outcome.then
        if isinstance(rule, GoAway) and isinstance(outcome, Response):
            outcome = GoAway(response=outcome)
        response = outcome.response if isinstance(outcome, GoAway) else outcome
        if not isinstance(response, Response):
            if isinstance(outcome, Drop) and outcome.reset:
                abort_socket(stream)
            return
        close = not isinstance(outcome, Response)
        fields = [*response.headers, ("content-length", str(len(response.body)))]
        if close:
            fields.append(("connection", "close"))
        out = conn.send(h11.Response(status_code=response.status, headers=fields)) or b""
        if response.body:
            out += conn.send(h11.Data(data=response.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send(out)
        info.responses += 1
        if close or conn.our_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return
