"""svc.keys against a real store: a key resolves to its Principal until revoked, only its
SHA-256 is stored, each create and revoke is in the audit log (actor ``cli`` or the acting
key), ``last_used_at`` is written at most once a minute, and a key limited to channels is
refused other channels by the Publisher itself."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from pushgo.errors import Forbidden, InvalidInput, NotFound, codes
from pushgo.protocol.operations import MessageIn, message_spec
from pushgo.service import Services
from pushgo.service.keys import TOUCH_INTERVAL_MS
from pushgo.service.principal import PRINCIPAL, ROOT, key_hash
from pushgo.store.schema import api_keys
from tests.service.support import Clock


async def test_a_key_resolves_until_revoked_and_only_its_hash_is_stored(svc: Services) -> None:
    row, key = await svc.keys.create("ci", ["send", "status"], channels=None, weight=5,
                                     rate_per_s=2.5, daily_notifications=1000, cli=True)
    principal = await svc.keys.resolve(key)
    assert principal is not None and principal.key_id == row.key_id
    assert principal.scopes == {"send", "status"} and principal.channels is None
    assert (principal.weight, principal.rate_per_s, principal.daily_notifications) == (
        5, 2.5, 1000)
    assert row.created_by == "cli"
    stored = await svc.ctx.store.read(
        lambda conn: conn.execute(sa.select(api_keys.c.secret_hash)).scalar_one())
    assert stored == key_hash(key) and key.split("_")[-1] not in stored
    assert await svc.keys.resolve(key[:-1] + ("a" if key[-1] != "a" else "b")) is None
    assert await svc.keys.resolve("not-a-key") is None
    await svc.keys.revoke(row.key_id, cli=True)
    assert await svc.keys.resolve(key) is None
    with pytest.raises(NotFound) as err:
        await svc.keys.revoke(row.key_id)
    assert err.value.code == codes.KEY_NOT_FOUND.code
    assert [(e.action, e.actor, e.target) for e in await svc.audit.recent()] == [
        ("key.revoke", "cli", row.key_id), ("key.create", "cli", row.key_id)]
    assert key not in str(await svc.audit.recent())
    assert [k.key_id for k in await svc.keys.list()] == []
    assert [k.key_id for k in await svc.keys.list(include_revoked=True)] == [row.key_id]


async def test_last_used_is_written_at_most_once_a_minute(svc: Services, clock: Clock) -> None:
    _row, key = await svc.keys.create("ci", ["send"])

    async def last_used() -> int | None:
        return (await svc.keys.list())[0].last_used_at

    assert await last_used() is None
    await svc.keys.resolve(key)
    first = clock.now
    assert await last_used() == first
    clock.advance(TOUCH_INTERVAL_MS - 1)
    await svc.keys.resolve(key)
    assert await last_used() == first
    clock.advance(1)
    await svc.keys.resolve(key)
    assert await last_used() == clock.now


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"name": " ", "scopes": ["send"]}, codes.INVALID_KEY_NAME),
    ({"name": "n", "scopes": ["root"]}, codes.INVALID_SCOPE),
    ({"name": "n", "scopes": ["send"], "weight": True}, codes.INVALID_KEY_LIMIT),
    ({"name": "n", "scopes": ["send"], "rate_per_s": float("nan")}, codes.INVALID_KEY_LIMIT),
])
async def test_bad_input_is_refused_before_anything_is_written(
        svc: Services, kwargs: dict[str, object], code: object) -> None:
    with pytest.raises(InvalidInput) as err:
        await svc.keys.create(**kwargs)  # type: ignore[arg-type]
    assert err.value.code == code.code  # type: ignore[attr-defined]
    assert await svc.keys.list(include_revoked=True) == []
    assert await svc.audit.recent() == []


async def test_the_publisher_refuses_a_channel_outside_the_key(svc: Services) -> None:
    channel = await svc.channels.create("ops", "secret-pass-1")
    allowed = await svc.channels.create("mine", "secret-pass-1")
    _row, key = await svc.keys.create("ci", ["send"], channels=[allowed["channel_id"]])
    principal = await svc.keys.resolve(key)
    assert principal is not None
    token = PRINCIPAL.set(principal)
    try:
        spec = message_spec(MessageIn(channel_id=channel["channel_id"], title="t"))
        with pytest.raises(Forbidden) as err:
            await svc.publisher.send(spec, "secret-pass-1")
        assert err.value.code == codes.CHANNEL_NOT_ALLOWED.code
        with pytest.raises(Forbidden):
            await svc.publisher.send_granted(spec)
        ok = message_spec(MessageIn(channel_id=allowed["channel_id"], title="t"))
        accepted = await svc.publisher.send(ok, "secret-pass-1")
    finally:
        PRINCIPAL.reset(token)
    assert PRINCIPAL.get() is ROOT
    assert accepted.channel_id == allowed["channel_id"]
