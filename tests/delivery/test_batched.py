"""pushgo.delivery.batched.Batched, as the private streams and warp-link sessions use it
(pushgo.delivery.private.InboxCalls): the inbox pages of sessions woken together are read in
batches by the callers themselves, at most ``parallel`` store reads at once, each for up to
``batch`` devices, every caller answered with its own page; a failed read fails its batch's
callers, a caller gone (cancelled) leaves the others served. Acknowledgements are batched the
same way."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pushgo.delivery.private import InboxCalls
from pushgo.service.inbox import InboxItem

pytestmark = pytest.mark.anyio


class FakeInbox:
    """Pages of a made-up inbox (device ``d<n>`` has items n+1 …); records each read's
    devices; ``gate`` holds reads until set; ``fail`` makes reads raise."""

    def __init__(self) -> None:
        self.reads: list[list[str]] = []
        self.running = 0
        self.most = 0
        self.gate: anyio.Event | None = None
        self.fail: Exception | None = None

    async def pages(self, wants: list[tuple[str, int, int]]) -> dict[str, list[InboxItem]]:
        self.reads.append([key for key, _, _ in wants])
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await anyio.lowlevel.checkpoint()
            if self.fail is not None:
                failure, self.fail = self.fail, None  # the next read only
                raise failure
            return {key: [InboxItem(seq, f"{key}-{seq}", "{}")
                          for seq in range(after + 1, after + 1 + limit)]
                    for key, after, limit in wants}
        finally:
            self.running -= 1


class Reads:
    """The page reads of an InboxCalls over the fake inbox, and their queue's state."""

    def __init__(self, inbox: FakeInbox, **kw: Any) -> None:
        self.calls = InboxCalls(inbox, **kw)  # type: ignore[arg-type]

    async def page(self, device_key: str, after_seq: int, limit: int) -> list[InboxItem]:
        return await self.calls.page(device_key, after_seq, limit)

    @property
    def _leading(self) -> int:
        return self.calls._reads._leading

    @property
    def _queue(self) -> Any:
        return self.calls._reads._queue


def reads(inbox: FakeInbox, **kw: Any) -> Reads:
    return Reads(inbox, **kw)


async def test_many_callers_at_once_share_few_batched_reads_each_getting_its_own_page():
    inbox = FakeInbox()
    batched = reads(inbox, batch=10, parallel=2)
    got: dict[str, list[int]] = {}

    async def one(n: int) -> None:
        items = await batched.page(f"d{n}", n, 2)
        got[f"d{n}"] = [i.seq for i in items]

    async with anyio.create_task_group() as tg:
        for n in range(95):
            tg.start_soon(one, n)
    assert got == {f"d{n}": [n + 1, n + 2] for n in range(95)}
    assert len(inbox.reads) == 10  # 95 devices, 10 per read
    assert sorted(k for r in inbox.reads for k in r) == sorted(got)
    assert inbox.most <= 2
    assert batched._leading == 0 and not batched._queue


async def test_a_failed_read_fails_the_callers_of_its_batch_and_the_next_ones_are_served():
    inbox = FakeInbox()
    inbox.gate = anyio.Event()
    batched = reads(inbox, batch=3, parallel=1)
    outcome: dict[int, str] = {}

    async def one(n: int) -> None:
        try:
            await batched.page(f"d{n}", 0, 1)
            outcome[n] = "ok"
        except RuntimeError:
            outcome[n] = "failed"

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(one, n)
        await anyio.wait_all_tasks_blocked()
        inbox.fail = RuntimeError("store down")
        inbox.gate.set()
    assert sorted(outcome.values()) == ["failed"] * 3 + ["ok"] * 3
    assert batched._leading == 0


async def test_a_cancelled_leader_hands_its_place_on_and_its_batch_is_read_again():
    inbox = FakeInbox()
    first = inbox.gate = anyio.Event()
    batched = reads(inbox, batch=4, parallel=1)
    got: list[str] = []
    scopes = {f"d{n}": anyio.CancelScope() for n in range(4)}

    async def one(key: str) -> None:
        with scopes[key]:
            await batched.page(key, 0, 1)
            got.append(key)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "d0")  # leads a read of its own, held
        await anyio.wait_all_tasks_blocked()
        for n in range(1, 4):
            tg.start_soon(one, f"d{n}")  # queued behind it
        await anyio.wait_all_tasks_blocked()
        second = inbox.gate = anyio.Event()
        first.set()  # d0 is served; the oldest queued leads the read of the three
        await anyio.wait_all_tasks_blocked()
        leader, *others = inbox.reads[1]
        scopes[leader].cancel()  # and goes away in the middle of it
        await anyio.wait_all_tasks_blocked()
        second.set()
    assert sorted(got) == sorted(["d0", *others])
    assert [sorted(r) for r in inbox.reads] == [["d0"], ["d1", "d2", "d3"], sorted(others)]
    assert batched._leading == 0


async def test_a_waiting_caller_cancelled_is_skipped_and_the_rest_are_served():
    inbox = FakeInbox()
    inbox.gate = anyio.Event()
    batched = reads(inbox, batch=2, parallel=1)
    got: list[str] = []

    async def one(n: int) -> None:
        await batched.page(f"d{n}", 0, 1)
        got.append(f"d{n}")

    gone = anyio.CancelScope()

    async def waiting() -> None:
        with gone:
            await batched.page("gone", 0, 1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiting)
        await anyio.wait_all_tasks_blocked()
        gone.cancel()
        for n in range(1, 4):
            tg.start_soon(one, n)
        await anyio.wait_all_tasks_blocked()
        inbox.gate.set()
    assert sorted(got) == ["d0", "d1", "d2", "d3"]
    assert "gone" not in [k for r in inbox.reads for k in r]
    assert batched._leading == 0


async def test_acknowledgements_of_one_moment_are_one_write_each_answered():
    written: list[list[tuple[str, str]]] = []

    class AckInbox(FakeInbox):
        async def ack_link(self, pairs: list[tuple[str, str]]) -> list[bool]:
            written.append(list(pairs))
            await anyio.lowlevel.checkpoint()
            return [not delivery_id.startswith("gone") for _, delivery_id in pairs]

    calls = InboxCalls(AckInbox(), batch=50, parallel=1)  # type: ignore[arg-type]
    answers: dict[str, bool] = {}

    async def one(n: int) -> None:
        delivery_id = f"gone{n}" if n % 10 == 0 else f"d{n}"
        answers[delivery_id] = await calls.ack(f"k{n}", delivery_id)

    async with anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(one, n)
    assert sum(map(len, written)) == 100 and len(written) <= 3
    assert all(answers[f"d{n}"] for n in range(100) if n % 10)
    assert not any(answers[f"gone{n}"] for n in range(0, 100, 10))
