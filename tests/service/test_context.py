"""pushgo.service.context: the ids the gateway makes (device keys; time-ordered operation and
message ids) and what every service shares (the clock, the listeners, the counts)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushgo.service import context
from pushgo.service.context import AcceptCounts, Context, new_hex_id, new_time_ordered_id
from pushgo.store import Store
from tests.conftest import make_settings
from tests.service.support import T0, Clock, Recorder

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def bare_ctx(tmp_path: Path) -> Iterator[Context]:
    """A context on a store that is never used."""
    url = f"sqlite:///{tmp_path}/unused.db"
    store = Store(url, pool_size=1)
    try:
        yield Context(make_settings(url, private_ttl_seconds=90), store, clock=Clock())
    finally:
        store.dispose()


def test_a_hex_id_is_32_lowercase_hex_digits_and_never_repeats():
    ids = [new_hex_id() for _ in range(5000)]  # several refills of the random buffer
    assert all(HEX32.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_hex_ids_use_every_bit():
    ones = zeros = 0
    for _ in range(200):
        bits = int(new_hex_id(), 16)
        ones |= bits
        zeros |= ~bits & (2**128 - 1)
    assert ones == zeros == 2**128 - 1


def test_a_time_ordered_id_starts_with_the_time_in_ms():
    made = new_time_ordered_id(T0)
    assert HEX32.fullmatch(made)
    assert int(made[:12], 16) == T0


def test_time_ordered_ids_of_one_ms_differ_in_their_random_part():
    ids = {new_time_ordered_id(T0) for _ in range(1000)}
    assert len(ids) == 1000
    assert {i[:12] for i in ids} == {f"{T0:012x}"}


def test_time_ordered_ids_sort_by_their_time():
    times = [T0 + d for d in (0, 1, 999, 60_000, 86_400_000)]
    ids = [new_time_ordered_id(t) for t in reversed(times)]
    assert sorted(ids) == ids[::-1]


def test_the_time_part_keeps_the_low_48_bits():
    assert new_time_ordered_id(2**48 + 5)[:12] == f"{5:012x}"


def test_the_random_bytes_come_in_any_size_and_refill():
    source = context._RandomBytes()
    chunks = [source.take(10) for _ in range(context._RandomBytes.SIZE // 10 + 5)]
    big = source.take(context._RandomBytes.SIZE + 1)
    assert all(len(c) == 10 for c in chunks) and len(big) == context._RandomBytes.SIZE + 1
    assert len(set(chunks)) == len(chunks)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_random_bytes():
    new_hex_id()  # the buffer holds bytes the parent has not used yet
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        os.write(write_end, new_hex_id().encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    assert HEX32.fullmatch(child)
    assert child != new_hex_id()


def test_the_context_tells_the_time_of_its_clock(bare_ctx):
    assert bare_ctx.now() == T0
    bare_ctx.clock.advance(1500)
    assert bare_ctx.now() == T0 + 1500


def test_the_default_ttl_is_the_private_ttl_in_ms(bare_ctx):
    assert bare_ctx.default_ttl_ms == 90_000


def test_accepted_work_and_subscription_changes_reach_every_listener(bare_ctx):
    first, second = Recorder(), Recorder()
    bare_ctx.listeners += [first, second]
    bare_ctx.accepted("C1")
    bare_ctx.subscriptions_changed("D1")
    assert first == second == Recorder(accepted=["C1"], changed=["D1"])


def test_accept_counts_add_up_by_kind():
    counts = AcceptCounts()
    counts.accepted("message", 3)
    counts.accepted("message", 0)
    counts.accepted("event", 2)
    assert (counts.operations, counts.deliveries) == ({"message": 2, "event": 1}, 5)
