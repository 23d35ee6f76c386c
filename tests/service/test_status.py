"""pushgo.service.status: how far an operation's deliveries have got, read from the store;
reads of one operation shared for a moment; watchers woken by accepted work and recorded
results, ending once the operation is done."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import pytest

from pushgo.protocol import wire as W
from pushgo.service import Services
from pushgo.service import status as status_module
from pushgo.service.status import Pulse, is_done, provider_settled
from pushgo.store import providers as P
from pushgo.store import schema as S
from tests.service.support import APNS_TOKEN, PASSWORD, channel, device, fails, message

pytestmark = pytest.mark.anyio
STATES_0 = {"queued": 0, "sent": 0, "failed": 0, "expired": 0}


@pytest.fixture
def fresh_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read goes to the store (no shared read within MIN_INTERVAL_S)."""
    monkeypatch.setattr(status_module, "MIN_INTERVAL_S", 0.0)


async def pull(svc: Services, key: str) -> None:
    await svc.inbox.pull(W.PullIn(device_key=key))


async def send(svc: Services, cid: str, op_id: str) -> None:
    await svc.publisher.send(message(cid, op_id=op_id), PASSWORD)


async def fail_deliveries(svc: Services, reason: str) -> None:
    await svc.ctx.store.run(lambda conn: conn.execute(S.deliveries.update().where(
        S.deliveries.c.route != "private").values(state="failed", last_error=reason)))


async def test_a_new_operation_is_queued_on_each_route_of_its_devices(svc, clock):
    private, apns = await device(svc), await device(svc, "ios", "apns", APNS_TOKEN)
    cid = await channel(svc, private, apns)
    await send(svc, cid, "op-1")
    doc = await svc.status.get("op-1")
    assert doc == {
        "op_id": "op-1", "channel_id": cid, "total": 2, "done": False, "operations": 1,
        "states": {**STATES_0, "queued": 2}, "failures": {}, "retrying": 0,
        "created_at": clock.now,
        "routes": {"private": {**STATES_0, "queued": 1}, "apns": {**STATES_0, "queued": 1}},
        "private": {"waiting_offline": 1}}
    assert not provider_settled(doc)


async def test_an_operation_is_done_when_nothing_is_queued(svc, fresh_reads):
    key = await device(svc)
    await send(svc, await channel(svc, key), "op-1")
    await pull(svc, key)
    doc = await svc.status.get("op-1")
    assert is_done(doc) and doc["states"] == {**STATES_0, "sent": 1}


async def test_failures_are_counted_by_reason(svc, fresh_reads):
    key = await device(svc, "ios", "apns", APNS_TOKEN)
    await send(svc, await channel(svc, key), "op-1")
    await fail_deliveries(svc, "Unregistered")
    doc = await svc.status.get("op-1")
    assert doc["failures"] == {"Unregistered": 1} and doc["done"] is True


async def test_private_deliveries_waiting_for_their_device_do_not_hold_up_providers(svc):
    await send(svc, await channel(svc, await device(svc)), "op-1")
    doc = await svc.status.get("op-1")
    assert not is_done(doc) and provider_settled(doc)


async def test_one_op_id_on_two_channels_adds_up_and_channel_ids_narrow_it(svc):
    key = await device(svc)
    a, b = await channel(svc, key, name="a"), await channel(svc, key, name="b")
    await send(svc, a, "shared")
    await send(svc, b, "shared")
    both = await svc.status.get("shared")
    assert (both["operations"], both["total"], "channel_id" in both) == (2, 2, False)
    only_a = await svc.status.get("shared", channel_ids=[a])
    assert (only_a["operations"], only_a["total"], only_a["channel_id"]) == (1, 1, a)


async def test_an_unknown_operation_is_operation_not_found(svc):
    with fails("operation_not_found", 404):
        await svc.status.get("never-sent")
    await send(svc, await channel(svc), "op-1")
    with fails("operation_not_found", 404):
        await svc.status.get("op-1", channel_ids=[])


@pytest.mark.parametrize(("op_id", "code"), [(" ", "op_id_required"),
                                             ("has space", "invalid_op_id")])
async def test_the_op_id_is_checked(svc, op_id, code):
    with fails(code):
        await svc.status.get(op_id)


async def test_reads_within_the_interval_share_one_store_read(svc, monkeypatch):
    monkeypatch.setattr(status_module, "MIN_INTERVAL_S", 3600.0)
    key = await device(svc)
    await send(svc, await channel(svc, key), "op-1")
    first = await svc.status.get("op-1")
    await pull(svc, key)
    assert await svc.status.get("op-1") == first  # the same read, still queued


