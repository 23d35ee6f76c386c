"""/mcp driven by the MCP Inspector CLI (``@modelcontextprotocol/inspector`` from npm, run as
``mcp-inspector --cli``) against a live ``pushgo serve`` in legacy mode over Streamable HTTP,
in both protocol eras (``--protocol-era legacy`` and ``modern``, the 2026-07-28 wire): it
lists the tools, sends a message that reaches a private-route device, and a wrong password
comes back as an ``isError`` result with ``password_mismatch``.

The Inspector and a Node >= 22.19 come from scripts/mcp-node-tools.sh: .ci/run runs it and
exports ``PUSHGO_MCP_INSPECTOR`` (and ``PUSHGO_NODE_BIN``); without them this module runs the
script itself (cached under ~/.cache), and skips when npm is unavailable, except under
``CI=true``, where a missing Inspector is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.helpers import PASSWORD
from tests.mcp.node_tools import Live, live_gateway
from tests.mcp_helpers import LEGACY_TOOLS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "gw-token-for-the-inspector"
ERAS = ["legacy", "modern"]
EXIT_TOOL_IS_ERROR = 5


@dataclass(frozen=True)
class Inspector:
    executable: str
    env: dict[str, str]

    def run(self, url: str, era: str, *args: str) -> tuple[int, dict[str, Any]]:
        """Exit status and the JSON document the CLI printed on stdout."""
        proc = subprocess.run(
            [self.executable, "--cli", url, "--transport", "http", "--protocol-era", era,
             "--header", f"Authorization: Bearer {TOKEN}", "--stored-auth-only",
             "--format", "json", "--connect-timeout", "10000", *args],
            env=self.env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.stdout.strip(), (proc.returncode, proc.stderr[-2000:])
        return proc.returncode, json.loads(proc.stdout)


def _tools() -> tuple[str, str]:
    """(inspector executable, directory of a recent enough node, or "")."""
    inspector = os.environ.get("PUSHGO_MCP_INSPECTOR")
    if inspector and Path(inspector).exists():
        return inspector, os.environ.get("PUSHGO_NODE_BIN", "")
    reason = "the MCP Inspector CLI is not installed (PUSHGO_MCP_INSPECTOR)"
    if shutil.which("npm") is None:
        if IN_CI:
            pytest.fail(reason + " and npm is unavailable: .ci/run installs it")
        pytest.skip(reason + " and npm is unavailable to install it")
    out = subprocess.run([str(ROOT / "scripts" / "mcp-node-tools.sh"), "inspector"],
                         capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        pytest.fail(f"scripts/mcp-node-tools.sh inspector failed: {out.stderr[-2000:]}")
    values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return values["PUSHGO_MCP_INSPECTOR"], values.get("PUSHGO_NODE_BIN", "")


@pytest.fixture(scope="module")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> Inspector:
    executable, node_bin = _tools()
    home = tmp_path_factory.mktemp("inspector-home")  # its catalog and auth store
    env = {**os.environ, "HOME": str(home), "NO_COLOR": "1"}
    if node_bin:
        env["PATH"] = node_bin + os.pathsep + env.get("PATH", "")
    return Inspector(executable, env)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One ``pushgo serve`` (legacy MCP mode, gateway token) for the module, with a device on
    the private route subscribed to a channel."""
    with live_gateway(tmp_path_factory.mktemp("inspector-serve"), TOKEN, "legacy") as served:
        yield served


def _is_modern(result: dict[str, Any]) -> bool:
    """2026-07-28 results carry the server identity in ``_meta``; initialize-era ones not."""
    return "io.modelcontextprotocol/serverInfo" in (result.get("_meta") or {})


@pytest.mark.parametrize("era", ERAS)
def test_the_inspector_lists_the_eight_send_tools_in_legacy_mode(inspector, live, era):
    status, doc = inspector.run(live.url, era, "--method", "tools/list")
    assert status == 0, doc
    tools = doc["result"]["tools"]
    assert {t["name"] for t in tools} == LEGACY_TOOLS
    send = next(t for t in tools if t["name"] == "pushgo.message.send")
    assert send["inputSchema"]["additionalProperties"] is False
    assert "password" in send["inputSchema"]["required"]


@pytest.mark.parametrize("era", ERAS)
def test_a_message_sent_by_the_inspector_reaches_the_private_device(inspector, live, era):
    title = f"inspector says hello ({era})"
    status, doc = inspector.run(
        live.url, era, "--method", "tools/call", "--tool-name", "pushgo.message.send",
        "--tool-args-json", json.dumps({"channel_id": live.channel_id, "password": PASSWORD,
                                        "title": title, "body": "from the MCP Inspector"}))
    assert status == 0, doc
    result = doc["result"]
    assert result["isError"] is False
    assert _is_modern(result) == (era == "modern")
    out = result["structuredContent"]
    assert out["channel_id"] == live.channel_id and out["accepted"] is True
    items = [i for i in live.pull() if i["payload"]["message_id"] == out["message_id"]]
    assert [i["payload"]["title"] for i in items] == [title]


@pytest.mark.parametrize("era", ERAS)
def test_a_wrong_password_through_the_inspector_is_password_mismatch(inspector, live, era):
    status, doc = inspector.run(
        live.url, era, "--method", "tools/call", "--tool-name", "pushgo.message.send",
        "--tool-args-json", json.dumps({"channel_id": live.channel_id,
                                        "password": "not-the-password", "title": "x"}))
    assert status == EXIT_TOOL_IS_ERROR, doc
    result = doc["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error_code"] == "password_mismatch"
    assert json.loads(result["content"][0]["text"])["error_code"] == "password_mismatch"
