"""Server processes for the front-door benchmarks (``ingest``, ``fanout``, ``mcp``, ``bulk``):
``pushgo serve`` or another ASGI server in a child process on a loopback port, optionally
pinned to one CPU, with its CPU time and peak RSS read from /proc; and h2load as the load
generator (native, so the client is never what is measured).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import percentile
from benchmarks.nginx_mock import free_port, proc_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
#: The benchmark channels' password (a local throwaway gateway's).
PASSWORD = "bench-password-1"  # noqa: S105


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its threads (``/proc/PID/stat`` counts every thread)."""
    return proc_cpu_seconds(pid)


class ServerProcess:
    """A server command on a free loopback port: ``start()`` waits until ``ready_path``
    answers 200; ``stop()`` sends SIGTERM (then SIGKILL)."""

    def __init__(self, label: str, cmd: list[str], env: dict[str, str], *, port: int,
                 log: Path, cpu: int | None = None, ready_path: str = "/readyz",
                 cwd: Path = ROOT) -> None:
        self.label = label
        self.port = port
        self.log_path = log
        self.ready_path = ready_path
        self.cwd = cwd
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu), *cmd]
        self.cmd = cmd
        self.env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep
                    + os.environ.get("PYTHONPATH", ""), **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def pushgo(cls, label: str, env: dict[str, str], *, log: Path, cpu: int | None = None
               ) -> ServerProcess:
        port = free_port()
        full = {"PUSHGO_HTTP_ADDR": f"127.0.0.1:{port}", "PUSHGO_LOG_LEVEL": "warning", **env}
        return cls(label, [sys.executable, "-m", "pushgo.cli", "serve"], full, port=port, log=log,
                   cpu=cpu)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> ServerProcess:
        with self.log_path.open("ab") as log:
            # Our own command lines: this interpreter and fixed arguments.
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log,  # noqa: S603
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited {self.proc.returncode}: {self.log_tail()}")
            try:
                token = self.env.get("PUSHGO_TOKEN")
                auth = {"authorization": f"Bearer {token}"} if token else {}
                if httpx.get(self.url + self.ready_path, headers=auth, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.label} was not ready within {timeout:.0f} s: {self.log_tail()}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid) if self.proc is not None else 0.0

    def rss_mb(self) -> float:
        return peak_rss_mb(self.pid) if self.proc is not None else 0.0

    def log_tail(self, n: int = 600) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class H2Load:
    """One timed h2load run against a URL: ``-D`` seconds after a warm-up, HTTP/1.1 or h2c."""

    url: str
    body: Path
    headers: list[tuple[str, str]]
    workdir: Path
    cpu: int | None = None

    def run(self, *, proto: str, clients: int, streams: int, seconds: float,
            warmup_s: float = 0.5, server: ServerProcess | None = None) -> dict[str, Any]:
        log = self.workdir / "h2load.tsv"
        out = self.workdir / "h2load.out"
        log.unlink(missing_ok=True)
        cmd = ["h2load", "-c", str(clients), "-t", "1", "-D", f"{round(seconds * 1000)}ms",
               "--warm-up-time", f"{round(warmup_s * 1000)}ms", "-d", str(self.body),
               "--log-file", str(log)]
        if proto == "h1":
            cmd.append("--h1")
        else:
            cmd += ["-m", str(streams)]
        for k, v in self.headers:
            cmd += ["-H", f"{k}: {v}"]
        cmd.append(self.url)
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        s0 = server.cpu_seconds() if server else 0.0
        t0 = time.perf_counter()
        with out.open("w") as f:
            # Fixed arguments and a URL of our own server.
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,  # noqa: S603
                                    stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
        wall_total = time.perf_counter() - t0
        server_cpu = (server.cpu_seconds() - s0) if server else 0.0
        text = out.read_text(errors="replace")
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"h2load exited {code}: {text[-500:]}")
        m = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text)
        ok = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", text)
        st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
        if not m or not ok:
            raise RuntimeError(f"cannot read h2load's output: {text[-500:]}")
        lat = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines()
                     if line.count("\t") >= 2) if log.exists() else []
        done = int(ok.group(3))
        # "failed" counts non-2xx answers; "errored" requests that got no answer. h2load's
        # HTTP/1.1 parser records no status when the reason phrase is empty (Hypercorn/h11
        # send "HTTP/1.1 200 "): such answers are counted failed with no status at all.
        codes = [int(st.group(i)) for i in range(1, 5)] if st else [0, 0, 0, 0]
        unread = sum(codes) == 0 and done > 0
        errors = int(ok.group(6)) + (0 if unread else max(sum(codes[1:]), int(ok.group(5))))
        return {"n": done, "rate": float(m.group(3)), "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99), "errors": errors, "status_unread": unread,
                "client_cpu_s": usage.ru_utime + usage.ru_stime,
                "server_cpu_s": server_cpu, "wall_s": wall_total,
                "server_cpu_pct": 100 * server_cpu / wall_total if wall_total else 0.0,
                "client_cpu_pct": 100 * (usage.ru_utime + usage.ru_stime) / wall_total
                if wall_total else 0.0}


def api(base: str, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """One pushgo API call (setup only); its ``data``."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    resp = httpx.post(base + path, json=body, headers=headers, timeout=30)
    doc: dict[str, Any] = resp.json()
    if resp.status_code != 200 or not doc.get("success"):
        raise RuntimeError(f"{path} answered {resp.status_code}: {resp.text[:300]}")
    data: dict[str, Any] = doc.get("data") or {}
    return data


def private_channel(base: str, password: str, token: str | None = None,
                    name: str = "bench") -> tuple[str, str]:
    """(device_key, channel_id): one private-route device subscribed to a new channel."""
    key = str(api(base, "/device/register", {"platform": "android"}, token)["device_key"])
    api(base, "/channel/device", {"device_key": key, "channel_type": "private"}, token)
    channel = api(base, "/channel/subscribe", {"device_key": key, "channel_name": name,
                                               "password": password}, token)
    return key, str(channel["channel_id"])
