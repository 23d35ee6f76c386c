"""Real servers for tests that need one: Hypercorn in the test's own task group (SSE needs a
real connection), and ``pushgo serve`` as a child process (restarts, kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import sniffio

from pushgo import hypercorn_guard
from pushgo.app import Gateway
from pushgo.settings import Settings
from tests.conftest import free_port


@asynccontextmanager
async def hypercorn_server(gateway: Gateway) -> AsyncIterator[str]:
    """Serve ``gateway`` (already running) on a loopback port; yields its base URL."""
    async with serve_app(gateway.asgi, gateway.settings) as base:
        yield base


@asynccontextmanager
async def serve_app(app: Any, settings: Settings | None = None) -> AsyncIterator[str]:
    """Serve any ASGI app (lifespan ignored) on a loopback port; yields its base URL.

    Hypercorn is configured as ``pushgo serve`` configures it, from ``settings`` (header
    deadline, connection cap), defaults when None."""
    port = free_port()
    config = hypercorn_guard.server_config(settings or Settings(), [f"127.0.0.1:{port}"])
    config.graceful_timeout = 1
    stop = anyio.Event()

    async def trigger() -> None:
        await stop.wait()

    hypercorn_guard.install()  # as pushgo serve: one connection's error never ends it
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    # Hypercorn would run the lifespan again; the test's gateway already runs.
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(_no_lifespan(app), config, shutdown_trigger=trigger))
        base = f"http://127.0.0.1:{port}"
        with anyio.fail_after(10):
            while True:
                try:
                    async with httpx.AsyncClient() as c:
                        await c.get(base + "/healthz")
                    break
                except httpx.TransportError:
                    await anyio.sleep(0.02)
        try:
            yield base
        finally:
            stop.set()


def _no_lifespan(app: Any) -> Any:
    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await app(scope, receive, send)

    return wrapper


class ServerProcess:
    """``pushgo serve`` in a child process on a free port."""

    def __init__(self, env: dict[str, str], log_path: str, cwd: str | None = None) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "PUSHGO_HTTP_ADDR": f"127.0.0.1:{self.port}"}
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen([sys.executable, "-m", "pushgo.cli", "serve"],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                token = self.env.get("PUSHGO_TOKEN")
                headers = {"authorization": f"Bearer {token}"} if token else {}
                if httpx.get(self.url + "/readyz", timeout=1, headers=headers).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready: " + self.log())

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
