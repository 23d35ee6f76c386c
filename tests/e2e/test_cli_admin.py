"""The operator CLI, run as a real process against a real ``pushgo serve``: channel create and
info, send, deliveries (with its progress bar on a terminal), db migrate, and its exit codes
(0 ok, 1 the gateway refused or is unreachable, 2 usage or settings)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushgo.store.migrations import LATEST
from tests.conftest import free_port
from tests.live import ServerProcess

pytestmark = pytest.mark.slow

TOKEN = "cli-gateway-token"
PASSWORD = "secret-pass-1"


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess({"PUSHGO_DB_URL": db_url, "PUSHGO_TOKEN": TOKEN},
                        str(tmp_path / "server.log"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGO_")}
    return {**env, **extra}


def pushgo(*args: str, env: dict[str, str] | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pushgo.cli", *args], capture_output=True,
                          text=True, env=env if env is not None else cli_env(PUSHGO_TOKEN=TOKEN),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ok_json(*args: str, **kw: Any) -> Any:
    done = pushgo(*args, "--json", **kw)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def api(srv: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(srv.url + path, json=body, timeout=10,
                      headers={"authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


def test_an_operator_creates_a_channel_sends_and_follows_the_deliveries(server):
    url = ("--url", server.url)
    created = ok_json("channel", "create", "night shift", "--password", PASSWORD, *url)
    cid = created["channel_id"]
    assert created["channel_name"] == "night shift" and created["created"] is True

    info = pushgo("channel", "info", cid, *url)
    assert info.returncode == 0, info.stderr
    assert cid in info.stdout and "night shift" in info.stdout
    assert re.search(r"^subscribers\s+0$", info.stdout, re.M)

    key = api(server, "/device/register", {"platform": "android"})["device_key"]
    api(server, "/channel/subscribe", {"device_key": key, "channel_id": cid,
                                       "password": PASSWORD})
    assert ok_json("channel", "info", cid, *url)["subscribers"] == 1

    sent = ok_json("send", "--channel", cid, "--password", PASSWORD, "--title", "Disk full",
                   "--body", "/var at 97%", "--severity", "high", "--tag", "ops",
                   "--op-id", "op-cli-1", *url)
    assert sent["op_id"] == "op-cli-1" and sent["accepted"] is True
    human = pushgo("send", "--channel", cid, "--title", "again", "--op-id", "op-cli-2", *url,
                   env=cli_env(PUSHGO_TOKEN=TOKEN, PUSHGO_CHANNEL_PASSWORD=PASSWORD))
    assert human.returncode == 0 and "op_id=op-cli-2" in human.stdout, human.stderr

    now = ok_json("deliveries", "op-cli-1", "--no-wait", *url)
    assert (now["total"], now["done"], now["states"]["queued"]) == (1, False, 1)

    # --wait follows the stream until the last delivery has an outcome: the device pulls once
    # the follower has the stream's first (still queued) status.
    with Relay(server.port, b"GET /deliveries/op-cli-1/stream") as relay:
        follower = subprocess.Popen(
            [sys.executable, "-m", "pushgo.cli", "deliveries", "op-cli-1", "--wait", "--json",
             "--url", relay.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(PUSHGO_TOKEN=TOKEN))
        try:
            assert relay.streaming.wait(20), "the follower never received the stream"
            items = api(server, "/messages/pull", {"device_key": key})["items"]
            assert {i["payload"]["title"] for i in items} == {"Disk full", "again"}
            out, err = follower.communicate(timeout=30)
        finally:
            follower.kill()
    assert follower.returncode == 0, err
    final = json.loads(out)
    assert final["done"] is True and final["states"]["sent"] == 1

    # On a terminal it draws a progress bar and ends with a summary.
    bar = _on_a_terminal([sys.executable, "-m", "pushgo.cli", "deliveries", "op-cli-2", *url],
                         cli_env(PUSHGO_TOKEN=TOKEN))
    assert "1/1" in bar and "[" + "#" * 30 + "]" in bar
    assert re.search(r"^sent\s+1", bar, re.M) and re.search(r"^done\s+yes", bar, re.M)


def test_on_a_terminal_deliveries_does_not_wait_for_offline_private_devices(server):
    """A private device that never connects would keep `pushgo deliveries` waiting for days:
    on a terminal it follows the provider deliveries only and says what is left and why."""
    url = ("--url", server.url)
    cid = ok_json("channel", "create", "offline", "--password", PASSWORD, *url)["channel_id"]
    for _ in range(2):
        key = api(server, "/device/register", {"platform": "android"})["device_key"]
        api(server, "/channel/subscribe", {"device_key": key, "channel_id": cid,
                                           "password": PASSWORD})
    ok_json("send", "--channel", cid, "--password", PASSWORD, "--title", "t", "--op-id",
            "op-offline", *url)
    out = _on_a_terminal([sys.executable, "-m", "pushgo.cli", "deliveries", "op-offline", *url],
                         cli_env(PUSHGO_TOKEN=TOKEN))
    assert "private devices offline: 2" in out
    assert "2 private deliveries wait for offline devices" in out and "--until done" in out
    assert re.search(r"^done\s+no", out, re.M) and re.search(r"^queued\s+2", out, re.M)


class Relay:
    """A TCP relay to the gateway on ``port`` that notices when the request starting with
    ``request`` has gone through and the gateway has since answered with an SSE event:
    ``streaming`` is then set."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.asked = threading.Event()
        self.streaming = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = [self.listener]

    def __enter__(self) -> Relay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, to_gateway: bool) -> None:
        seen = b""  # a tail of what went by: a marker may straddle two reads
        try:
            while chunk := src.recv(65536):
                seen = (seen + chunk)[-1024:]
                if to_gateway and self.request in seen:
                    self.asked.set()
                elif not to_gateway and self.asked.is_set() and b"\ndata:" in seen:
                    self.streaming.set()
                dst.sendall(chunk)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run with stdout and stderr on a pseudo-terminal; return everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env=env)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(10) == 0, out
    finally:
        proc.kill()
        os.close(leader)
    return out.decode(errors="replace").replace("\r\n", "\n")


