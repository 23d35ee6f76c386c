"""``pushgo serve`` on an address another socket holds: one line naming the address, exit 2,
and no ``listening`` line (it is written only once the socket is bound)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_taken_port_is_one_line_naming_the_address_and_exit_2(tmp_path: Path,
                                                                 backend: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "PUSHGO_HTTP_ADDR": f"127.0.0.1:{port}",
               "PUSHGO_DB_URL": f"sqlite:///{tmp_path}/pushgo.db",
               "PUSHGO_ASYNC_BACKEND": backend}
        proc = subprocess.run([sys.executable, "-m", "pushgo.cli", "serve", "--workers", "1"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"pushgo: cannot listen on PUSHGO_HTTP_ADDR=127.0.0.1:{port}")
    assert "in use" in lines[0]
    assert "listening" not in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
