"""The high-volume routes: ``POST /messages/bulk`` and delivery status
(``GET /deliveries/{op_id}``, ``GET /deliveries/{op_id}/stream``).

The bulk route is a plain ASGI app, not a request/response handler: it reads the body while
it answers (Starlette's streaming response would take the body's messages as disconnect
probes), one chunk at a time, through an incremental splitter, so no request is ever held
whole. ``Content-Encoding: gzip`` bodies are inflated in bounded steps.

Thin: framing and HTTP here, the work in pushgo.service.bulk and pushgo.service.status.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from pushgo.api.envelope import TOKEN_QUERY, is_json_type, ok
from pushgo.api.spool import Spool
from pushgo.errors import GatewayError, InvalidInput, codes
from pushgo.protocol import bulk as bulk_wire
from pushgo.protocol import fields as field_rules
from pushgo.protocol.sse import encode_comment, encode_event
from pushgo.service.bulk import Bulk
from pushgo.service.status import Status

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines"})
#: Largest piece a gzip body inflates to at once (a small body may not become a huge buffer).
INFLATE_STEP = 64 * 1024


def unsupported(message: str) -> GatewayError:
    return GatewayError(codes.UNSUPPORTED_MEDIA_TYPE, message)


class BulkEndpoint:
    def __init__(self, bulk: Bulk) -> None:
        self.bulk = bulk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        mime = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        splitter: bulk_wire.LineSplitter | bulk_wire.ArraySplitter
        if mime in NDJSON_TYPES:
            splitter = bulk_wire.LineSplitter()
        elif is_json_type(mime):
            splitter = bulk_wire.ArraySplitter()
        else:
            raise unsupported("send NDJSON (content-type: application/x-ndjson) or a JSON "
                              "array (content-type: application/json)")
        encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise unsupported("content-encoding must be gzip or absent")
        inflate = zlib.decompressobj(wbits=31) if encoding == "gzip" else None

        async def frames() -> AsyncIterator[list[bulk_wire.Frame]]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # nobody will read the answer: stop taking work
                body: bytes = message.get("body", b"")
                for piece in _inflated(inflate, body):
                    split = list(splitter.feed(piece))
                    if split:
                        yield split
                if not message.get("more_body", False):
                    break
            if inflate is not None and not inflate.eof:
                yield [bulk_wire.Broken("the gzip body ends early")]
                return
            yield list(splitter.end())

        spool = Spool()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no")]})

        async def pump() -> None:
            async for chunk in spool.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            try:
                await self.bulk.run(_guarded(frames()), spool.add)
            finally:
                spool.close()


async def _guarded(frames: AsyncIterator[list[bulk_wire.Frame]]) -> AsyncIterator[list[bulk_wire.Frame]]:
    """A body that cannot be inflated ends the split like a broken array."""
    try:
        async for piece in frames:
            yield piece
    except zlib.error:
        yield [bulk_wire.Broken("the body is not valid gzip")]


def _inflated(inflate: zlib._Decompress | None, data: bytes) -> list[bytes]:
    if inflate is None:
        return [data] if data else []
    out = []
    while data:
        piece = inflate.decompress(data, INFLATE_STEP)
        if piece:
            out.append(piece)
        data = inflate.unconsumed_tail
    return out


def channel_filter(request: Request) -> list[str] | None:
    channel: str | None = None
    for key, value in request.query_params.multi_items():
        if key == TOKEN_QUERY:  # the gateway token's fallback, checked by the front door
            continue
        if key != "channel_id":
            raise InvalidInput(codes.INVALID_QUERY, f"unknown query parameter {key!r}")
        channel = value
    return None if channel is None or not channel.strip() else [field_rules.channel_id(channel)]


def build_bulk_routes(bulk: Bulk, status: Status) -> list[BaseRoute]:
    async def get_status(request: Request) -> Response:
        channels = channel_filter(request)
        return ok(await status.get(request.path_params["op_id"], channel_ids=channels))

    async def stream_status(request: Request) -> Response:
        op_id = request.path_params["op_id"]
        channels = channel_filter(request)
        await status.get(op_id, channel_ids=channels)  # 404 before the stream starts

        async def events() -> AsyncIterator[bytes]:
            yield encode_comment("pushgo delivery status")
            async for doc in status.watch(op_id, channel_ids=channels):
                if doc is None:
                    yield encode_comment("keep-alive")
                else:
                    yield encode_event(json.dumps(doc, separators=(",", ":")).encode())

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache",
                                          "x-accel-buffering": "no"})

    return [
        Route("/messages/bulk", BulkEndpoint(bulk), methods=["POST"]),
        Route("/deliveries/{op_id}", get_status, methods=["GET"]),
        Route("/deliveries/{op_id}/stream", stream_status, methods=["GET"]),
    ]