def test_refusals_print_the_error_code_and_exit_1(server):
    url = ("--url", server.url)
    cid = ok_json("channel", "create", "ops", "--password", PASSWORD, *url)["channel_id"]

    wrong = pushgo("send", "--channel", cid, "--password", "not-the-password", "--title", "x",
                   *url)
    assert wrong.returncode == 1 and "(password_mismatch)" in wrong.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout

    missing = pushgo("channel", "info", "0" * 26, *url)
    assert missing.returncode == 1 and "(channel_not_found)" in missing.stderr

    short = pushgo("channel", "create", "x", "--password", "short", *url)
    assert short.returncode == 1 and "(invalid_password)" in short.stderr

    no_token = pushgo("channel", "info", cid, *url, env=cli_env())
    assert no_token.returncode == 1 and "(authentication_failed)" in no_token.stderr

    unknown_op = pushgo("deliveries", "no-such-op", "--no-wait", *url)
    assert unknown_op.returncode == 1 and re.search(r"\([a-z_]+\)", unknown_op.stderr)

    # PUSHGO_HTTP_ADDR is where a local gateway listens: the default --url.
    addr = server.url.removeprefix("http://")
    via_env = pushgo("channel", "info", cid, "--json",
                     env=cli_env(PUSHGO_TOKEN=TOKEN, PUSHGO_HTTP_ADDR=addr))
    assert via_env.returncode == 0 and json.loads(via_env.stdout)["channel_id"] == cid


def test_usage_and_settings_errors_exit_2_and_an_unreachable_gateway_exits_1():
    nobody = f"http://127.0.0.1:{free_port()}"
    down = pushgo("channel", "info", "0" * 26, "--url", nobody)
    assert down.returncode == 1 and "cannot reach the gateway" in down.stderr

    for args, env in [
        (("send", "--channel", "x", "--password", PASSWORD), None),  # no --title
        (("channel", "info", "x", "--url", "ftp://host"), None),
        (("channel", "create", "ops", "--url", nobody), None),  # no password anywhere
        (("channel", "info", "x"), cli_env(PUSHGO_HTTP_ADDR="nonsense")),
        (("deliveries",), None),
        (("db", "migrate", "--db-url", "mysql://x/y"), None),
    ]:
        done = pushgo(*args, env=env)
        assert done.returncode == 2, (args, done.returncode, done.stderr)
        assert done.stderr.strip(), args


def test_db_migrate_brings_a_database_to_the_latest_version_once(db_url):
    first = pushgo("db", "migrate", env=cli_env(PUSHGO_DB_URL=db_url))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"migrated schema from version 0 to {LATEST}"
    again = pushgo("db", "migrate", "--db-url", db_url, env=cli_env())
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"schema up to date (version {LATEST})"


def test_db_migrate_on_an_unreachable_database_exits_1_without_the_url_secret():
    url = f"postgresql://admin:hunter2-secret@127.0.0.1:{free_port()}/nope"
    done = pushgo("db", "migrate", env=cli_env(PUSHGO_DB_URL=url))
    assert done.returncode == 1 and "cannot migrate" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
