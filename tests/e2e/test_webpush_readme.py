"""The README's Web Push section, run as a newcomer runs it: the mock push service started by
its command, the settings it prints pasted into `pushgo serve`'s environment, the subscription
it prints used as `SUB`, then the section's shell block with bash and curl; its output must be
what the README shows, and the mock must have decrypted the message the block sent."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys

import pytest

from tests.e2e.test_readme import (
    assert_shows,
    bash,
    blocks_after,
    prelude,
    shell_env,
)
from tests.live import ServerProcess

pytestmark = pytest.mark.slow

SUB_LINE = "SUB='<subscription JSON>'"


def test_the_web_push_section_runs_as_written_against_the_mock(tmp_path, db_url):
    blocks = [b for b in blocks_after("## Web Push") if b[0] in ("sh", "")]
    (_, register), (_, shown), (_, mock_line) = blocks
    assert SUB_LINE in register
    argv = shlex.split(mock_line, comments=True)
    assert argv[:3] == ["python", "-m", "pushgo.testing.mock_webpush"], mock_line
    env = shell_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    mock = subprocess.Popen([sys.executable, *argv[1:]], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    pasted: dict[str, str] = {}
    subscription = ""
    try:
        assert mock.stdout is not None
        for line in iter(mock.stdout.readline, ""):
            if line.startswith("# a subscription to register: "):
                subscription = line.split(": ", 1)[1].strip()
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                pasted[name] = shlex.split(value)[0]
            if line.startswith("# paste"):
                break
        assert set(pasted) == {"PUSHGO_WEBPUSH_ALLOW_LOOPBACK", "PUSHGO_PROVIDER_CA_FILE"}
        assert json.loads(subscription)["endpoint"].startswith("https://127.0.0.1:")
        server = ServerProcess({**pasted, "PUSHGO_DB_URL": db_url}, str(tmp_path / "gw.log"))
        server.env.pop("PUSHGO_TOKEN", None)
        server.start()
        try:
            script = register.replace(SUB_LINE, f"SUB={shlex.quote(subscription)}")
            out = bash(prelude(server.url) + script, tmp_path, shell_env(), "webpush")
        finally:
            server.stop()
        assert_shows(shown, out)
    finally:
        mock.send_signal(signal.SIGINT)
        mock.wait(20)
    assert mock.returncode == 0 and mock.stderr is not None
    log = mock.stderr.read()
    assert "Traceback" not in log
    [line] = [ln for ln in log.splitlines() if ln.startswith("201 ")]
    doc = json.loads(re.sub(r"^201 subscription=\S+ ", "", line))
    assert (doc["title"], doc["body"]) == ("Front door", "opened")
    assert doc["url"] == "https://home.example.com/door" and doc["op_id"] == "door-1"
