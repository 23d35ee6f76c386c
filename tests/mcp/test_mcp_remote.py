"""/mcp through ``mcp-remote`` (the stdio bridge desktop MCP hosts run for remote servers,
from npm) against a live ``pushgo serve``: the test is the host, speaking JSON-RPC over the
bridge's stdin/stdout (initialize, tools/list, tools/call) while the bridge speaks Streamable
HTTP to pushgo.

- legacy mode: the gateway token goes in ``--header "Authorization: Bearer …"``; the send
  tools are listed and a message sent with the channel password reaches a private device;
- OAuth mode: the bridge discovers the authorization server, registers, and opens the
  authorize URL with the browser command in ``$BROWSER`` (its opener runs xdg-open, which
  honours it); that command only records the URL, and the test fills in the bind page with
  httpx and follows the redirect to the bridge's loopback callback, as a browser would. The
  message then goes out without any password.

mcp-remote and Node 22 come from scripts/mcp-node-tools.sh (``mcp-remote``); see node_tools."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.mcp.node_tools import Live, live_gateway, node_env, node_tools
from tests.mcp_helpers import LEGACY_TOOLS

pytestmark = pytest.mark.slow

TOKEN = "gw-token-for-mcp-remote"
DEADLINE = 30.0
CHANNEL_TOOLS = {"pushgo.channel.list", "pushgo.channel.bind.start", "pushgo.channel.bind.status",
                 "pushgo.channel.unbind"}
BROWSER = "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{log}'\n"


class Bridge:
    """``mcp-remote URL …`` as a child process; one JSON-RPC line in, one line out."""

    def __init__(self, argv: list[str], env: dict[str, str], stderr: Path) -> None:
        self._err = stderr.open("w")
        self.stderr = stderr
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        self._next_id = 0

    def _read(self, out: IO[str]) -> None:
        for line in out:
            self._lines.put(line)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request; the response with its id (notifications in between are skipped)."""
        self._next_id += 1
        self.send({"id": self._next_id, "method": method, "params": params})
        end = time.monotonic() + DEADLINE
        while (left := end - time.monotonic()) > 0:
            try:
                doc = json.loads(self._lines.get(timeout=left))
            except queue.Empty:
                break
            if doc.get("id") == self._next_id:
                return doc  # type: ignore[no-any-return]
        raise AssertionError(f"no answer to {method}: {self.log()}")

    def initialize(self) -> dict[str, Any]:
        answer = self.request("initialize", {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "pushgo-tests", "version": "1"}})
        self.send({"method": "notifications/initialized"})
        return answer["result"]  # type: ignore[no-any-return]

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:]

    def close(self) -> int:
        """End of stdin ends the bridge; its exit status."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._err.close()


@pytest.fixture(scope="module")
def mcp_remote() -> tuple[str, str]:
    """(mcp-remote executable, directory of Node 22 or "")."""
    tools = node_tools("mcp-remote", "PUSHGO_MCP_REMOTE")
    return tools["PUSHGO_MCP_REMOTE"], tools["PUSHGO_NODE_BIN"]


@pytest.fixture
def bridge_env(mcp_remote: tuple[str, str], tmp_path: Path) -> dict[str, str]:
    """mcp-remote keeps its OAuth state under MCP_REMOTE_CONFIG_DIR: one per test."""
    (tmp_path / "mcp-auth").mkdir()
    return node_env(mcp_remote[1], tmp_path, MCP_REMOTE_CONFIG_DIR=str(tmp_path / "mcp-auth"))


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_gateway(tmp_path_factory.mktemp("mcp-remote-legacy"), TOKEN, "legacy") as live:
        yield live


@pytest.fixture(scope="module")
def oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_gateway(tmp_path_factory.mktemp("mcp-remote-oauth"), TOKEN, "oauth") as live:
        yield live


def _send(bridge: Bridge, arguments: dict[str, Any]) -> dict[str, Any]:
    answer = bridge.request("tools/call", {"name": "pushgo.message.send",
                                           "arguments": arguments})
    result: dict[str, Any] = answer["result"]
    assert result.get("isError") is not True, result
    return result["structuredContent"]  # type: ignore[no-any-return]


def test_mcp_remote_with_the_gateway_token_sends_to_the_private_device(
        mcp_remote: tuple[str, str], bridge_env: dict[str, str], legacy: Live,
        tmp_path: Path) -> None:
    bridge = Bridge([mcp_remote[0], legacy.url, "--transport", "http-only", "--allow-http",
                     "--header", f"Authorization: Bearer {TOKEN}"],
                    bridge_env, tmp_path / "mcp-remote.log")
    try:
        init = bridge.initialize()
        assert init["serverInfo"]["name"] == "pushgo"
        tools = {t["name"]: t for t in bridge.request("tools/list", {})["result"]["tools"]}
        assert set(tools) == LEGACY_TOOLS
        assert "password" in tools["pushgo.message.send"]["inputSchema"]["required"]
        out = _send(bridge, {"channel_id": legacy.channel_id, "password": PASSWORD,
                             "title": "hello through mcp-remote", "body": "stdio bridge"})
        wrong = bridge.request("tools/call", {"name": "pushgo.message.send", "arguments": {
            "channel_id": legacy.channel_id, "password": "not-the-password", "title": "x"}})
    finally:
        assert bridge.close() == 0, bridge.log()
    assert out["channel_id"] == legacy.channel_id and out["accepted"] is True
    assert legacy.titles_of(out["message_id"]) == ["hello through mcp-remote"]
    assert wrong["result"]["isError"] is True
    assert wrong["result"]["structuredContent"]["error_code"] == "password_mismatch"


def _opened_url(log: Path, bridge: Bridge) -> str:
    """The URL mcp-remote handed to the browser command."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if log.exists() and (text := log.read_text().strip()):
            return text.splitlines()[0]
        assert bridge.proc.poll() is None, bridge.log()
        time.sleep(0.05)
    raise AssertionError("mcp-remote opened no browser: " + bridge.log())


