"""The README's *Repeat until acknowledged* example, run with bash and curl against a live
`pushgo serve` as a reader runs it (the walkthrough's `GW` and `data` lines first); each
command's answer must match the one the README shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_readme import assert_shows, bash, blocks_after, commented_output, prelude, shell_env
from tests.live import ServerProcess

pytestmark = pytest.mark.slow


def test_the_repeat_example_runs_as_written(tmp_path: Path, db_url: str) -> None:
    blocks = [text for lang, text in blocks_after("## Repeat until acknowledged")
              if lang == "sh"]
    assert len(blocks) == 1
    server = ServerProcess({"PUSHGO_DB_URL": db_url}, str(tmp_path / "serve.log"))
    server.env.pop("PUSHGO_TOKEN", None)
    server.start()
    try:
        out = bash(prelude(server.url) + blocks[0], tmp_path, shell_env(), "repeat")
    finally:
        server.stop()
    shown = commented_output(blocks[0])
    assert shown.count("\n") == 2  # the send, the receipt, the acknowledgement
    assert_shows(shown, out)
