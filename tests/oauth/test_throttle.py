"""The OAuth pages under a password flood, on a real Hypercorn server with client sockets bound
to different loopback addresses: guesses from one address never lock the channel's owner out
of the bind page from another, and the OAuth limiters key on the client a trusted proxy
names in ``X-Forwarded-For`` (and only then)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from pushgo.app import Gateway
from pushgo.service.throttle import PAIR_RULE
from tests.conftest import make_settings
from tests.helpers import PASSWORD
from tests.live import hypercorn_server
from tests.oauth_helpers import (
    BASE,
    REDIRECT,
    TOKEN,
    Clock,
    authorize_query,
    channel,
    open_page,
    pkce,
    register,
    signed_in,
    submit,
    tool_result,
)

ATTACKER, OWNER = "127.0.0.2", "127.0.0.3"


@asynccontextmanager
async def served(db_url: str, **overrides: Any) -> AsyncIterator[tuple[Gateway, str]]:
    # The public base URL fixes issuer and audience whatever port the server listens on.
    settings = make_settings(db_url, mcp_enabled=True, token=TOKEN, public_base_url=BASE,
                             **overrides)
    # Frozen: the Retry-After the test reads must not shrink while a slow machine runs it.
    gateway = Gateway(settings, clock=Clock(frozen=True))
    async with gateway.running(), hypercorn_server(gateway) as base:
        yield gateway, base


@asynccontextmanager
async def browser(base: str, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, base_url=base) as c:
        yield c


async def test_guesses_from_one_address_never_lock_the_owner_out_of_the_bind_page(
        db_url: str) -> None:
    async with served(db_url) as (gateway, base), browser(base, ATTACKER) as attacker, \
            browser(base, OWNER) as owner:
        target, first = await channel(gateway, name="target"), await channel(gateway)
        session = await signed_in(gateway, owner, first)
        started = (await tool_result(owner, session["access_token"],
                                     "pushgo.channel.bind.start",
                                     {"requested_channel_id": target}))["structuredContent"]

        # The attacker opens an authorize page of its own and guesses through its live check,
        # more often than any per-channel limit would allow.
        client = await register(attacker)
        page = await open_page(attacker, "/oauth/authorize",
                               authorize_query(client["client_id"], pkce()[1]))
        form = {"request_id": page.request_id, "csrf_token": page.csrf_token,
                "channel_id": target}
        answers = [await attacker.post("/oauth/channel/validate",
                                       json={**form, "password": f"guess-{i}-pw"})
                   for i in range(12)]
        assert [a.status_code for a in answers] == [200] * PAIR_RULE.burst + [429] * (
            12 - PAIR_RULE.burst)
        assert answers[0].json()["error_code"] == "channel_password_mismatch"
        assert answers[-1].json()["error_code"] == "too_many_attempts"
        assert int(answers[-1].headers["retry-after"]) == PAIR_RULE.every_s
        # The right password does not get through from there either (no oracle).
        right = await attacker.post("/oauth/channel/validate",
                                    json={**form, "password": PASSWORD})
        assert right.status_code == 429

        # The owner, from another address, binds the channel on the bind page.
        bind = await open_page(owner, started["bind_url"].removeprefix(BASE))
        done = await submit(owner, bind, [(target, PASSWORD)], action="/mcp/bind/session")
        assert done.status_code == 200 and "target" in done.text
        status = (await tool_result(owner, session["access_token"],
                                    "pushgo.channel.bind.status",
                                    {"bind_session_id": started["bind_session_id"]})
                  )["structuredContent"]
        assert (status["status"], status["channel_id"]) == ("completed", target)


async def registrations(client: httpx.AsyncClient, forwarded_for: str | None, count: int
                        ) -> list[int]:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    return [(await client.post("/oauth/register", json={"redirect_uris": [REDIRECT]},
                               headers=headers)).status_code for _ in range(count)]


async def test_the_oauth_limiters_key_on_the_client_a_trusted_proxy_names(db_url: str) -> None:
    async with served(db_url, trusted_proxies=("127.0.0.1/32",)) as (_gateway, base), \
            browser(base, "127.0.0.1") as proxy, browser(base, ATTACKER) as direct:
        assert await registrations(proxy, "198.51.100.7", 21) == [201] * 20 + [429]
        assert await registrations(proxy, "198.51.100.8", 1) == [201]
        # Not a trusted proxy: its X-Forwarded-For is ignored, one bucket whatever it says.
        statuses = [*await registrations(direct, "192.0.2.1", 10),
                    *await registrations(direct, "192.0.2.2", 11)]
        assert statuses == [201] * 20 + [429]
