"""A store outage while an OAuth caller's grants are read is an error on the wire — a JSON-RPC
error for the resources, an ``isError`` result for the channel tool — never an empty list of
channels that would look like "nothing is bound"."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from pushgo.app import Gateway
from pushgo.errors import StoreUnavailable
from pushgo.mcp import dispatcher as mcp_dispatch
from pushgo.mcp.auth import Principal
from pushgo.protocol import jsonrpc
from pushgo.protocol import oauth as oauth_wire
from tests.mcp_helpers import sqlite_db_url  # noqa: F401
from tests.oauth_helpers import clock_fixture, oauth_gateway, oauth_settings  # noqa: F401

CALLER = Principal("oauth:pgg-test", oauth=True, subject="pgg-test",
                   scopes=frozenset(oauth_wire.SCOPES))


async def _dispatch(gateway: Gateway, method: str, params: dict[str, Any]) -> mcp_dispatch.Outcome:
    assert gateway.mcp is not None
    call = mcp_dispatch.Call(jsonrpc.Request(1, method, msgspec.Raw(json.dumps(params).encode())), CALLER,
                  modern=False, protocol_version="2025-11-25")
    return await gateway.mcp.dispatcher.dispatch(call)


@pytest.fixture
def store_down(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(*_a: Any, **_k: Any) -> Any:
        raise StoreUnavailable(message="store down")

    monkeypatch.setattr(gateway.services.oauth, "granted_channels", down)


async def test_granted_channels_read_as_an_empty_list_while_the_store_answers(gateway):
    out = await _dispatch(gateway, "resources/read", {"uri": "pushgo://channels"})
    doc = json.loads(out.body)
    assert out.error_code is None
    assert json.loads(doc["result"]["contents"][0]["text"]) == {"channels": []}


@pytest.mark.parametrize(("method", "params"), [
    ("resources/read", {"uri": "pushgo://channels"}),
    ("resources/read", {"uri": "pushgo://operations/0123456789abcdef0123456789abcdef"}),
    ("resources/list", {}),
])
async def test_a_store_outage_is_a_json_rpc_error_not_an_empty_list(gateway, store_down,
                                                                    method, params):
    out = await _dispatch(gateway, method, params)
    doc = json.loads(out.body)
    assert "result" not in doc
    assert out.error_code == jsonrpc.INTERNAL_ERROR
    assert doc["error"]["data"] == {"error_code": "store_unavailable"}


async def test_a_store_outage_is_an_error_result_of_the_channel_list_tool(gateway, store_down):
    out = await _dispatch(gateway, "tools/call", {"name": "pushgo.channel.list",
                                                  "arguments": {}})
    result = json.loads(out.body)["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error_code"] == "store_unavailable"
