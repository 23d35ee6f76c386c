"""The README's "Several apps on one gateway" examples: its TOML file is a valid
PUSHGO_APPS_FILE once its key files exist (the paths swapped for real keys), and its
`pushgo app` commands add, list and remove that app on a database."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pushgo.cli import main
from pushgo.delivery.providers import check_app
from pushgo.service.apps import load_file
from pushgo.testing.mock_apns import APNsKey
from pushgo.testing.mock_fcm import ServiceAccount
from tests.e2e.test_readme import blocks_after

SECTION = "## Several apps on one gateway"
PATH = re.compile(r"/etc/pushgo/[\w.-]+")


def real_files(text: str, tmp_path: Path) -> str:
    """Each /etc/pushgo/… path the example names, made a real key file under tmp_path."""
    def swap(m: re.Match[str]) -> str:
        target = tmp_path / Path(m.group(0)).name
        if target.suffix == ".p8":
            APNsKey.generate().write(target)
        else:
            ServiceAccount.generate("readme-project").write(target, "https://t.example/")
        return str(target)

    return PATH.sub(swap, text)


def test_the_toml_example_is_a_valid_apps_file(tmp_path: Path):
    [(_lang, text)] = [b for b in blocks_after(SECTION) if b[0] == "toml"]
    path = tmp_path / "apps.toml"
    path.write_text(real_files(text, tmp_path))
    apps = load_file(str(path), check_app)
    assert sorted(apps) == ["acme", "globex"]
    acme = apps["acme"]
    assert acme.apns is not None and acme.apns.topic == "com.acme.app"
    assert acme.fcm is not None and acme.fcm.project_id == "readme-project"
    assert apps["globex"].routes == ("wns",)


def test_the_app_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]):
    [(_lang, text)] = [b for b in blocks_after(SECTION) if b[0] == "sh"]
    monkeypatch.setenv("PUSHGO_DB_URL", f"sqlite:///{tmp_path / 'pushgo.db'}")
    monkeypatch.delenv("PUSHGO_APPS_FILE", raising=False)
    commands = real_files(text.replace("\\\n", " "), tmp_path).strip().splitlines()
    outputs = []
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "pushgo"
        assert main(argv[1:]) == 0, line
        outputs.append(capsys.readouterr().out)
    assert "shop\tstored\tapns,fcm" in outputs[1]
    assert outputs[2].strip() == "removed app shop"
