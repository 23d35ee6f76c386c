"""Web Push for browsers: the gateway's public key, a page that subscribes a browser to a
channel, and the service worker that shows what arrives.

- ``GET /webpush/vapid-public-key``: the ``applicationServerKey`` (base64url uncompressed
  P-256 point) a page passes to ``pushManager.subscribe``.
- ``GET /webpush/subscribe``: a small page (no third-party assets). Given a channel id and its
  password it registers the service worker, subscribes the browser with the gateway's key,
  registers a ``web`` device (its key kept in the browser's localStorage), sets the device's
  ``webpush`` route to the subscription and subscribes it to the channel: the ordinary device
  routes, called from the page. A gateway token, when one is set, is read from the page's
  ``?token=`` and sent as a Bearer header.
- ``GET /webpush/sw.js``: the service worker. On a push it shows a notification from the JSON
  document (title, body, url) and tells open pages; a click opens the document's url.

These three need no gateway token (nothing secret in them: the public key is what every
subscribed browser holds); every call the page makes does.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from pushgo.api.envelope import ok
from pushgo.errors import GatewayError, codes
from pushgo.service.webpush import VapidKeys

KEY_PATH = "/webpush/vapid-public-key"
PAGE_PATH = "/webpush/subscribe"
WORKER_PATH = "/webpush/sw.js"
PUBLIC_PATHS = frozenset({KEY_PATH, PAGE_PATH, WORKER_PATH})


def webpush_routes(vapid: VapidKeys) -> list[BaseRoute]:
    async def public_key(_request: Request) -> Response:
        key = vapid.application_server_key
        if key is None:  # before the store opened at start
            err = GatewayError(codes.NOT_READY, "the web push key is not loaded yet")
            err.retry_after = 1
            raise err
        return ok({"application_server_key": key})

    async def page(_request: Request) -> Response:
        return HTMLResponse(PAGE, headers={"cache-control": "no-cache"})

    async def worker(_request: Request) -> Response:
        return Response(WORKER, media_type="text/javascript",
                        headers={"cache-control": "no-cache"})

    return [
        Route(KEY_PATH, public_key, methods=["GET"]),
        Route(PAGE_PATH, page, methods=["GET"]),
        Route(WORKER_PATH, worker, methods=["GET"]),
    ]


WORKER = """// pushgo Web Push service worker: shows each push as a notification.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let doc = {};
  try { doc = event.data ? event.data.json() : {}; } catch (e) { doc = {body: event.data.text()}; }
  const title = doc.title || 'pushgo';
  const options = {
    body: doc.body || '',
    tag: doc.event_id || doc.thing_id || doc.delivery_id || undefined,
    data: {url: doc.url || '', channel_id: doc.channel_id || ''},
  };
  event.waitUntil(Promise.all([
    self.registration.showNotification(title, options),
    self.clients.matchAll({type: 'window', includeUncontrolled: true}).then((pages) => {
      for (const page of pages) page.postMessage({pushgo: doc});
    }),
  ]));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url;
  const target = url && /^https?:/.test(url) ? url : self.registration.scope + 'subscribe';
  event.waitUntil(self.clients.openWindow(target));
});
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pushgo: notifications in this browser</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}
label{display:block;margin:.6rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1rem}#status{margin-top:1rem;white-space:pre-wrap}
.err{color:#a00}#received{margin-top:1rem;color:#555}</style></head>
<body>
<h1>Notifications in this browser</h1>
<p>Subscribe this browser to a pushgo channel: messages, events and things sent to it arrive
as notifications, even with this page closed.</p>
<form id="subscribe">
<label for="channel_id">Channel id</label>
<input id="channel_id" name="channel_id" required autocomplete="off">
<label for="password">Channel password</label>
<input id="password" name="password" type="password" required autocomplete="off">
<button id="go" type="submit">Subscribe</button>
</form>
<div id="status" role="status"></div>
<div id="received"></div>
<script>
(() => {
  const status = document.getElementById('status');
  const say = (text, bad) => { status.textContent = text; status.className = bad ? 'err' : ''; };
  const token = new URLSearchParams(location.search).get('token');
  const base = new URL('..', location.href).pathname;  // the gateway's root
  async function api(method, path, body) {
    const headers = {'content-type': 'application/json'};
    if (token) headers.authorization = 'Bearer ' + token;
    const res = await fetch(base + path.replace(/^\\//, ''), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    const doc = await res.json().catch(() => ({success: false, error: 'HTTP ' + res.status}));
    if (!doc.success) throw new Error(doc.error || doc.error_code || ('HTTP ' + res.status));
    return doc.data;
  }
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
    say('This browser cannot receive Web Push (it needs service workers and the Push API, '
        + 'over https or on localhost).', true);
    document.getElementById('go').disabled = true;
    return;
  }
  const ready = navigator.serviceWorker.register('sw.js').then(
    () => navigator.serviceWorker.ready);
  navigator.serviceWorker.addEventListener('message', (event) => {
    const doc = event.data && event.data.pushgo;
    if (doc) document.getElementById('received').textContent =
      'Last received: ' + (doc.title || '') + (doc.body ? ' \\u2014 ' + doc.body : '');
  });
  document.getElementById('subscribe').addEventListener('submit', async (event) => {
    event.preventDefault();
    const channelId = document.getElementById('channel_id').value.trim();
    const password = document.getElementById('password').value;
    try {
      say('Registering the service worker\\u2026');
      const registration = await ready;
      const key = (await api('GET', '/webpush/vapid-public-key')).application_server_key;
      if (Notification.permission !== 'granted'
          && await Notification.requestPermission() !== 'granted') {
        throw new Error('notifications are not allowed for this site');
      }
      say('Subscribing this browser\\u2026');
      let subscription = await registration.pushManager.getSubscription();
      if (!subscription) {
        subscription = await registration.pushManager.subscribe(
          {userVisibleOnly: true, applicationServerKey: key});
      }
      const known = localStorage.getItem('pushgo.device_key') || undefined;
      const device = await api('POST', '/device/register',
                               {platform: 'web', device_key: known});
      localStorage.setItem('pushgo.device_key', device.device_key);
      await api('POST', '/channel/device', {
        device_key: device.device_key, channel_type: 'webpush',
        provider_token: JSON.stringify(subscription.toJSON())});
      const sub = await api('POST', '/channel/subscribe', {
        device_key: device.device_key, channel_id: channelId, password});
      say('Subscribed to \\u201c' + sub.channel_name + '\\u201d. Device key: '
          + device.device_key);
      document.body.dataset.subscribed = sub.channel_id;
    } catch (err) {
      say('Could not subscribe: ' + (err && err.message ? err.message : err), true);
    }
  });
})();
</script>
</body></html>
"""
