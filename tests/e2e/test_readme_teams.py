"""The README's "One gateway for several apps and teams" example, run with bash on a database:
each team's key is made as shown (its scopes, channel, quotas and weight stored), and the
audit log names the command line as the actor of each creation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_readme import assert_shows, bash, blocks_after, shell_env

pytestmark = pytest.mark.slow


def test_the_teams_example_makes_the_keys_the_readme_shows(tmp_path: Path, db_url: str) -> None:
    (lang, block), *_ = blocks_after("## One gateway for several apps and teams")
    assert lang == "sh"
    out = bash(block, tmp_path, shell_env(PUSHGO_DB_URL=db_url), "teams")
    shown = "\n".join(line.removeprefix("# ") for line in block.splitlines()
                      if line.startswith("# "))
    assert_shows(shown, out)
    made = {doc["name"]: doc for doc in map(json.loads, out.splitlines()[:3])}
    assert made["shop-backend"]["channels"] == ["06J0FZG1Y8XGG14VTQ4Y3G10MR"]
    assert made["shop-backend"]["daily_notifications"] == 100_000
    assert (made["oncall"]["weight"], made["oncall"]["rate_per_s"]) == (10, 5.0)
    assert made["operators"]["scopes"] == ["admin"]
    audit = json.loads(out.splitlines()[3])
    assert [(e["actor"], e["action"], e["target"]) for e in audit] == [
        ("cli", "key.create", made[name]["key_id"])
        for name in ("operators", "oncall", "shop-backend")]
    assert all(made[name]["key"] not in out.split("\n", 3)[3] for name in made)
