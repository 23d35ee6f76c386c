"""The mock providers' command lines as a user runs them: one CA shared by every mock, the
settings printed as `export` lines, a clean stop on Ctrl-C (SIGINT) or SIGTERM, and
counting_apns serving in the background of a script whose stdin is closed."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MOCKS = ("mock_apns", "mock_fcm", "mock_wns", "counting_apns")


def start(module: str, ca_dir: Path, *extra: str) -> subprocess.Popen[str]:
    quiet = [] if module == "counting_apns" else ["--quiet"]
    return subprocess.Popen(
        [sys.executable, "-m", f"pushgo.testing.{module}", "--port", "0", *quiet,
         "--ca-dir", str(ca_dir), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_settings(proc: subprocess.Popen[str], last: str) -> dict[str, str]:
    """The `export NAME=value` lines, up to the one naming `last`."""
    assert proc.stdout is not None
    env: dict[str, str] = {}
    while True:
        line = proc.stdout.readline()
        assert line, f"the mock ended before printing {last}: {proc.stderr.read() if proc.stderr else ''}"
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            env[name] = value
            if name == last:
                return env


def last_name(module: str) -> str:
    return {"mock_apns": "PUSHGO_APNS_KEY_FILE", "mock_fcm": "PUSHGO_PROVIDER_CA_FILE",
            "mock_wns": "PUSHGO_PROVIDER_CA_FILE", "counting_apns": "PUSHGO_APNS_TOPIC"}[module]


def test_every_mock_prints_one_shared_ca_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    procs = {m: start(m, ca_dir) for m in MOCKS}
    try:
        settings = {m: read_settings(p, last_name(m)) for m, p in procs.items()}
        ca_files = {s["PUSHGO_PROVIDER_CA_FILE"] for s in settings.values()}
        assert ca_files == {str(ca_dir / "ca.pem")}
        assert "PUSHGO_APNS_ENDPOINT" in settings["mock_apns"]
        assert "PUSHGO_FCM_CREDENTIALS_FILE" in settings["mock_fcm"]
        assert "PUSHGO_WNS_ENDPOINT" in settings["mock_wns"]
        # The one CA file verifies every mock's certificate.
        ctx = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        for env in settings.values():
            origin = next(v for k, v in env.items() if k.endswith("_ENDPOINT"))
            host, port = origin.removeprefix("https://").rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname=host):
                pass
        # counting_apns keeps serving with its stdin closed (a background job of a script).
        assert procs["counting_apns"].poll() is None
    finally:
        for module, proc in procs.items():
            proc.send_signal(signal.SIGTERM if module == "counting_apns" else signal.SIGINT)
    for module, proc in procs.items():
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, (module, err)
        assert "Traceback" not in err, (module, err)
        if module == "counting_apns":
            assert json.loads(out.strip().splitlines()[-1])["requests"] == 0


def test_the_default_ca_lives_in_the_users_cache_dir(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-m", f"pushgo.testing.{m}", "--port", "0"],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for m in ("mock_apns", "mock_fcm")]
    try:
        files = {read_settings(p, last_name(m))["PUSHGO_PROVIDER_CA_FILE"]
                 for p, m in zip(procs, ("mock_apns", "mock_fcm"), strict=True)}
        assert files == {str(tmp_path / "pushgo" / "mock-ca" / "ca.pem")}
        assert (tmp_path / "pushgo" / "mock-ca" / "ca.key").stat().st_mode & 0o077 == 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        proc.communicate(timeout=20)
        assert proc.returncode == 0