async def test_accepted_work_and_recorded_results_fire_the_pulse(svc):
    cid = await channel(svc, await device(svc))
    woken = svc.status.pulse.event()
    await send(svc, cid, "op-1")
    assert woken.is_set()
    again = svc.status.pulse.event()
    assert not again.is_set()
    svc.status.results_written()
    assert again.is_set()


async def test_a_pulse_wakes_the_waiters_of_its_time_only():
    pulse = Pulse()
    before = pulse.event()
    assert pulse.event() is before
    pulse.fire()
    after = pulse.event()
    assert before.is_set() and not after.is_set()
    pulse.fire()
    pulse.fire()  # nobody waiting: nothing to do
    assert after.is_set()


async def test_watch_gives_the_status_then_each_change_and_ends_when_done(svc, fresh_reads):
    key = await device(svc)
    await send(svc, await channel(svc, key), "op-1")
    seen: list[Any] = []
    async with aclosing(svc.status.watch("op-1")) as updates:
        async for doc in updates:
            seen.append(doc)
            if len(seen) == 1:
                await pull(svc, key)
                svc.status.results_written()  # as the pump does after recording results
    assert [(d["states"]["queued"], d["done"]) for d in seen] == [(1, False), (0, True)]


async def test_watch_can_stop_at_another_condition(svc):
    await send(svc, await channel(svc, await device(svc)), "op-1")
    async with aclosing(svc.status.watch("op-1", until=provider_settled)) as updates:
        docs = [doc async for doc in updates]
    assert len(docs) == 1 and docs[0]["done"] is False


async def test_watch_says_none_when_nothing_changed_for_the_keepalive(svc, fresh_reads):
    await send(svc, await channel(svc, await device(svc)), "op-1")
    async with aclosing(svc.status.watch("op-1", keepalive_s=0)) as updates:
        first = await updates.__anext__()
        assert first is not None and await updates.__anext__() is None


async def test_watching_an_unknown_operation_is_operation_not_found(svc):
    with fails("operation_not_found", 404):
        async with aclosing(svc.status.watch("never-sent")) as updates:
            await updates.__anext__()


def _queued_errors(reason: str) -> Any:
    def work(conn: Any) -> None:
        conn.execute(S.deliveries.update().where(S.deliveries.c.route != "private")
                     .values(last_error=reason))
    return work


async def test_queued_deliveries_with_a_last_error_count_as_retrying_and_say_why(
        svc, clock, fresh_reads):
    apns = await device(svc, "ios", "apns", APNS_TOKEN)
    await send(svc, await channel(svc, apns), "op-1")
    assert "waiting" not in await svc.status.get("op-1")
    # Given back unsent by an open breaker: no attempt spent, the provider's error kept.
    await svc.ctx.store.run(_queued_errors("ServiceUnavailable"))
    doc = await svc.status.get("op-1")
    assert doc["retrying"] == 1 and doc["states"]["queued"] == 1 and doc["failures"] == {}
    assert doc["waiting"] == {"apns": {"state": "retrying", "last_error": "ServiceUnavailable",
                                       "deliveries": 1}}
    assert "private" not in doc


async def test_a_provider_held_open_by_a_process_is_shown_unavailable_until_its_word_is_stale(
        svc, clock, fresh_reads):
    apns = await device(svc, "ios", "apns", APNS_TOKEN)
    await send(svc, await channel(svc, apns), "op-1")
    since = clock.now - 5000
    await svc.ctx.store.run(P.record, "apns", "open", "ConnectionRefused", since, clock.now)
    await svc.ctx.store.run(P.record, "fcm", "open", "ServiceUnavailable", since, clock.now)
    doc = await svc.status.get("op-1")
    assert doc["waiting"] == {"apns": {  # fcm is down too, but this operation has nothing there
        "state": "provider_unavailable", "breaker": "open", "last_error": "ConnectionRefused",
        "since": since, "deliveries": 1}}
    await svc.ctx.store.run(P.record, "apns", "half_open", "ConnectionRefused", since, clock.now)
    assert (await svc.status.get("op-1"))["waiting"]["apns"]["breaker"] == "half_open"
    clock.advance(P.STALE_MS + 1)  # the process that wrote it is gone
    assert "waiting" not in await svc.status.get("op-1")
    await svc.ctx.store.run(P.record, "apns", "closed", None, clock.now, clock.now)
    assert "waiting" not in await svc.status.get("op-1")


async def test_private_deliveries_not_yet_fetched_wait_for_their_offline_device(
        svc, fresh_reads):
    first, second = await device(svc), await device(svc)
    await send(svc, await channel(svc, first, second), "op-1")
    assert (await svc.status.get("op-1"))["private"] == {"waiting_offline": 2}
    await pull(svc, first)
    doc = await svc.status.get("op-1")
    assert doc["private"] == {"waiting_offline": 1} and "waiting" not in doc
    await pull(svc, second)
    assert "private" not in await svc.status.get("op-1")
