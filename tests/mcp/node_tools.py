"""Shared pieces of the tests that drive /mcp with Node clients from npm (mcp-remote, the
TypeScript SDK): where the tools are, and a live ``pushgo serve`` with a private device.

The tools come from scripts/mcp-node-tools.sh: .ci/run runs it and exports the variables it
prints (``PUSHGO_NODE_BIN``, ``PUSHGO_MCP_REMOTE``, ``PUSHGO_TS_SDK_V1``, ...); without them
the tests run the script themselves (cached under ~/.cache) and skip when npm is unavailable,
except under ``CI=true``, where a missing tool is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI
from tests.helpers import PASSWORD
from tests.live import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def node_tools(name: str, *variables: str) -> dict[str, str]:
    """The paths in ``variables`` (from the environment, else from
    ``scripts/mcp-node-tools.sh name``), plus ``PUSHGO_NODE_BIN``."""
    values = {v: os.environ.get(v, "") for v in variables}
    if all(values.values()) and all(Path(p).exists() for p in values.values()):
        return {**values, "PUSHGO_NODE_BIN": os.environ.get("PUSHGO_NODE_BIN", "")}
    reason = f"{name} is not installed ({', '.join(variables)})"
    if shutil.which("npm") is None:
        if IN_CI:
            pytest.fail(reason + " and npm is unavailable: .ci/run installs it")
        pytest.skip(reason + " and npm is unavailable to install it")
    out = subprocess.run([str(ROOT / "scripts" / "mcp-node-tools.sh"), name],
                         capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        pytest.fail(f"scripts/mcp-node-tools.sh {name} failed: {out.stderr[-2000:]}")
    printed = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {v: printed[v] for v in (*variables, "PUSHGO_NODE_BIN")}


def node_env(node_bin: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a Node tool: Node 22 first on PATH, a HOME of its own."""
    env = {**os.environ, "HOME": str(home), "NO_COLOR": "1", **extra}
    if node_bin:
        env["PATH"] = node_bin + os.pathsep + env.get("PATH", "")
    return env


def _data(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Live:
    """A running ``pushgo serve``: its /mcp URL, an API client with the gateway token, and a
    device on the private route subscribed to one channel (password ``PASSWORD``)."""

    url: str
    api: httpx.Client
    device_key: str
    channel_id: str

    def pull(self) -> list[dict[str, Any]]:
        resp = self.api.post("/messages/pull", json={"device_key": self.device_key})
        return list(_data(resp)["items"])

    def titles_of(self, message_id: str) -> list[str]:
        """Titles of the pulled messages with this id (each pull drains the queue)."""
        return [i["payload"]["title"] for i in self.pull()
                if i["payload"]["message_id"] == message_id]


@contextmanager
def live_gateway(tmp: Path, token: str, mode: str) -> Iterator[Live]:
    """``pushgo serve`` on SQLite with MCP on in ``mode`` (legacy or oauth)."""
    server = ServerProcess({
        "PUSHGO_DB_URL": f"sqlite:///{tmp}/pushgo.db", "PUSHGO_TOKEN": token,
        "PUSHGO_MCP_ENABLED": "true", "PUSHGO_MCP_AUTH_MODE": mode,
        "PUSHGO_LOG_LEVEL": "warning"}, str(tmp / "server.log"))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10,
                          headers={"authorization": f"Bearer {token}"}) as api:
            key = str(_data(api.post("/device/register",
                                     json={"platform": "android"}))["device_key"])
            _data(api.post("/channel/device", json={"device_key": key,
                                                     "channel_type": "private"}))
            cid = str(_data(api.post("/channel/subscribe", json={
                "device_key": key, "channel_name": "node-clients", "password": PASSWORD}))[
                "channel_id"])
            yield Live(server.url + "/mcp", api, key, cid)
    finally:
        server.stop()
