"""The warp-link QUIC link's reads: a read cancelled just as a frame arrives (the session
cancels its read whenever it has something to send) loses nothing."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pushgo.delivery.private_link.quic import QuicLink, _Peer

pytestmark = pytest.mark.anyio


async def test_a_read_cancelled_as_a_frame_arrives_keeps_the_frame() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](32)
    conn: Any = None  # no QUIC connection is needed to read the queued frames
    peer = _Peer(conn, ("127.0.0.1", 1), send, receive)
    link = QuicLink(peer)
    got: list[bytes] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def read() -> None:
            with scope:
                got.append(await link.receive())

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        send.send_nowait(b"\x0b\x12")  # as the transport queues a frame
        peer.arrived()
        scope.cancel()  # before the reader has run again
    # the cancelled read returned it, or the next one does: never lost
    with anyio.fail_after(5):
        frames = got or [await link.receive()]
    assert frames == [b"\x0b\x12"]
    send.close()
    with pytest.raises(Exception, match="closed"):
        await link.receive()
