"""``pushgo serve`` stopping (SIGTERM) with a warp-link session open over WSS: the app is told
GoAway ``shutdown`` before the server closes the connection, and the process exits 0."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import anyio.to_thread
import httpx

from pushgo.protocol import warplink as W
from pushgo.testing.warplink_client import connect
from tests.e2e.test_private_link_wss import private_device, welcomed, ws_url
from tests.live import ServerProcess


async def test_sigterm_sends_goaway_shutdown_to_a_wss_session(tmp_path: Path) -> None:
    srv = ServerProcess({"PUSHGO_DB_URL": f"sqlite:///{tmp_path}/pushgo.db",
                         "PUSHGO_TOKEN_SERVICE_URL": "off"}, str(tmp_path / "serve.log"))
    await anyio.to_thread.run_sync(srv.start)
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
            key, _cid = await private_device(http)
        async with connect(ws_url(srv.url)) as client:
            await welcomed(client, key)
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                assert await client.next_frame() == W.GoAway("shutdown")
        assert await anyio.to_thread.run_sync(srv.proc.wait, 15) == 0
        assert "reason=shutdown" in srv.log()
    finally:
        srv.stop()
