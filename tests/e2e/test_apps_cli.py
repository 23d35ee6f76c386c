"""``pushgo app add|list|remove`` as a real process on the gateway's database, and an app it
adds used by a serving gateway at once (no restart)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from pushgo.testing.mock_apns import APNsKey
from pushgo.testing.mock_fcm import ServiceAccount
from tests.e2e.test_apps import aclient, app_mocks, apps_gateway, device  # noqa: F401
from tests.helpers import PASSWORD, call, new_channel

pytestmark = pytest.mark.slow


def pushgo(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGO_")}
    return subprocess.run([sys.executable, "-m", "pushgo.cli", "app", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**env, "PUSHGO_DB_URL": db_url})


def add_args(name: str, doc: dict[str, Any]) -> list[str]:
    args = ["add", name]
    for group, table in doc.items():
        for key, value in table.items():
            args += [f"--{group}-{key.replace('_', '-')}", str(value)]
    return args


def test_app_add_list_remove_on_the_database(db_url: str, tmp_path: Path):
    key = APNsKey.generate()
    key.write(tmp_path / "k.p8")
    ServiceAccount.generate("cli-project").write(tmp_path / "sa.json", "https://t.example/")
    done = pushgo(db_url, "add", "shop", "--apns-key-file", str(tmp_path / "k.p8"),
                  "--apns-key-id", key.key_id, "--apns-team-id", key.team_id,
                  "--apns-topic", "com.shop.app", "--apns-sandbox",
                  "--fcm-credentials-file", str(tmp_path / "sa.json"),
                  "--wns-client-id", "ms-app://shop", "--wns-client-secret", "shh-secret",
                  "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["routes"] == ["apns", "fcm", "wns"]
    assert made["config"]["fcm"]["project_id"] == "cli-project"
    assert made["config"]["apns"]["sandbox"] is True
    listed = pushgo(db_url, "list")
    assert listed.returncode == 0 and "shop\tstored\tapns,fcm,wns" in listed.stdout
    assert "shh-secret" not in done.stdout + listed.stdout + listed.stderr
    again = pushgo(db_url, "add", "shop", "--wns-client-id", "a", "--wns-client-secret", "b")
    assert again.returncode == 1 and "app_exists" in again.stderr
    missing = pushgo(db_url, "add", "bad", "--apns-key-file", str(tmp_path / "none.p8"),
                     "--apns-key-id", "K", "--apns-team-id", "T", "--apns-topic", "com.x")
    assert missing.returncode == 1
    assert "invalid_app: app 'bad' field apns.key_file" in missing.stderr
    assert pushgo(db_url, "remove", "shop").returncode == 0
    gone = pushgo(db_url, "remove", "shop")
    assert gone.returncode == 1 and "app_not_found" in gone.stderr
    assert "shop" not in pushgo(db_url, "list").stdout


async def test_an_app_added_by_command_is_used_by_the_serving_gateway(
        db_url, aclient, apps_gateway, app_mocks):  # noqa: F811
    globex = app_mocks["globex"]
    done = await anyio.to_thread.run_sync(partial(pushgo, db_url,
                                                  *add_args("globex", globex.doc)))
    assert done.returncode == 0, done.stderr
    token = secrets.token_hex(32)
    key = await device(aclient, "ios", "apns", token, "globex")
    cid = await new_channel(aclient, key)
    await call(aclient, "/message", {"channel_id": cid, "password": PASSWORD, "title": "new"})
    [note] = await globex.apns.notifications.wait_for(1)
    assert note.token == token and note.headers["apns-topic"] == "com.globex.app"
    entries = await apps_gateway.services.audit.recent()
    assert (entries[0].action, entries[0].target, entries[0].actor) == (
        "app.create", "globex", "cli")


def serve_exit(db_url: str, apps_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGO_")}
    return subprocess.run([sys.executable, "-m", "pushgo.cli", "serve"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**env, "PUSHGO_DB_URL": db_url, "PUSHGO_HTTP_ADDR": "127.0.0.1:0",
                               "PUSHGO_APPS_FILE": str(apps_file)})


def test_serve_refuses_a_bad_apps_file_naming_the_app_and_field(db_url: str, tmp_path: Path):
    apps_file = tmp_path / "apps.toml"
    apps_file.write_text('[apps.acme.apns]\nkey_id = "K"\nteam_id = "T"\ntopic = "com.a"\n')
    done = serve_exit(db_url, apps_file)
    assert done.returncode == 2
    assert ("pushgo: invalid PUSHGO_APPS_FILE: app 'acme' field apns.key_file: is required"
            in done.stderr)
    # A name both stored and in the file: start-up stops too.
    assert pushgo(db_url, "add", "desk", "--wns-client-id", "a",
                  "--wns-client-secret", "b").returncode == 0
    apps_file.write_text('[apps.desk.wns]\nclient_id = "a"\nclient_secret = "b"\n')
    done = serve_exit(db_url, apps_file)
    assert done.returncode == 2 and "app 'desk' is also stored" in done.stderr
