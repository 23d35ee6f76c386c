"""The operator console in a real headless Chromium against a gateway served by Hypercorn
(with a gateway token): sign in (a wrong credential is refused on the page), watch an
operation's progress bar move from 75 % to 100 % on the delivery-status stream without a
reload, and see the charts, provider health, failures and the admin lists render. Nothing
but the gateway's own origin is fetched.

Deterministic, not timed: one of the operation's four APNs devices is answered by the mock
only when the test opens a gate, after the page has shown the other three sent.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pushgo.app import Gateway
from pushgo.testing.exchange import Outcome, Request
from pushgo.testing.mock_apns import MockAPNs
from pushgo.testing.tls import LocalCA
from tests.browser import in_browser, is_png
from tests.conftest import make_settings
from tests.e2e.push_services import client_of
from tests.helpers import PASSWORD, call, eventually, register
from tests.live import hypercorn_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKEN = "console-page-token-1"
AUTH = {"authorization": f"Bearer {TOKEN}"}
TOPIC = "com.example.console"


class GatedAPNs(MockAPNs):
    """A mock APNs that answers the ``held`` device token only once ``gate`` is set."""

    def __init__(self, held: str, **options: Any) -> None:
        self.held = held
        self.gate = anyio.Event()
        self.arrived = anyio.Event()
        super().__init__(**options)

    async def _handle(self, req: Request) -> Outcome:
        if req.path.endswith("/" + self.held):
            self.arrived.set()
            await self.gate.wait()
        return await super()._handle(req)


@pytest.fixture
async def held() -> str:
    return secrets.token_hex(32)


@pytest.fixture
async def apns(held: str) -> AsyncIterator[GatedAPNs]:
    mock = GatedAPNs(held, topic=TOPIC, tls=LocalCA(), initial_max_concurrent_streams=100,
                     max_concurrent_streams=100)
    async with mock.serving():
        yield mock


@pytest.fixture
async def cgateway(db_url: str, apns: GatedAPNs, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = make_settings(
        db_url, token=TOKEN, apns_key_file=str(apns.key.write(tmp_path / "apns.p8")),
        apns_key_id=apns.key.key_id, apns_team_id=apns.key.team_id, apns_topic=TOPIC,
        apns_endpoint=apns.origin, provider_ca_file=str(apns.tls.write_ca_file(tmp_path / "ca.pem")),
        provider_response_timeout_s=300.0)  # the held answer waits for the test, not a clock
    gw = Gateway(settings)
    async with gw.running():
        yield gw


async def apns_channel(api: httpx.AsyncClient, name: str, tokens: list[str]) -> str:
    made = await call(api, "/channel/create", {"channel_name": name, "password": PASSWORD})
    for token in tokens:
        key = await register(api, "ios")
        await call(api, "/channel/device", {"device_key": key, "channel_type": "apns",
                                            "provider_token": token})
        await call(api, "/channel/subscribe", {"device_key": key, "password": PASSWORD,
                                               "channel_id": made["channel_id"]})
    return str(made["channel_id"])


def keep_screenshot(tmp_path: Path, name: str, png: bytes) -> Path:
    """The PNG in the test's tmp_path, and under $PUSHGO_TEST_ARTIFACTS when set."""
    assert is_png(png)
    path = tmp_path / name
    path.write_bytes(png)
    artifacts = os.environ.get("PUSHGO_TEST_ARTIFACTS")
    if artifacts:
        out = Path(artifacts)
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(png)
    return path