def _consent(url: str, channel_id: str) -> None:
    """What the user does in the browser: fill in the bind page with the channel and its
    password, approve, and land on the bridge's callback."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        form = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert form is not None, page.text
        fields = re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
        data = [*fields, ("channel_id", channel_id), ("password", PASSWORD),
                ("decision", "approve")]
        answer = browser.post(urljoin(url, form.group(1)), content=urlencode(data),
                              headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 303, answer.text
        callback = answer.headers["location"]
        assert urlsplit(callback).hostname in ("127.0.0.1", "localhost"), callback
        assert browser.get(callback).status_code == 200


def test_mcp_remote_completes_the_oauth_flow_and_sends_without_a_password(
        mcp_remote: tuple[str, str], bridge_env: dict[str, str], oauth: Live,
        tmp_path: Path) -> None:
    opened = tmp_path / "browser-opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(BROWSER.format(log=opened))
    browser.chmod(0o755)
    env = {**bridge_env, "BROWSER": str(browser)}
    for var in ("DISPLAY", "WAYLAND_DISPLAY"):  # no desktop: xdg-open goes to $BROWSER
        env.pop(var, None)
    bridge = Bridge([mcp_remote[0], oauth.url, "--transport", "http-only", "--allow-http",
                     "--host", "127.0.0.1", "--auth-timeout", "30"],
                    env, tmp_path / "mcp-remote.log")
    try:
        url = _opened_url(opened, bridge)
        assert url.startswith(oauth.url.removesuffix("/mcp") + "/oauth/authorize?"), url
        _consent(url, oauth.channel_id)
        bridge.initialize()
        tools = {t["name"]: t for t in bridge.request("tools/list", {})["result"]["tools"]}
        assert set(tools) == LEGACY_TOOLS | CHANNEL_TOOLS
        assert "password" not in tools["pushgo.message.send"]["inputSchema"]["properties"]
        out = _send(bridge, {"channel_id": oauth.channel_id, "title": "signed in via mcp-remote"})
        listed = bridge.request("tools/call", {"name": "pushgo.channel.list", "arguments": {}})
    finally:
        assert bridge.close() == 0, bridge.log()
    assert oauth.titles_of(out["message_id"]) == ["signed in via mcp-remote"]
    channels = listed["result"]["structuredContent"]["channels"]
    assert [c["channel_id"] for c in channels] == [oauth.channel_id]  # the one it was bound to
