"""The README's examples, run as a newcomer runs them, so they cannot drift from what pushgo
does: its shell blocks are extracted from README.md and run with bash and curl against a
live `pushgo serve`, and their output is checked against the output the README shows.

- The five-minute walkthrough, on the default database (SQLite under the working directory,
  named by the `listening` line): register, subscribe, stream, send, acknowledge.
- The mock providers: both mocks started as the README says, their `export` lines pasted
  into the gateway's environment, an iPhone on APNs and an Android phone on FCM sent to; each
  mock records its delivery, `pushgo deliveries` shows both sent.
- Bulk and delivery status: the NDJSON example (a channel message, an event, a direct APNs
  send) with the gateway token, then the status of the direct send.
- Scheduled sends: a message five minutes ahead, its status while it waits, its cancel.

In the README's shown output a word ending in `…` stands for any text.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.live import ServerProcess

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def blocks_after(marker: str) -> list[tuple[str, str]]:
    """The fenced blocks (language, text) after ``marker`` up to the next ``## `` heading."""
    text = README.read_text()
    start = text.index(marker)
    end = text.find("\n## ", start + 1)
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text[start:end if end > 0 else None])]


def shown_lines(expected: str) -> list[re.Pattern[str]]:
    """The README's shown output as one pattern per non-blank line (``x…`` is any text)."""
    out = []
    for line in expected.splitlines():
        if not line.strip():
            continue
        parts = re.split(r"[0-9A-Za-z]*…", line.strip())
        out.append(re.compile(".*".join(re.escape(p) for p in parts)))
    return out


def assert_shows(expected: str, actual: str) -> None:
    """Every shown line matches a whole line of ``actual``, in the README's order."""
    lines = [line.strip() for line in actual.splitlines() if line.strip()]
    at = 0
    for pattern in shown_lines(expected):
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        assert at < len(lines), f"README shows {pattern.pattern!r}; the output was:\n{actual}"
        at += 1


def commented_output(block: str) -> str:
    """The `# {…}` lines of a shell block: the output the README shows for its commands."""
    return "\n".join(line.removeprefix("# ") for line in block.splitlines()
                     if line.startswith("# {"))


def bash(script: str, tmp: Path, env: dict[str, str], name: str) -> str:
    """Run ``script`` with bash in ``tmp``; its stdout (and its background jobs') as text."""
    out = tmp / f"{name}.out"
    (tmp / f"{name}.sh").write_text(script)
    with open(out, "wb") as sink:
        done = subprocess.run(["bash", str(tmp / f"{name}.sh")], cwd=tmp, stdout=sink,
                              stderr=subprocess.PIPE, env={**env, "OUT": str(out)}, timeout=90)
    text = out.read_text()
    assert done.returncode == 0, (done.returncode, text, done.stderr.decode())
    return text


