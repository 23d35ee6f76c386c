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
- **Deadline**: ``run(..., deadline=t)`` (``anyio.current_time()`` units) bounds the whole
  call — the wait for admission, for a free thread and for the job — and raises TimeoutError
  past it. A job still queued is taken back; a running one is *abandoned*: the caller leaves,
  the job's ``cancel`` hook (the store's: cancel the query on its connection) runs on a thread
  of its own, and the job's thread finishes the job (its transaction commits or rolls back
  whole; the store rolls back what an abandoned job wrote rather than commit it). Until then
  only other callers' deadlines wait on that thread, never an event loop. Outer cancellations
  do not take such a call away before its deadline: it ends (or times out) first.
- **One owner**: the ``Store`` that made the pool; ``close()`` stops the threads (they come
  back on the next call).

A pool serves one event loop at a time (its admission counter lives in that loop's thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import anyio
import sniffio

T = TypeVar("T")

log = logging.getLogger("pushgo.store")

_QUEUED, _RUNNING, _CANCELLED, _DONE = 0, 1, 2, 3

#: Guards each job's ``abandoned``/``cancel`` handshake between its caller and its thread.
_cancel_lock = threading.Lock()
_local = threading.local()  # .job: the StoreCall this worker thread is running


class StoreCall:
    __slots__ = ("abandoned", "args", "cancel", "context", "done", "error", "fn", "post",
                 "result", "state", "waiter", "wake")

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
        self.waiter: Any = None  # the asyncio future that waits; Trio: whether a task does
        self.abandoned = False  # its caller's deadline passed while it ran: nobody waits
        self.cancel: Callable[[], None] | None = None  # stops it early (set while it runs)

    def set_cancel(self, cancel: Callable[[], None] | None) -> bool:
        """Called by the job on its thread: ``cancel`` stops it early if its caller gives up.
        False when the caller already has (the job should stop now)."""
        with _cancel_lock:
            if self.abandoned and cancel is not None:
                return False
            self.cancel = cancel
            return True

    def _abandon(self) -> None:
        with _cancel_lock:
            self.abandoned = True
            cancel, self.cancel = self.cancel, None
        if cancel is not None:  # it may block (a frozen server): never on the event loop
            threading.Thread(target=_run_cancel, args=(cancel,), name="pushgo-store-cancel",
                             daemon=True).start()


def current_call() -> StoreCall | None:
    """The job the calling worker thread is running (None elsewhere)."""
    return getattr(_local, "job", None)


def _run_cancel(cancel: Callable[[], None]) -> None:
    try:
        cancel()
    except Exception as exc:  # the job's own end reports what matters
        log.debug("cancelling a store call failed", extra={"fields": {
            "error": type(exc).__name__}})


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

    async def run(self, fn: Callable[..., T], *args: Any, deadline: float | None = None) -> T:
        if deadline is None:
            await self._admit()
        else:
            with anyio.CancelScope(deadline=deadline) as scope:
                await self._admit()
            if scope.cancelled_caught:
                raise TimeoutError("no store thread free before the deadline")
        job = StoreCall(fn, args)
        try:
            if not self._threads:
                self._start()
            if deadline is None:
                await self._wait(job, None)
            else:
                with anyio.CancelScope(deadline=deadline):
                    await self._wait(job, deadline)
                if not job.done:  # this deadline's cancellation, caught above
                    raise TimeoutError("store call deadline passed")
        finally:
            self._release()
            # The wake-up closure holds the job (and the waiting task): with that cycle broken
            # a call's objects are freed at once, not left to the garbage collector,
            # whose full passes over thousands of connections' state cost up to a second.
            # A thread still running an abandoned job then finds nobody to wake.
            job.wake = job.post = None
        error = job.error
        if error is not None:
            job.error = None  # no cycle through the traceback
            try:
                raise error
            finally:
                del error
        return job.result  # type: ignore[no-any-return]

    async def _wait(self, job: StoreCall, deadline: float | None) -> None:
        if sniffio.current_async_library() == "trio":
            await self._run_trio(job, deadline)
        else:
            await self._run_asyncio(job, deadline)

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

    def _give_up(self, job: StoreCall, deadline: float | None) -> bool:
        """The caller's wait was cancelled: True if it may leave now (the job was taken back,
        or its deadline passed and it is abandoned), False if it waits for the job's end."""
        if job.abandoned:
            return True
        with self._lock:
            if job.state == _QUEUED:
                job.state = _CANCELLED  # a thread that takes it skips it
                return True
            if job.state == _DONE or deadline is None or anyio.current_time() < deadline:
                return False  # running (or done, its wake-up on the way): wait for its end
        job._abandon()
        return True

    def _expire(self, job: StoreCall) -> None:
        """asyncio: the deadline of a job whose caller waits past a cancellation."""
        with self._lock:
            if job.done or job.state == _DONE:
                return
        job._abandon()
        if not job.waiter.done():
            job.waiter.cancel()

    async def _run_trio(self, job: StoreCall, deadline: float | None) -> None:
        import trio

        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        # job.waiter: True while the task sleeps on the job (wake() reschedules it then).

        def wake() -> None:
            job.done = True
            if job.waiter:
                job.waiter = False
                trio.lowlevel.reschedule(task)

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            if self._give_up(job, deadline) or deadline is not None:
                # Taken back, abandoned, or (running, with a deadline) cancelled from outside:
                # the latter waits below for the job's end, within its deadline.
                job.waiter = False
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED  # running: wait for its end; Trio cancels later

        job.wake, job.post = wake, token.run_sync_soon
        job.waiter = True
        self._jobs.put(job)
        try:
            await trio.lowlevel.wait_task_rescheduled(abort)
        except trio.Cancelled:
            if deadline is None or job.done or job.state != _RUNNING or job.abandoned:
                raise
            # Cancelled from outside while running: the transaction ends as it ends, so wait
            # for that (shielded), but never past the deadline.
            with trio.CancelScope(deadline=deadline, shield=True):
                if not job.done:
                    job.waiter = True
                    await trio.lowlevel.wait_task_rescheduled(abort)
            if not job.done:
                job._abandon()
            raise

    async def _run_asyncio(self, job: StoreCall, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            job.done = True
            if not job.waiter.done():
                job.waiter.set_result(None)

        job.waiter = loop.create_future()
        job.wake, job.post = wake, loop.call_soon_threadsafe
        self._jobs.put(job)
        cancelled: BaseException | None = None
        timer: asyncio.TimerHandle | None = None
        try:
            while not job.done:
                try:
                    await job.waiter
                except asyncio.CancelledError as exc:
                    if self._give_up(job, deadline):
                        raise
                    # Running: its transaction ends as it ends; wait for that (never past
                    # the deadline: the timer cancels this wait then), then give way.
                    cancelled = exc
                    if not job.done:
                        job.waiter = loop.create_future()
                        if deadline is not None and timer is None:
                            timer = loop.call_at(deadline, self._expire, job)
        finally:
            if timer is not None:
                timer.cancel()
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
            _local.job = job
            try:
                job.result = job.context.run(job.fn, *job.args)
            except BaseException as exc:  # handed to the caller, raised there
                job.error = exc
            finally:
                _local.job = None
            self._finish((job,))
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
            self._finish(batch.jobs)
            _notify_all(batch.jobs)
            if batch.stopping:
                return

    def _finish(self, jobs: Iterable[StoreCall]) -> None:
        with self._lock:  # an abandoning caller sees it has ended (its wake-up is on its way)
            for job in jobs:
                job.state = _DONE

    def close(self, timeout: float = 10.0) -> None:
        """Stop the threads once the jobs queued before this are done (waiting at most
        ``timeout`` in all: a thread stuck on a frozen database is left behind)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        end = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))


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
