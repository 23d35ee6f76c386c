"""``pushgo serve --workers N``: a supervisor process and N gateway workers on one machine.

The supervisor binds the listening socket once and hands it to every worker (``fd://``), so
the kernel spreads connections over them and a worker that dies loses no queued connection.
It restarts a worker that exits on its own (with backoff), forwards SIGTERM/SIGINT as SIGTERM
(each worker drains and exits 0) and exits 0 after a graceful stop; a second signal kills the
workers at once. Workers run in their own process group (a terminal's Ctrl-C reaches only the
supervisor) and stop by themselves if the supervisor disappears.

Each worker also answers on a private Unix socket in a directory only the supervisor's user
can read: ``/metrics`` on the shared port adds up every worker's numbers through them.
Workers share the outbox through PostgreSQL leases; SQLite is single-process and refused.
Imports nothing from pushgo but settings and logging.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from pushgo.settings import Settings

log = logging.getLogger("pushgo.workers")

#: A worker that lived this long before exiting is restarted without backoff.
STABLE_S = 30.0
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
#: How long a worker may take to drain after SIGTERM before it is killed.
STOP_TIMEOUT_S = 30.0
#: A worker exiting with this code at its first start means a settings/database error.
EXIT_USAGE = 2


def refuse_reason(settings: Settings) -> str | None:
    """Why these settings cannot run several workers, or None."""
    if settings.workers > 1 and not settings.db_url.lower().startswith(("postgresql", "postgres")):
        return (f"PUSHGO_WORKERS={settings.workers} needs PostgreSQL: SQLite is single-process "
                "(set PUSHGO_DB_URL=postgresql://… or use one worker)")
    return None


def listen_socket(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET
    sock = socket.create_server((settings.http_host, settings.http_port), family=family,
                                backlog=2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    failures: int = 0
    starts: int = 0


class Supervisor:
    def __init__(self, settings: Settings, serve_args: Sequence[str]) -> None:
        self.settings = settings
        self.serve_args = list(serve_args)
        self.workers = [_Worker(i) for i in range(settings.workers)]
        self.sock: socket.socket | None = None
        self.dir = ""
        self._signals: list[int] = []
        self._stopping_since: float | None = None
        self._exit = 0

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        self.sock = listen_socket(self.settings)
        self.dir = tempfile.mkdtemp(prefix="pushgo-workers-")
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous = signal.set_wakeup_fd(wake_w)
        handlers = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        log.info("supervisor listening", extra={"fields": {
            "addr": self.settings.http_addr, "workers": len(self.workers), "pid": os.getpid()}})
        try:
            for worker in self.workers:
                self._start(worker)
            while not self._done():
                select.select([wake_r], [], [], 0.5)
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self._step()
        finally:
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
            signal.set_wakeup_fd(previous)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
            self.sock.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        log.info("supervisor stopped", extra={"fields": {"exit": self._exit}})
        return self._exit

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    def _done(self) -> bool:
        return self._stopping_since is not None and all(
            w.proc is None or w.proc.poll() is not None for w in self.workers)

    def _step(self) -> None:
        now = time.monotonic()
        while self._signals:
            signum = self._signals.pop(0)
            if self._stopping_since is None:
                log.info("stopping workers", extra={"fields": {"signal": signum}})
                self._stop(signal.SIGTERM)
            else:
                log.warning("second signal: killing workers")
                self._stop(signal.SIGKILL)
        if self._stopping_since is not None and now - self._stopping_since > STOP_TIMEOUT_S:
            self._stop(signal.SIGKILL)
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and (code := proc.poll()) is not None:
                worker.proc = None
                if self._stopping_since is None:
                    self._exited(worker, code, now)
            if (worker.proc is None and worker.restart_at is not None
                    and self._stopping_since is None and now >= worker.restart_at):
                self._start(worker)

    def _exited(self, worker: _Worker, code: int, now: float) -> None:
        if code == EXIT_USAGE and worker.starts == 1:
            log.error("worker could not start; stopping", extra={"fields": {
                "worker": worker.index, "exit": code}})
            self._exit = EXIT_USAGE
            self._stop(signal.SIGTERM)
            return
        lived = now - worker.started_at
        worker.failures = 0 if lived >= STABLE_S else worker.failures + 1
        delay = 0.0 if worker.failures == 0 else min(
            RESTART_MAX_S, RESTART_MIN_S * 2 ** (worker.failures - 1))
        worker.restart_at = now + delay
        log.warning("worker exited; restarting", extra={"fields": {
            "worker": worker.index, "exit": code, "restart_in_s": delay}})

    def _stop(self, sig: signal.Signals) -> None:
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                try:
                    worker.proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def _start(self, worker: _Worker) -> None:
        assert self.sock is not None
        fd = self.sock.fileno()
        argv = [sys.executable, "-m", "pushgo.cli", "serve", *self.serve_args,
                "--workers", "1", "--listen-fd", str(fd), "--worker-dir", self.dir,
                "--worker-index", str(worker.index), "--worker-count", str(len(self.workers))]
        worker.proc = subprocess.Popen(argv, pass_fds=(fd,), process_group=0)  # noqa: S603
        worker.started_at = time.monotonic()
        worker.restart_at = None
        worker.starts += 1
        log.info("worker started", extra={"fields": {
            "worker": worker.index, "pid": worker.proc.pid}})


def worker_socket(worker_dir: str, index: int) -> str:
    return os.path.join(worker_dir, f"worker-{index}.sock")