def shell_env(**extra: str) -> dict[str, str]:
    """The user's shell: no PUSHGO_* of the test session, pushgo on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGO_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def prelude(gw: str) -> str:
    """The walkthrough's `GW=` and `data()` lines, pointed at the test's gateway."""
    walkthrough = blocks_after("## Five-minute walkthrough")[0][1]
    lines = [line for line in walkthrough.splitlines()
             if line.startswith(("GW=", "data()"))]
    assert lines[0] == "GW=http://127.0.0.1:6666", lines
    return "\n".join([f"GW={gw}", *lines[1:]]) + "\n"


def test_the_walkthrough_runs_as_written_and_keeps_its_data_where_the_readme_says(tmp_path):
    server = ServerProcess({}, str(tmp_path / "server.log"), cwd=str(tmp_path))
    server.env.pop("PUSHGO_DB_URL", None)
    server.env.pop("PUSHGO_TOKEN", None)
    server.start()
    try:
        (_, steps), (_, stream_shown), (_, ack), *_ = [
            b for b in blocks_after("## Five-minute walkthrough") if b[0] in ("sh", "")]
        assert "<id from the stream>" in ack
        wait_for_delivery = ("for _ in $(seq 100); do grep -q '^data: ' \"$OUT\" && break; "
                             "sleep 0.1; done\nID=$(grep -m1 '^id: ' \"$OUT\" | cut -c5-)\n")
        script = (steps.replace("GW=http://127.0.0.1:6666", f"GW={server.url}")
                  + wait_for_delivery + ack.replace("<id from the stream>", "$ID"))
        out = bash(script, tmp_path, shell_env(), "walkthrough")
        assert_shows(stream_shown, out)
        assert_shows(commented_output(steps), out)  # the send's answer, on its own line
        assert_shows(commented_output(ack), out)  # {"removed":true}
        listening = next(json.loads(line) for line in server.log().splitlines()
                         if '"listening"' in line)
    finally:
        server.stop()
    database = tmp_path / "pushgo-data" / "pushgo.db"
    assert database.is_file()
    assert listening["db"] == "sqlite" and listening["database"] == str(database)


@contextmanager
def readme_mocks(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, subprocess.Popen[str]]]]:
    """The mocks started by the README's commands; yields the settings they printed (what a
    user pastes) and the processes."""
    block = blocks_after("To try APNs, FCM and WNS")[0][1]
    env = shell_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    procs: dict[str, subprocess.Popen[str]] = {}
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[:2] == ["python", "-m"], line
        procs[argv[2]] = subprocess.Popen([sys.executable, *argv[1:]], env=env, text=True,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE)
    assert set(procs) == {"pushgo.testing.mock_apns", "pushgo.testing.mock_fcm"}
    pasted: dict[str, str] = {}
    ca_files = set()
    try:
        for proc in procs.values():
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, ""):
                if line.startswith("# paste"):
                    break
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").strip().partition("=")
                    pasted[name] = shlex.split(value)[0]
                    if name == "PUSHGO_PROVIDER_CA_FILE":
                        ca_files.add(pasted[name])
        # One CA for both: pasting both sets leaves a CA file that trusts both mocks.
        assert ca_files == {str(tmp_path / "cache" / "pushgo" / "mock-ca" / "ca.pem")}
        yield pasted, procs
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            proc.wait(20)


def mock_log(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None and proc.returncode == 0, proc.returncode
    return proc.stderr.read()


def test_apns_and_fcm_through_both_mocks_bulk_and_delivery_status_as_the_readme_shows(
        tmp_path, db_url):
    shown = blocks_after("To try APNs, FCM and WNS")
    exports_shown = shown[1][1]
    devices, deliveries_shown = shown[2][1], shown[3][1]
    bulk_block, bulk_shown = blocks_after("**Bulk sending.**")[:2]
    status_block, status_shown = blocks_after("**Delivery status.**")[:2]
    token = secrets.token_hex(16)
    apns_tokens = [secrets.token_hex(32), secrets.token_hex(32)]
    with readme_mocks(tmp_path) as (pasted, procs):
        names_shown = set(re.findall(r"^export (\w+)=", exports_shown, re.M))
        assert names_shown <= set(pasted), names_shown - set(pasted)
        # The mocks' settings pasted into the gateway's shell, as the README says.
        server = ServerProcess({**pasted, "PUSHGO_DB_URL": db_url}, str(tmp_path / "a.log"))
        server.start()
        try:
            out = bash(prelude(server.url) + devices, tmp_path, shell_env(), "mocks")
        finally:
            server.stop()
        assert_shows(deliveries_shown, out)

        # Bulk, with the gateway token; then the direct send's delivery status.
        server = ServerProcess({**pasted, "PUSHGO_DB_URL": db_url, "PUSHGO_TOKEN": token},
                               str(tmp_path / "b.log"))
        server.start()
        try:
            channel = httpx.post(server.url + "/channel/create", timeout=10,
                                 headers={"authorization": f"Bearer {token}"},
                                 json={"channel_name": "ops", "password": "correct-horse"}
                                 ).json()["data"]["channel_id"]
            glue = (f"TOKEN={token}\nCHANNEL={channel}\nAPNS_TOKEN_1={apns_tokens[0]}\n"
                    f"APNS_TOKEN_2={apns_tokens[1]}\n")
            out = bash(prelude(server.url) + glue + bulk_block[1], tmp_path, shell_env(), "bulk")
            assert_shows(bulk_shown[1], out)
            out = bash(prelude(server.url) + glue + status_block[1], tmp_path, shell_env(),
                       "status")
            assert_shows(commented_output(status_block[1]), out)
            assert_shows(status_shown[1], out)
        finally:
            server.stop()
    apns, fcm = mock_log(procs["pushgo.testing.mock_apns"]), mock_log(procs["pushgo.testing.mock_fcm"])
    assert re.search(r"^200 .*token=", fcm, re.M), fcm
    # The channel's iPhone, then both direct tokens: each recorded by the mock APNs.
    assert len(re.findall(r"^200 .*token=", apns, re.M)) == 3, apns
    for direct in apns_tokens:
        assert f"token={direct[:16]}…" in apns
    assert "Traceback" not in apns + fcm


def test_a_scheduled_send_its_status_and_its_cancel_as_the_readme_shows(tmp_path, db_url):
    (lang, block), *_ = blocks_after("## Scheduled sends")
    assert lang == "sh"
    server = ServerProcess({"PUSHGO_DB_URL": db_url}, str(tmp_path / "server.log"))
    server.start()
    try:
        key = httpx.post(server.url + "/device/register", json={"platform": "android"},
                         timeout=10).json()["data"]["device_key"]
        channel = httpx.post(server.url + "/channel/subscribe", timeout=10, json={
            "device_key": key, "channel_name": "ops", "password": "correct-horse",
        }).json()["data"]["channel_id"]
        out = bash(prelude(server.url) + f"CHANNEL={channel}\n" + block, tmp_path,
                   shell_env(), "scheduled")
        assert_shows(commented_output(block), out)
        pulled = httpx.post(server.url + "/messages/pull", json={"device_key": key},
                            timeout=10).json()["data"]["items"]
        assert pulled == []  # cancelled before it went out
    finally:
        server.stop()


def test_the_readme_names_the_settings_and_versions_as_they_are():
    """Output the README quotes that tests elsewhere cannot see: the schema version is not
    hard-coded, and the install commands are the two the README promises."""
    text = README.read_text()
    assert "from version 1 to 3" not in text and "from version 0 to 3" not in text
    first = blocks_after("## Two commands")[0][1].splitlines()
    assert first[0].startswith("pip install -e . && pushgo serve")
    assert first[1].startswith("pip install -e '.[test]' && pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert re.search(r"^python3 -m pip install .*-e '\.\[test\]' && pytest$", ci, re.M)
