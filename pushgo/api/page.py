"""GET /: a small HTML page saying what this gateway is, its version, which providers are
configured, and the API at a glance. No third-party assets."""

from __future__ import annotations

from html import escape

from pushgo import __version__
from pushgo.settings import Settings

_ROUTES = [
    ("POST", "/device/register", "register a device, get its device_key"),
    ("POST", "/channel/device", "set the device route (apns, fcm, wns, private)"),
    ("POST", "/channel/device/delete", "clear the route's provider token"),
    ("POST", "/channel/device/provider-token/retire", "retire a dead provider token"),
    ("POST", "/channel/subscribe", "subscribe (a name and no id creates the channel)"),
    ("POST", "/channel/unsubscribe", "unsubscribe"),
    ("POST", "/channel/sync", "reconcile a device's subscriptions"),
    ("GET", "/channel/exists?channel_id=", "does a channel exist"),
    ("POST", "/channel/rename", "rename a channel"),
    ("POST | GET", "/message", "send a message"),
    ("POST", "/event/create | update | close", "event lifecycle"),
    ("POST", "/thing/create | update | archive | delete", "thing lifecycle"),
    ("POST", "/messages/pull", "fetch pending payloads of a device"),
    ("POST", "/messages/ack", "acknowledge a delivery"),
    ("GET", "/private/stream?device_key=", "live deliveries of a private device (SSE)"),
    ("GET", "/gateway/profile", "which private transports are on"),
    ("GET", "/healthz, /readyz", "liveness and readiness"),
]


def render_index(settings: Settings) -> str:
    providers = [name for name, on in (("APNs", settings.apns_configured),
                                       ("FCM", settings.fcm_configured)) if on]
    providers.append("private stream (SSE)")
    if settings.mcp_enabled:
        providers.append("MCP at /mcp")
    rows = "\n".join(
        f"<tr><td><code>{escape(m)}</code></td><td><code>{escape(p)}</code></td>"
        f"<td>{escape(d)}</td></tr>" for m, p, d in _ROUTES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pushgo gateway {escape(__version__)}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td{{padding:.2rem .8rem .2rem 0;vertical-align:top}}
code{{font-size:13px}}</style></head>
<body>
<h1>pushgo gateway</h1>
<p>A self-hosted push-notification gateway: publish messages, events and things into channels;
pushgo fans them out to every subscribed device. Version <strong>{escape(__version__)}</strong>,
wire-compatible with the PushGo Gateway API.</p>
<p>Delivery: {escape(", ".join(providers))}.</p>
<h2>API</h2>
<p>All routes take and return JSON in the envelope
<code>{{"success", "data", "error", "error_code"}}</code>.</p>
<table>{rows}</table>
</body></html>
"""
