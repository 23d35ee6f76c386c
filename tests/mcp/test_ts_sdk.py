"""/mcp driven by the official TypeScript SDK's client over Streamable HTTP against a live
``pushgo serve`` in legacy mode with the gateway token: v1 (``@modelcontextprotocol/sdk``,
the initialize handshake) and v2 (``@modelcontextprotocol/client``, the initialize handshake
and pinned to the 2026-07-28 wire). tests/mcp/node/ts_sdk_client.mjs connects, lists the
tools, calls one and prints JSON; each run's message must reach the private device.

The SDKs and Node 22 come from scripts/mcp-node-tools.sh (``ts-sdk``); see node_tools."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import PASSWORD
from tests.mcp.node_tools import ROOT, Live, live_gateway, node_env, node_tools
from tests.mcp_helpers import LEGACY_TOOLS

pytestmark = pytest.mark.slow

TOKEN = "gw-token-for-the-ts-sdk"
SCRIPT = ROOT / "tests" / "mcp" / "node" / "ts_sdk_client.mjs"
#: (SDK line, protocol era): v1 speaks only the initialize era.
RUNS = [("v1", "legacy"), ("v2", "legacy"), ("v2", "modern")]


@dataclass(frozen=True)
class TsSdk:
    prefixes: dict[str, str]
    env: dict[str, str]

    def run(self, url: str, line: str, era: str, tool: str,
            arguments: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run(
            ["node", str(SCRIPT), self.prefixes[line], line, url, era, tool,
             json.dumps(arguments)],
            env=self.env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ts_sdk(tmp_path_factory: pytest.TempPathFactory) -> TsSdk:
    tools = node_tools("ts-sdk", "PUSHGO_TS_SDK_V1", "PUSHGO_TS_SDK_V2")
    env = node_env(tools["PUSHGO_NODE_BIN"], tmp_path_factory.mktemp("ts-sdk-home"),
                   MCP_BEARER_TOKEN=TOKEN)
    return TsSdk({"v1": tools["PUSHGO_TS_SDK_V1"], "v2": tools["PUSHGO_TS_SDK_V2"]}, env)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_gateway(tmp_path_factory.mktemp("ts-sdk-serve"), TOKEN, "legacy") as gateway:
        yield gateway


@pytest.mark.parametrize(("line", "era"), RUNS)
def test_the_ts_sdk_lists_the_send_tools_and_its_message_reaches_the_device(
        ts_sdk: TsSdk, live: Live, line: str, era: str) -> None:
    title = f"typescript sdk {line} says hello ({era})"
    doc = ts_sdk.run(live.url, line, era, "pushgo.message.send", {
        "channel_id": live.channel_id, "password": PASSWORD, "title": title,
        "body": "from the TypeScript SDK"})
    assert doc["server"]["name"] == "pushgo"
    if line == "v2":  # v1 has no notion of eras
        assert doc["era"] == era
    tools = {t["name"]: t for t in doc["tools"]}
    assert set(tools) == LEGACY_TOOLS
    assert "password" in tools["pushgo.message.send"]["inputSchema"]["required"]
    result = doc["result"]
    assert result.get("isError") is not True, result
    modern = "io.modelcontextprotocol/serverInfo" in (result.get("_meta") or {})
    assert modern == (era == "modern")
    out = result["structuredContent"]
    assert out["channel_id"] == live.channel_id and out["accepted"] is True
    assert live.titles_of(out["message_id"]) == [title]


@pytest.mark.parametrize(("line", "era"), RUNS)
def test_a_wrong_password_through_the_ts_sdk_is_password_mismatch(
        ts_sdk: TsSdk, live: Live, line: str, era: str) -> None:
    doc = ts_sdk.run(live.url, line, era, "pushgo.message.send", {
        "channel_id": live.channel_id, "password": "not-the-password", "title": "x"})
    result = doc["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error_code"] == "password_mismatch"
    assert live.pull() == []
