"""A real headless Chromium for the browser-page tests: Debian's ``chromium`` driven by
Playwright's Python package (its sync API, in one thread of its own, so the same test runs on
Trio and on asyncio while the gateway keeps serving from the test's event loop).

Under CI=true a missing Chromium or Playwright fails the test instead of skipping it.

Also a loopback HTTP listener standing in for an OAuth client's redirect URI: the browser
really follows the authorization server's redirect to it.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pytest

from tests.conftest import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

T = TypeVar("T")

CHROMIUM = os.environ.get("PUSHGO_TEST_CHROMIUM", "/usr/bin/chromium")
#: Every Playwright wait (navigation, selector, URL) gives up after this many milliseconds.
WAIT_MS = 15_000
#: A whole browser job (a test's script) gives up after this many seconds.
JOB_TIMEOUT_S = 180
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def browser_problem() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        return f"Chromium is not installed at {CHROMIUM}" + (f" (found {found})" if found else
                                                             " (apt-get install chromium)")
    return None


def require_browser() -> None:
    problem = browser_problem()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"a real browser is required in CI: {problem}")
        pytest.skip(problem)


async def in_browser(script: Callable[[BrowserContext], T], *, locale: str = "en-US",
                     extra_headers: dict[str, str] | None = None) -> T:
    """Run ``script`` with a fresh browser context (its own cookie jar; ``locale`` also sets
    Accept-Language), closed afterwards; return the script's value. One Chromium serves the
    whole test session from one thread (Playwright's sync objects belong to the thread that
    made them); the test's event loop only waits for the job in a worker thread."""
    require_browser()
    job = _Job(partial(_in_context, script, locale, extra_headers))
    _chromium().put(job)
    return await anyio.to_thread.run_sync(job.result)


def _in_context(script: Callable[[BrowserContext], T], locale: str,
                extra_headers: dict[str, str] | None, browser: Browser) -> T:
    context = browser.new_context(locale=locale, extra_http_headers=extra_headers)
    context.set_default_timeout(WAIT_MS)
    try:
        return script(context)
    finally:
        context.close()


class _Job:
    def __init__(self, run: Callable[[Browser], Any]) -> None:
        self.run = run
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        if not self.done.wait(JOB_TIMEOUT_S):
            raise TimeoutError(f"the browser did not finish within {JOB_TIMEOUT_S} s")
        if self.error is not None:
            raise self.error
        return self.value


_queue: queue.Queue[_Job | None] | None = None
_lock = threading.Lock()


def _chromium() -> queue.Queue[_Job | None]:
    """The job queue of the session's browser thread, started on first use."""
    global _queue
    with _lock:
        if _queue is None:
            _queue = queue.Queue()
            thread = threading.Thread(target=_browser_thread, args=(_queue,),
                                      name="chromium", daemon=True)
            thread.start()

            def stop() -> None:
                assert _queue is not None
                _queue.put(None)
                thread.join(30)

            atexit.register(stop)
        return _queue


def _browser_thread(jobs: queue.Queue[_Job | None]) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    with sync_playwright() as pw:
        browser: Browser | None = None
        while (job := jobs.get()) is not None:
            try:
                if browser is None or not browser.is_connected():
                    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=args, timeout=60_000)
                job.value = job.run(browser)
            except BaseException as exc:  # handed to the waiting test
                job.error = exc
            finally:
                job.done.set()
        if browser is not None:
            browser.close()


def is_png(data: bytes) -> bool:
    return len(data) > 100 and data.startswith(PNG_MAGIC)


class Callback:
    """An OAuth client's loopback redirect URI (``http://127.0.0.1:<port>/callback``) that
    records the full URL of every request to it and answers a tiny page."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self._arrived = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/callback":  # the browser's /favicon.ico
                    self.send_error(404)
                    return
                owner.hits.append(f"http://127.0.0.1:{owner.port}{self.path}")
                owner._arrived.set()
                body = b"<!doctype html><title>client</title><p id=client>back in the app</p>"
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.uri = f"http://127.0.0.1:{self.port}/callback"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @contextmanager
    def running(self) -> Iterator[Callback]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
