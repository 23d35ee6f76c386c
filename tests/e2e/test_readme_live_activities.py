"""The README's Live Activities example, run as written against a live `pushgo serve` and the
mock providers the README starts: after the Delivery example's devices, the iPhone registers
its tokens, an event is created, updated and closed, and the mock APNs logs a Live Activity
start, update and end (the mock FCM the Pixel's tagged messages)."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_readme import (
    assert_shows,
    bash,
    blocks_after,
    commented_output,
    mock_log,
    prelude,
    readme_mocks,
    shell_env,
)
from tests.live import ServerProcess

pytestmark = pytest.mark.slow


def test_the_live_activities_example_runs_as_written(tmp_path, db_url):
    devices = blocks_after("To try APNs, FCM and WNS")[2][1]
    blocks = blocks_after("## Live Activities")
    [(at, live)] = [(i, text) for i, (lang, text) in enumerate(blocks) if lang == "sh"]
    shown = blocks[at + 1][1]
    with readme_mocks(tmp_path) as (pasted, procs):
        server = ServerProcess({**pasted, "PUSHGO_DB_URL": db_url}, str(tmp_path / "gw.log"))
        server.start()
        try:
            out = bash(prelude(server.url) + devices + live, tmp_path, shell_env(), "live")
        finally:
            server.stop()
        assert_shows(commented_output(live), out)
        assert_shows(shown, out)  # both devices had the update and the close
    apns, fcm = mock_log(procs["pushgo.testing.mock_apns"]), mock_log(procs["pushgo.testing.mock_fcm"])
    assert re.findall(r"^200 +liveactivity (\w+) token=", apns, re.M) == ["start", "update", "end"], apns
    assert len(re.findall(r"^200 .*token=", fcm, re.M)) == 4, fcm  # hello-1 and the event's 3
    assert "Traceback" not in apns + fcm
