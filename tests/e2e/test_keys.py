"""Scoped API keys end to end: ``pushgo key create|list|revoke`` and ``pushgo audit`` as real
processes on the database of a real ``pushgo serve --workers 2``; the key works on both
worker processes, and once revoked it fails at once on both (each request reads the key)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cli_admin import cli_env, pushgo
from tests.e2e.test_scaleout import Supervised

pytestmark = pytest.mark.slow

PASSWORD = "secret-pass-1"


@pytest.fixture
def supervised(pg_schema_url: str, tmp_path: Path) -> Iterator[Supervised]:
    sup = Supervised({"PUSHGO_DB_URL": pg_schema_url}, tmp_path / "sup.log", workers=2)
    try:
        yield sup
    finally:
        sup.stop()


def cli(db_url: str, *args: str) -> Any:
    done = pushgo(*args, env=cli_env(PUSHGO_DB_URL=db_url))
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def on_both_workers(url: str, request: Any) -> dict[str, int]:
    """Make ``request(client)`` on fresh connections until both workers have answered one;
    the status each worker's pid gave."""
    seen: dict[str, int] = {}
    for _ in range(200):
        with httpx.Client(base_url=url) as c:  # one connection: one worker
            text = c.get("/metrics", params={"scope": "process"}).text
            found = re.search(r'^pushgo_worker_info\{.*pid="(\d+)"', text, re.M)
            assert found is not None, text
            seen.setdefault(found.group(1), request(c).status_code)
        if len(seen) == 2:
            return {pid: status for pid, status in seen.items()}
    raise AssertionError(f"one worker answered every connection: {seen}")


def test_a_cli_key_works_on_every_worker_and_a_revoke_ends_it_on_every_worker_at_once(
        supervised: Supervised, pg_schema_url: str) -> None:
    supervised.start()
    made = httpx.post(supervised.url + "/channel/create",
                      json={"channel_name": "ci", "password": PASSWORD}).json()["data"]
    other = httpx.post(supervised.url + "/channel/create",
                       json={"channel_name": "other", "password": PASSWORD}).json()["data"]
    cid = made["channel_id"]
    key = cli(pg_schema_url, "key", "create", "--name", "ci", "--scope", "send",
              "--scope", "status", "--channel", cid, "--weight", "7")
    assert key["key"].startswith("pgk_" + key["key_id"]) and key["weight"] == 7
    assert key["channels"] == [cid] and key["created_by"] == "cli"
    auth = {"authorization": f"Bearer {key['key']}"}
    body = {"channel_id": cid, "password": PASSWORD, "title": "hi"}

    def send(c: httpx.Client) -> httpx.Response:
        return c.post("/message", json=body, headers=auth)

    assert set(on_both_workers(supervised.url, send).values()) == {200}
    refused = httpx.post(supervised.url + "/message", headers=auth,
                         json={**body, "channel_id": other["channel_id"]})
    assert refused.status_code == 403 and refused.json()["error_code"] == "channel_not_allowed"
    assert httpx.get(supervised.url + "/metrics", headers=auth).status_code == 403

    listed = pushgo("key", "list", "--json", env=cli_env(PUSHGO_DB_URL=pg_schema_url))
    assert key["key_id"] in listed.stdout and key["key"].split("_")[-1] not in listed.stdout
    text = pushgo("key", "list", env=cli_env(PUSHGO_DB_URL=pg_schema_url)).stdout
    assert key["key_id"] in text and "live" in text

    revoked = cli(pg_schema_url, "key", "revoke", key["key_id"])
    assert revoked["revoked_at"]
    # No wait: the very next request on either worker fails.
    assert set(on_both_workers(supervised.url, send).values()) == {401}
    again = pushgo("key", "revoke", key["key_id"], env=cli_env(PUSHGO_DB_URL=pg_schema_url))
    assert again.returncode == 1 and "key_not_found" in again.stderr

    entries = cli(pg_schema_url, "audit", "--limit", "5")
    assert [(e["action"], e["actor"], e["target"]) for e in entries] == [
        ("key.revoke", "cli", key["key_id"]), ("key.create", "cli", key["key_id"])]
    assert key["key"].split("_")[-1] not in supervised.log()
    bad = pushgo("key", "create", "--name", "x", "--scope", "everything",
                 env=cli_env(PUSHGO_DB_URL=pg_schema_url))
    assert bad.returncode == 1 and "invalid_scope" in bad.stderr
