"""A PostgreSQL server of the test's own: ``initdb`` into a temporary directory, ``postgres`` on a
free loopback port, password (SCRAM) authentication over TCP. Tests may freeze it (SIGSTOP),
thaw it, stop it and start it again without touching the shared server on port 5432.

Run as root (CI), the cluster belongs to the ``postgres`` OS user (PostgreSQL refuses to run
as root). Under CI=true a missing ``initdb`` fails the test instead of skipping it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import IN_CI, free_port

PASSWORD = "pg-Secret-7f3a9c"  # the role's real password: must never show in an answer or log
ROLE = "pushgo"
DATABASE = "pushgo"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgInstance:
    def __init__(self, root: Path, bindir: Path) -> None:
        self.root = root
        self.bindir = bindir
        self.data = root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.user = {"user": pw.pw_uid, "group": pw.pw_gid}
            os.chown(root, pw.pw_uid, pw.pw_gid)

    def url(self, password: str = PASSWORD, database: str = DATABASE) -> str:
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=60, **self.user)

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text("unused-superuser-pw\n")
        if self.user:
            os.chown(pwfile, self.user["user"], self.user["group"])
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", str(pwfile),
                  "-E", "UTF8", "--no-sync")
        self.start()
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection[Any]]:
        """The superuser over the instance's Unix socket (trust)."""
        with psycopg.connect(host=str(self.root), port=self.port, user="postgres",
                             dbname="postgres", autocommit=True, connect_timeout=5) as conn:
            yield conn

    def start(self) -> None:
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
             "-c", "fsync=off", "-c", "max_connections=40"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self.user)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + self.log())
            try:
                with self.admin():
                    return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise RuntimeError("postgres did not start: " + self.log())

    def _processes(self) -> list[int]:
        """The postmaster and its children (each backend is a process group of its own)."""
        assert self.proc is not None
        pids = [self.proc.pid]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.split("/")[2]))
        return pids

    def _signal_all(self, sig: int) -> None:
        for pid in self._processes():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def freeze(self) -> None:
        """SIGSTOP the postmaster, then every backend: connections stay open, nothing
        answers (the stopped postmaster starts no new backend)."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, new connections refused."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal_all(signal.SIGCONT)  # a frozen server cannot stop
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextmanager
def own_postgres() -> Iterator[PgInstance]:
    bindir = _bin_dir()
    if bindir is None:
        if IN_CI:
            pytest.fail("initdb is required in CI (PostgreSQL server binaries)")
        pytest.skip("no initdb: PostgreSQL server binaries are not installed")
    root = Path(tempfile.mkdtemp(prefix="pushgo-pg-"))
    instance = PgInstance(root, bindir)
    try:
        instance.init()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)
