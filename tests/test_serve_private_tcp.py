"""``pushgo serve`` with the warp-link TCP or QUIC transport on an address another socket holds:
one line naming the variable, exit 2, no ``listening`` line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import trustme

from tests.conftest import free_port


def _serve_on_a_taken_port(tmp_path: Path, holder: socket.socket, transports: str,
                           variable: str) -> None:
    """Run ``pushgo serve`` with ``variable`` on the address ``holder`` keeps: one line that
    names it, exit 2, no ``listening``, no traceback."""
    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    port = holder.getsockname()[1]
    env = {**os.environ, "PUSHGO_HTTP_ADDR": f"127.0.0.1:{free_port()}",
           "PUSHGO_DB_URL": f"sqlite:///{tmp_path}/pushgo.db",
           "PUSHGO_PRIVATE_TRANSPORTS": transports, variable: f"127.0.0.1:{port}",
           "PUSHGO_PRIVATE_TLS_CERT": str(cert), "PUSHGO_PRIVATE_TLS_KEY": str(key)}
    proc = subprocess.run([sys.executable, "-m", "pushgo.cli", "serve", "--workers", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"pushgo: cannot listen on {variable}=127.0.0.1:{port}")
    assert "listening" not in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_a_taken_private_tcp_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        _serve_on_a_taken_port(tmp_path, holder, "tcp,wss", "PUSHGO_PRIVATE_TCP_BIND")


def test_a_taken_private_quic_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        _serve_on_a_taken_port(tmp_path, holder, "quic", "PUSHGO_PRIVATE_QUIC_BIND")
