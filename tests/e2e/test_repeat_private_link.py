"""A warp-link Ack frame (the PushGo apps' private mode, over WSS on a real Hypercorn server)
is an acknowledgement of a repeating send: its receipt names the private link."""

from __future__ import annotations

import httpx

from pushgo.protocol.ids import redact
from pushgo.testing.warplink_client import connect
from tests.e2e.test_private_link_wss import (  # noqa: F401 - fixtures
    base,
    deliver,
    http,
    private_device,
    settle,
    welcomed,
    ws_url,
)
from tests.helpers import call, send


async def test_an_ack_frame_stops_the_repeats(base: str, http: httpx.AsyncClient) -> None:  # noqa: F811
    key, cid = await private_device(http)
    async with connect(ws_url(base)) as client:
        await welcomed(client, key)
        await send(http, cid, title="paging", op_id="link-page",
                   repeat={"every_s": 300, "max": 5})
        frame, data = await deliver(client)
        assert (data["op_id"], data["receipt"]) == ("link-page", "/receipts/ack")
        assert (await call(http, "/receipts/link-page"))["acknowledged"] is False
        await client.ack(frame)
        await settle(client)
    receipt = await call(http, "/receipts/link-page")
    assert (receipt["acked_by"], receipt["acked_via"]) == (redact(key), "private_link")
    assert (receipt["stopped_reason"], receipt["next_send_at"]) == ("acked", None)
