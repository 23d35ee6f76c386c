"""The ``pushgo`` command's first impressions: ``--version``, a ``--help`` that imports nothing
heavy, and yes/no settings as switches."""

from __future__ import annotations

import gc
import subprocess
import sys

import anyio
import pytest

from pushgo import __version__, cli
from pushgo.settings import Settings, SettingsError
from tests.conftest import make_settings

#: Modules `pushgo --help` and `pushgo version` must not import: each costs tens to hundreds of
#: milliseconds, and none is needed to print help.
HEAVY = ("sqlalchemy", "httpx", "starlette", "hypercorn", "trio", "anyio", "joserfc",
         "pushgo.oauth", "pushgo.store", "pushgo.service", "pushgo.app", "pushgo.mcp",
         "pushgo.api", "psycopg", "prometheus_client", "h2")

PROBE = """
import sys
from pushgo import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print("MODULES", " ".join(sorted(sys.modules)))
sys.exit(code or 0)
"""


def run_probe(*argv: str) -> tuple[str, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          timeout=60, check=True)
    text, _, modules = done.stdout.rpartition("MODULES ")
    return text, set(modules.split())


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["--version"], ["serve", "--help"],
                                  ["deliveries", "--help"]])
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    text, modules = run_probe(*argv)
    loaded = sorted(m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY
                    or any(m.startswith(h + ".") for h in HEAVY))
    assert loaded == [], f"pushgo {' '.join(argv)} imported {loaded}"
    assert text.strip()


def test_version_flag_prints_the_version() -> None:
    done = subprocess.run([sys.executable, "-m", "pushgo.cli", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == __version__


def settings_of(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return cli.settings_from(cli._parser().parse_args(["serve", *argv]), env or {})


def test_a_yes_no_setting_is_a_switch() -> None:
    assert settings_of([]).mcp_enabled is False
    assert settings_of(["--mcp-enabled"]).mcp_enabled is True
    assert settings_of(["--mcp-enabled", "true"]).mcp_enabled is True
    assert settings_of(["--mcp-enabled", "false"], {"PUSHGO_MCP_ENABLED": "true"}).mcp_enabled is False
    assert settings_of(["--no-mcp-enabled"], {"PUSHGO_MCP_ENABLED": "true"}).mcp_enabled is False
    assert settings_of(["--no-mcp-dcr-enabled"]).mcp_dcr_enabled is False
    assert settings_of(["--sandbox-mode"]).sandbox_mode is True
    with pytest.raises(SettingsError, match="PUSHGO_MCP_ENABLED"):
        settings_of(["--mcp-enabled", "maybe"])


def test_the_listening_line_names_the_database_without_its_password(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.database_location("sqlite:///./pushgo-data/pushgo.db") == str(
        tmp_path / "pushgo-data" / "pushgo.db")
    assert cli.database_location("sqlite:////var/lib/pushgo/x.db") == "/var/lib/pushgo/x.db"
    where = cli.database_location("postgresql://pushgo:hunter2@db:5432/pushgo?password=hunter3")
    assert where == "postgresql://pushgo:***@db:5432/pushgo"


def test_serve_runs_with_the_collector_tuned(tmp_path, monkeypatch) -> None:
    """``pushgo serve`` starts its loop with start-up's objects frozen and GC_THRESHOLDS."""
    seen: dict[str, object] = {}

    def fake_run(*args: object, **kwargs: object) -> None:
        seen["thresholds"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()

    before = gc.get_threshold()
    monkeypatch.setattr(anyio, "run", fake_run)
    settings = make_settings(f"sqlite:///{tmp_path}/gc.db", http_port=0)
    try:
        assert cli.serve(settings) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert seen["thresholds"] == cli.GC_THRESHOLDS
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000
