"""The mock providers' "silent" fault, driven by a raw h2 client over TLS: a connection that
goes half-open (reads and answers nothing more, PING ACKs included) while new connections are
served normally."""

from __future__ import annotations

import anyio
import pytest
from h2.events import PingAckReceived, StreamEnded

from pushgo.testing.mock_apns import APNsKey, MockAPNs
from pushgo.testing.tls import LocalCA
from tests.helpers import eventually
from tests.testing.test_mock_providers import PAYLOAD, TOKEN, RawH2, has

pytestmark = pytest.mark.anyio


async def test_silent_after_n_answers_nothing_more_on_that_connection_but_serves_new_ones() -> None:
    ca = LocalCA()
    mock = MockAPNs(key=APNsKey.generate(), tls=ca, initial_max_concurrent_streams=100,
                    max_concurrent_streams=100)
    mock.silent_after(1)
    path = f"/3/device/{TOKEN}"
    async with mock.serving():
        raw = await RawH2.connect(mock.host, mock.port, ca)
        first = raw.request(path, PAYLOAD)
        await raw.flush()
        await raw.until(has(StreamEnded, first))
        second = raw.request(path, PAYLOAD)
        raw.h2.ping(b"silent!!")
        await raw.flush()

        async def silenced() -> bool:
            return mock.server.connections[0].silenced

        await eventually(silenced)
        other = await RawH2.connect(mock.host, mock.port, ca)
        third = other.request(path, PAYLOAD)
        other.h2.ping(b"talking!")
        await other.flush()
        await other.until(lambda events: has(StreamEnded, third)(events)
                          and has(PingAckReceived)(events))
        assert other.status(third) == 200
        with anyio.move_on_after(0.1):
            await raw.until_closed()
        assert raw.status(first) == 200 and raw.status(second) is None
        assert not raw.of(PingAckReceived) and not raw.closed
        silent, served = mock.server.connections
        assert (silent.silenced, silent.requests, silent.responses) == (True, 1, 1)
        assert (served.silenced, served.responses) == (False, 1)
        assert [n.connection_id for n in mock.notifications] == [silent.id, served.id]
        await raw.aclose()
        await other.aclose()