async def test_the_console_shows_an_operation_progress_live(cgateway, apns, held, tmp_path):
    async with client_of(cgateway, headers=AUTH) as api, AsyncExitStack() as stack:
        # Earlier work: two sent, one rejected; sampled into the history.
        rejected = secrets.token_hex(32)
        apns.reject(rejected, 400, "BadDeviceToken")
        warm = await apns_channel(api, "warm-up", [secrets.token_hex(32) for _ in range(2)]
                                  + [rejected])
        await cgateway.sampler.sample()
        await call(api, "/message", {"channel_id": warm, "password": PASSWORD,
                                     "title": "warm", "op_id": "op-warm"})

        async def settled(op_id: str, sent: int, queued: int = 0) -> bool:
            states = (await call(api, f"/deliveries/{op_id}"))["states"]
            return bool(states["sent"] == sent and states["queued"] == queued)

        await eventually(lambda: settled("op-warm", 2))
        await cgateway.sampler.sample()

        # The live operation: three answered at once, the fourth held at the gate.
        live = await apns_channel(api, "rollout", [secrets.token_hex(32) for _ in range(3)]
                                  + [held])
        await call(api, "/message", {"channel_id": live, "password": PASSWORD,
                                     "title": "deploy", "op_id": "op-live"})
        with anyio.fail_after(10):
            await apns.arrived.wait()
        await eventually(lambda: settled("op-live", 3, queued=1))
        statuses = {p: (await api.get(p)).status_code
                    for p in ("/admin/apps", "/admin/keys", "/admin/audit")}
        assert set(statuses.values()) <= {200, 404}

        release = threading.Event()  # set by the browser script, in its own thread

        async def open_gate() -> None:
            await anyio.to_thread.run_sync(release.wait, abandon_on_cancel=True)
            apns.gate.set()

        tg = await stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(open_gate)
        base = await stack.enter_async_context(hypercorn_server(cgateway))

        def script(context: Any) -> dict[str, Any]:
            outside: list[str] = []

            def only_the_gateway(route: Any) -> None:
                if route.request.url.startswith(base + "/"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", only_the_gateway)
            page = context.new_page()
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.goto(f"{base}/console")
            seen: dict[str, Any] = {"outside": outside}
            page.wait_for_selector("#login-form", state="visible")
            page.fill("#credential", "not-the-token")
            page.click("#sign-in")
            page.wait_for_selector("#login-error:not(:empty)")
            seen["refused"] = page.inner_text("#login-error")
            page.fill("#credential", TOKEN)
            page.click("#sign-in")
            page.wait_for_selector("body[data-ready='true']")
            loaded_at = page.evaluate("window.__consoleLoadedAt")
            bar = "[role=progressbar][data-op-id='op-live']"
            row = "tr[data-op-id='op-live']"
            # The stream has spoken: three of four settled.
            page.wait_for_selector(f"{row}[data-stream-value='75']")
            seen["before"] = page.get_attribute(bar, "aria-valuenow")
            seen["before_events"] = int(page.get_attribute(row, "data-stream-events") or 0)
            seen["shot_before"] = page.screenshot(full_page=True)
            release.set()
            page.wait_for_selector(f"{row}[data-stream-value='100']")
            seen["after"] = page.get_attribute(bar, "aria-valuenow")
            seen["after_events"] = int(page.get_attribute(row, "data-stream-events") or 0)
            seen["same_page"] = page.evaluate("window.__consoleLoadedAt") == loaded_at
            seen["warm"] = page.get_attribute(
                "[role=progressbar][data-op-id='op-warm']", "aria-valuenow")
            seen["counts"] = page.inner_text(f"{row} .counts")
            seen["queue_samples"] = page.get_attribute("#queue-svg", "data-samples")
            seen["queue_paths"] = page.locator("#queue-svg path.series").count()
            seen["rate_bars"] = page.locator("#rate-svg rect.series.sent").count()
            seen["providers"] = page.locator("#providers .provider").evaluate_all(
                "cards => cards.map(c => [c.dataset.route, c.dataset.state, c.innerText])")
            seen["failures"] = page.inner_text("#failures")
            seen["admin"] = {name: page.get_attribute(f"#{name}", "data-state")
                             for name in ("apps", "keys", "audit")}
            seen["apps_text"] = page.inner_text("#apps")
            seen["stored"] = page.evaluate(
                "sessionStorage.getItem('pushgo.console.credential')")
            seen["shot_after"] = page.screenshot(full_page=True)
            return seen

        try:
            seen = await in_browser(script)
        finally:
            release.set()  # open_gate ends: the task group closes without a cancel

    keep_screenshot(tmp_path, "console-before.png", seen["shot_before"])
    keep_screenshot(tmp_path, "console-after.png", seen["shot_after"])
    assert seen["outside"] == []
    assert "not accepted" in seen["refused"]
    assert (seen["before"], seen["after"]) == ("75", "100")
    assert seen["after_events"] > seen["before_events"] >= 1  # moved by the stream
    assert seen["same_page"] is True
    assert seen["warm"] == "100"
    assert seen["counts"] == "4 sent of 4"
    assert int(seen["queue_samples"]) >= 2 and seen["queue_paths"] == 2
    assert seen["rate_bars"] >= 1  # the warm-up's two sends
    cards = {route: (state, text) for route, state, text in seen["providers"]}
    assert set(cards) == set(cgateway.pump.senders)  # apns, and webpush (on by default)
    assert cards["apns"][0] == "closed" and "healthy" in cards["apns"][1]
    assert "BadDeviceToken" in seen["failures"] and "1 failed" in seen["failures"]
    expected = {"apps": "ok", "keys": "ok", "audit": "ok"}
    for name, status in zip(("apps", "keys", "audit"), statuses.values(), strict=True):
        expected[name] = "ok" if status == 200 else "absent"
    assert seen["admin"] == expected
    if expected["apps"] == "ok":  # settings as words, not JSON
        assert "default" in seen["apps_text"] and '{"' not in seen["apps_text"]
        assert '["' not in seen["apps_text"]
    assert seen["stored"] == TOKEN
