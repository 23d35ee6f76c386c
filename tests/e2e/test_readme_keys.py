"""The README's scoped API keys example, run with bash against a live ``pushgo serve`` and
the ``pushgo key``/``pushgo audit`` commands on its database: each command's shown output
(the ``# `` lines) must match what it printed, in order."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.test_readme import assert_shows, bash, blocks_after, prelude, shell_env
from tests.live import ServerProcess

pytestmark = pytest.mark.slow


def test_the_scoped_keys_example_runs_as_the_readme_shows(tmp_path: Path, db_url: str) -> None:
    (lang, block), *_ = blocks_after("## Several senders: scoped API keys")
    assert lang == "sh"
    server = ServerProcess({"PUSHGO_DB_URL": db_url}, str(tmp_path / "server.log"))
    server.env.pop("PUSHGO_TOKEN", None)
    server.start()
    try:
        channel = httpx.post(server.url + "/channel/create", timeout=10, json={
            "channel_name": "ops", "password": "correct-horse"}).json()["data"]["channel_id"]
        out = bash(prelude(server.url) + f"CHANNEL={channel}\n" + block, tmp_path,
                   shell_env(PUSHGO_DB_URL=db_url), "keys")
        shown = "\n".join(line.removeprefix("# ") for line in block.splitlines()
                          if line.startswith("# "))
        assert_shows(shown, out)
        assert out.count('"error_code":"') == 2  # the scope, then the revoked key
        key = next(line for line in out.splitlines() if '"name":"ci"' in line)
        secret = key.rsplit('"key":"', 1)[1].split("_")[-1]
    finally:
        server.stop()
    assert secret.rstrip('"}') not in server.log()
