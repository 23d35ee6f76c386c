"""A native APNs mock for throughput runs: Debian's nginx, HTTP/2 over TLS, answering
``POST /3/device/<token>`` with ``200`` + ``apns-id`` (echoed from the request) as one HEADERS
frame with END_STREAM and no DATA — what Apple sends, and what aioapns needs (an empty DATA
frame makes it JSON-decode an empty body and drop the connection).

With Debian's headers-more module (libnginx-mod-http-headers-more-filter) the 200 carries only
``:status``, ``content-length: 0`` and ``apns-id``, close to Apple's ``:status`` + ``apns-id``;
without it nginx adds ``server``, ``date`` and ``content-type``, which a client must
HPACK-decode too (about 4 more Huffman literals a response). ``content-length`` must stay:
without it nginx ends the stream with an empty DATA frame.

Runs as a child process in a temporary prefix (``nginx -p DIR -c nginx.conf -g 'daemon off;'``),
one worker, optionally pinned to one CPU; :meth:`NginxMock.cpu_seconds` reads the worker's CPU
time from /proc so a run can tell whether the mock was saturated. Request bodies are read into
memory (``client_body_buffer_size``) and discarded, never written to disk; no access log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import trustme

HEADERS_MORE = Path("/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so")

CONF = """\
{load_module}
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server_tokens off;
  client_body_temp_path tmp/body;
  proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi;
  scgi_temp_path tmp/scgi;
  # One connection carries a whole run: never GOAWAY after N requests or an idle pause.
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  # Bodies (APNs caps them at 4 KiB) stay in memory.
  client_body_buffer_size 16k;
  client_max_body_size 16k;
  client_body_in_file_only off;
  http2_max_concurrent_streams {streams};
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate cert.pem;
    ssl_certificate_key key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location /3/device/ {{
      {clear_headers}
      add_header apns-id $http_apns_id always;
      return 200;
    }}
    # FCM HTTP v1: a 200 with the message name as JSON (HEADERS + one DATA frame).
    location ~ ^/v1/projects/[^/]+/messages:send$ {{
      {clear_fcm_headers}
      default_type application/json;
      return 200 '{fcm_body}';
    }}
    # A plain counter of requests served, for runs that wait until the mock has them all.
    location = /nginx-status {{
      stub_status;
    }}
    location / {{
      return 404;
    }}
  }}
}}
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: What the mock answers every FCM send with (a real name looks like this).
FCM_BODY = '{"name":"projects/bench-project/messages/0:1700000000000000%31bd1c9631bd1c96"}'



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (0 when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


class NginxMock:
    """``with NginxMock(cpu=1) as mock:`` → ``mock.port``, ``mock.ca_file``, ``mock.cpu_seconds()``."""

    def __init__(self, *, cpu: int | None = None, streams: int = 1000,
                 identities: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        self.cpu = cpu
        self.streams = streams
        self.identities = identities
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.worker_pids: list[int] = []
        self.trimmed = HEADERS_MORE.exists()

    @property
    def response_headers(self) -> str:
        """What a 200 carries, for the record."""
        if self.trimmed:
            return ":status 200, content-length 0, apns-id (one HEADERS frame, END_STREAM)"
        return (":status 200, server, date, content-type, content-length 0, apns-id "
                "(one HEADERS frame, END_STREAM)")

    @staticmethod
    def executable() -> str | None:
        return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

    @property
    def ca_file(self) -> Path:
        assert self.dir is not None
        return self.dir / "ca.pem"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> NginxMock:
        exe = self.executable()
        if exe is None:
            raise RuntimeError("nginx is missing: apt-get install -y nginx")
        self.dir = Path(tempfile.mkdtemp(prefix="pushgo-bench-nginx-"))
        ca = trustme.CA()
        leaf = ca.issue_cert(*self.identities)
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        (self.dir / "cert.pem").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        (self.dir / "tmp").mkdir()
        self.port = free_port()
        (self.dir / "nginx.conf").write_text(CONF.format(
            port=self.port, streams=self.streams,
            load_module=f"load_module {HEADERS_MORE};" if self.trimmed else "",
            clear_headers="more_clear_headers Server Date Content-Type;" if self.trimmed else "",
            clear_fcm_headers="more_clear_headers Server Date;" if self.trimmed else "",
            fcm_body=FCM_BODY))
        cmd = [exe, "-p", str(self.dir), "-c", "nginx.conf", "-g", "daemon off;"]
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        # Our own command line: the nginx found on PATH and a config we wrote.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,  # noqa: S603
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     cwd=self.dir)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.dir is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = (self.dir / "error.log").read_text(errors="replace") if (
                    self.dir / "error.log").exists() else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {err}{log}".strip())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            self.worker_pids = children_of(self.proc.pid)
            if self.worker_pids:
                return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening within 10 s")

    def requests_served(self) -> int:
        """nginx's count of requests handled so far (stub_status; plain HTTP/1.1 over TLS)."""
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /nginx-status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
        # "...\n server accepts handled requests\n 1 1 5 \n..."
        lines = data.decode(errors="replace").split("\r\n\r\n", 1)[-1].splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("server accepts handled requests"):
                return int(lines[i + 1].split()[2])
        raise RuntimeError(f"unexpected stub_status answer: {data[-200:]!r}")

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(pid) for pid in self.worker_pids)

    def error_log(self) -> str:
        if self.dir is None or not (self.dir / "error.log").exists():
            return ""
        return (self.dir / "error.log").read_text(errors="replace")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
