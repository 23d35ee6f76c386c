"""The store's own worker threads: every store call runs on one of a fixed set of threads that
the store owns, on Trio and asyncio alike.

Why not ``anyio.to_thread.run_sync``: per call it takes a capacity limiter (a trip through the
event loop), hands the job over through a ``queue.Queue`` (a Python-level condition), and on
Trio names the OS thread twice (two ``prctl`` calls through ctypes); under a stream of sends
that was a tenth of the gateway's CPU. Here a call is one ``SimpleQueue.put`` to a thread that
is already waiting, and one wake-up of the caller's event loop when the job is done
(``run_sync_soon`` on Trio, ``call_soon_threadsafe`` on asyncio).

Guarantees:

- **Bounded**: at most ``limit`` jobs are queued or running; further callers wait in the event
  loop (cancellable, holding no thread or connection).
- **Cancellation-safe**: a caller cancelled while its job is still queued takes it back — the
  job never runs. Once a thread has started it, the job runs to its end (its transaction
  commits or rolls back whole) and the caller waits for that end before it sees the
  cancellation (Trio: at its next checkpoint, with the result returned; asyncio: the
  cancellation is raised once the job is done). So no caller ever leaves a transaction half
  done behind it, as with ``anyio.to_thread.run_sync`` (which never abandons a thread).
- **One owner**: the ``Store`` that made the pool; ``close()`` stops the threads (they come
  back on the next call).

A pool serves one event loop at a time (its admission counter lives in that loop's thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import sniffio

T = TypeVar("T")

_QUEUED, _RUNNING, _CANCELLED = 0, 1, 2


class StoreCall:
    __slots__ = ("args", "context", "done", "error", "fn", "post", "result", "state", "waiter",
                 "wake")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()
        self.state = _QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: Callable[[], None] | None = None  # run in the caller's loop when done
        self.post: Callable[[Callable[[], None]], object] | None = None  # there, thread-safe
        self.done = False  # set in the caller's loop once the thread has finished
        self.waiter: Any = None  # the asyncio future or Trio task that waits


class StoreThreads:
    """A fixed pool of ``size`` worker threads; ``await run(fn, *args)`` runs ``fn(*args)``
    on one of them."""

    def __init__(self, size: int, *, limit: int | None = None, name: str = "pushgo-store",
                 batch: Callable[[Batch], None] | None = None, max_batch: int = 64) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self.size = size
        self.limit = limit if limit is not None else size * 4
        self.name = name
        # With ``batch``, a thread hands its jobs over in batches: ``batch(Batch)`` runs every
        # job it yields and sets each one's ``result`` or ``error`` (the store commits a batch
        # of writes at once).
        self._batch = batch
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue[StoreCall | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # job state QUEUED → RUNNING | CANCELLED; thread start
        self._in_flight = 0
        self._admission: deque[anyio.Event] = deque()

    # -- the caller's side (event loop) ------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        await self._admit()
        try:
            job = StoreCall(fn, args)
            if not self._threads:
                self._start()
            if sniffio.current_async_library() == "trio":
                await self._run_trio(job)
            else:
                await self._run_asyncio(job)
        finally:
            self._release()
        error = job.error
        if error is not None:
            job.error = None  # no cycle through the traceback
            try:
                raise error
            finally:
                del error
        return job.result  # type: ignore[no-any-return]

    async def _admit(self) -> None:
        if self._in_flight < self.limit and not self._admission:
            self._in_flight += 1
            return
        ready = anyio.Event()
        self._admission.append(ready)
        try:
            await ready.wait()  # _release() counted us in before setting it
        except BaseException:
            if ready.is_set():
                self._release()  # admitted and cancelled at once: pass the slot on
            else:
                self._admission.remove(ready)
            raise

    def _release(self) -> None:
        if self._admission:
            self._admission.popleft().set()  # the slot goes straight to the next caller
        else:
            self._in_flight -= 1

    async def _run_trio(self, job: StoreCall) -> None:
        import trio

        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def wake() -> None:
            job.done = True
            trio.lowlevel.reschedule(task)

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            with self._lock:
                if job.state == _QUEUED:
                    job.state = _CANCELLED  # a thread that takes it skips it
                    return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED  # running: wait for its end; Trio cancels later

        job.wake, job.post = wake, token.run_sync_soon
        self._jobs.put(job)
        await trio.lowlevel.wait_task_rescheduled(abort)

    async def _run_asyncio(self, job: StoreCall) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            job.done = True
            if not job.waiter.done():
                job.waiter.set_result(None)

        job.waiter = loop.create_future()
        job.wake, job.post = wake, loop.call_soon_threadsafe
        self._jobs.put(job)
        cancelled: BaseException | None = None
        while not job.done:
            try:
                await job.waiter
            except asyncio.CancelledError as exc:
                with self._lock:
                    if job.state == _QUEUED:
                        job.state = _CANCELLED
                        raise
                # Running: its transaction ends as it ends; wait for that, then give way.
                cancelled = exc
                if not job.done:
                    job.waiter = loop.create_future()
        if cancelled is not None:
            raise cancelled

    # -- the threads' side -------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._threads:
                return
            for i in range(self.size):
                thread = threading.Thread(target=self._work, name=f"{self.name}-{i}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def _claim(self, job: StoreCall) -> bool:
        with self._lock:
            if job.state == _CANCELLED:
                return False
            job.state = _RUNNING
            return True

    def _work(self) -> None:
        if self._batch is not None:
            self._work_batches(self._batch)
            return
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            if not self._claim(job):
                continue
            try:
                job.result = job.context.run(job.fn, *job.args)
            except BaseException as exc:  # handed to the caller, raised there
                job.error = exc
            _notify(job)
            job = None  # the caller owns it now

    def _work_batches(self, run_batch: Callable[[Batch], None]) -> None:
        jobs = self._jobs
        while True:
            first = jobs.get()
            if first is None:
                return
            # Give the CPU (and the GIL) back once before starting: an event loop that has
            # more requests at hand queues their jobs meanwhile, and they join this batch.
            # Without it, a loop that releases the GIL on every socket write handed over one
            # job per batch (a commit each) on a shared CPU. Nothing waits: no-op when idle.
            time.sleep(0)
            if not self._claim(first):
                continue
            batch = Batch(self, first)
            try:
                run_batch(batch)
            except BaseException as exc:  # every job gets the failure
                for job in batch.jobs:
                    job.result, job.error = None, exc
            _notify_all(batch.jobs)
            if batch.stopping:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Stop the threads once the jobs queued before this are done."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join(timeout)


class Batch:
    """The jobs a batching thread runs together: the one it woke up for, then — as the batch
    runs — every job queued meanwhile, up to the pool's ``max_batch`` (iterate it: jobs that
    arrive while earlier ones run join the same batch)."""

    def __init__(self, pool: StoreThreads, first: StoreCall) -> None:
        self._pool = pool
        self.jobs = [first]
        self.stopping = False  # the pool is closing: the thread ends after this batch

    def __iter__(self) -> Iterator[StoreCall]:
        i = 0
        while True:
            if i < len(self.jobs):
                yield self.jobs[i]
                i += 1
                continue
            if self.stopping or len(self.jobs) >= self._pool.max_batch:
                return
            try:
                job = self._pool._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self.stopping = True
                return
            if self._pool._claim(job):
                self.jobs.append(job)


def _notify(job: StoreCall) -> None:
    if job.post is not None and job.wake is not None:
        try:
            job.post(job.wake)
        except RuntimeError:  # the caller's event loop has ended
            pass


def _notify_all(jobs: list[StoreCall]) -> None:
    """One wake-up per event loop for a batch (not one per job)."""
    if len(jobs) == 1:
        _notify(jobs[0])
        return
    by_loop: dict[Any, list[Callable[[], None]]] = {}
    for job in jobs:
        if job.post is not None and job.wake is not None:
            by_loop.setdefault(job.post, []).append(job.wake)
    for post, wakes in by_loop.items():
        try:
            post(functools.partial(_wake_each, wakes))
        except RuntimeError:  # the caller's event loop has ended
            pass


def _wake_each(wakes: list[Callable[[], None]]) -> None:
    for wake in wakes:
        wake()
