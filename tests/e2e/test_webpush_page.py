"""The Web Push subscribe page in a real headless Chromium against a gateway served by
Hypercorn (with a gateway token, given to the page as ``?token=``).

What a browser can do here: load the page (nothing but the gateway's own origin is fetched),
register the service worker, get notification permission (granted to the context) and post the
form. What it cannot: headless Chromium has no push service, so ``pushManager.subscribe``
answers "AbortError: Registration failed" (checked below, so a Chromium that can subscribe
makes this test say so). The page's call is therefore answered by a subscription made on
MockWebPush (the options the page passed are recorded and checked: ``userVisibleOnly`` and the
gateway's ``applicationServerKey``); everything after it is real: the page registers the web
device, sets its webpush route and subscribes to the channel through the gateway's routes, a
message to the channel is encrypted for that subscription and decrypted by the mock, and the
decrypted document, delivered to the page's service worker as a push through the DevTools
protocol, is shown by it (the worker tells the page, which displays it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.store.schema import devices
from pushgo.testing.mock_webpush import MockWebPush
from tests.browser import in_browser
from tests.e2e.push_services import client_of, running_gateway
from tests.helpers import PASSWORD, call
from tests.live import hypercorn_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKEN = "page-token-1"
AUTH = {"authorization": f"Bearer {TOKEN}"}

#: Runs before the page's own script: the real subscribe is tried and its failure kept, then
#: the call is answered with the subscription the test made on the mock.
FAKE_SUBSCRIBE = """
(() => {
  const given = %s;
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  const real = PushManager.prototype.subscribe;
  PushManager.prototype.getSubscription = async function () { return null; };
  PushManager.prototype.subscribe = async function (options) {
    const key = options.applicationServerKey;
    window.__subscribeOptions = {userVisibleOnly: options.userVisibleOnly,
      applicationServerKey: typeof key === 'string' ? key : b64(key)};
    try { await real.call(this, options); window.__realSubscribe = 'subscribed'; }
    catch (e) { window.__realSubscribe = String(e); }
    return {endpoint: given.endpoint, toJSON: () => given};
  };
})();
"""


@pytest.fixture
async def pgateway(db_url: str, push: MockWebPush, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(db_url, push, tmp_path, token=TOKEN) as gw:
        yield gw


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_the_page_subscribes_a_browser_and_its_worker_shows_a_push(pgateway, push):
    async with client_of(pgateway, headers=AUTH) as api:
        made = await call(api, "/channel/create", {"channel_name": "home",
                                                   "password": PASSWORD})
        cid = made["channel_id"]
        app_key = (await call(api, "/webpush/vapid-public-key"))["application_server_key"]
        sub = push.subscribe(application_server_key=app_key)

        async with hypercorn_server(pgateway) as base:
            def script(context: Any) -> dict[str, Any]:
                outside: list[str] = []

                def only_the_gateway(route: Any) -> None:
                    if route.request.url.startswith(base + "/"):
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()

                context.route("**/*", only_the_gateway)
                context.grant_permissions(["notifications"], origin=base)
                context.add_init_script(FAKE_SUBSCRIBE % json.dumps(sub.json))
                page = context.new_page()
                page.goto(f"{base}/webpush/subscribe?token={TOKEN}")
                worker = page.evaluate(
                    "async () => (await navigator.serviceWorker.ready).active.scriptURL")
                page.fill("#channel_id", cid)
                page.fill("#password", PASSWORD)
                page.click("#go")
                page.wait_for_selector(f"body[data-subscribed='{cid}']")
                return {"worker": worker, "status": page.inner_text("#status"),
                        "options": page.evaluate("window.__subscribeOptions"),
                        "real": page.evaluate("window.__realSubscribe"),
                        "device_key": page.evaluate("localStorage.getItem('pushgo.device_key')"),
                        "outside": outside}

            seen = await in_browser(script)
            assert seen["worker"] == f"{base}/webpush/sw.js"
            assert seen["outside"] == []
            assert seen["options"] == {"userVisibleOnly": True, "applicationServerKey": app_key}
            assert seen["real"].startswith("AbortError: Registration failed"), seen["real"]
            assert "Subscribed to “home”" in seen["status"]
            key = seen["device_key"]
            assert seen["status"].endswith(key)

            # The page made a web device on the webpush route, subscribed to the channel.
            row = await pgateway.store.read(lambda c: c.execute(
                sa.select(devices).where(devices.c.device_key == key)).first())
            assert (row.platform, row.channel_type) == ("web", "webpush")
            assert json.loads(row.provider_token)["endpoint"] == sub.endpoint
            sent = await call(api, "/message", {"channel_id": cid, "password": PASSWORD,
                                                "title": "Front door", "body": "opened",
                                                "url": "https://home.example.com/door"})
            [note] = await push.wait_for(1, lambda m: m.accepted)
            assert note.subscription == sub.id
            assert note.data["message_id"] == sent["message_id"]
            assert (note.data["title"], note.data["body"]) == ("Front door", "opened")
            plaintext = (note.plaintext or b"").decode()

            def deliver(context: Any) -> str:
                context.grant_permissions(["notifications"], origin=base)
                page = context.new_page()
                page.goto(f"{base}/webpush/subscribe?token={TOKEN}")
                page.evaluate("async () => { await navigator.serviceWorker.ready; }")
                cdp = context.new_cdp_session(page)
                registrations: list[dict[str, Any]] = []
                cdp.on("ServiceWorker.workerRegistrationUpdated",
                       lambda e: registrations.extend(e["registrations"]))
                cdp.send("ServiceWorker.enable")
                ids: list[str] = []
                for _ in range(200):  # until the registration's event has arrived
                    ids = [r["registrationId"] for r in registrations
                           if r["scopeURL"] == f"{base}/webpush/" and not r["isDeleted"]]
                    if ids:
                        break
                    page.wait_for_timeout(25)
                rid = ids[0]
                cdp.send("ServiceWorker.deliverPushMessage",
                         {"origin": base, "registrationId": rid, "data": plaintext})
                page.wait_for_function(
                    "() => document.getElementById('received').textContent !== ''")
                return str(page.inner_text("#received"))

            shown = await in_browser(deliver)
            assert shown == "Last received: Front door — opened"


async def test_the_page_and_its_worker_need_no_token_and_say_so_without_push(pgateway):
    async with hypercorn_server(pgateway) as base, httpx.AsyncClient() as c:
        page = await c.get(f"{base}/webpush/subscribe")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "<script src" not in page.text and "://" not in page.text.split("<script>")[1]
        worker = await c.get(f"{base}/webpush/sw.js")
        assert worker.status_code == 200
        assert worker.headers["content-type"].startswith("text/javascript")
        assert "addEventListener('push'" in worker.text
        key = (await c.get(f"{base}/webpush/vapid-public-key")).json()["data"]
        assert len(base64.urlsafe_b64decode(key["application_server_key"] + "=")) == 65
        # Everything else still needs the token.
        assert (await c.post(f"{base}/device/register", json={"platform": "web"})).status_code \
            == 401
