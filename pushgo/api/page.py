"""GET /: a small HTML page saying what this gateway is, its version, which providers are
configured, and every route of the API at a glance (linking the reference at /docs). No
third-party assets."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from starlette.routing import BaseRoute

from pushgo import __version__
from pushgo.api.openapi import operations
from pushgo.settings import Settings


def _rows(routes: Iterable[BaseRoute]) -> list[tuple[str, str, str]]:
    """One row per route of the app (its methods together), from the route declarations of
    pushgo.api.catalog, in the router's order."""
    rows: dict[tuple[str, str], list[str]] = {}
    for method, path, op in operations(routes):
        summary = op.summary if op is not None else ""
        rows.setdefault((path, summary), []).append(method)
    return [(" | ".join(methods), path, summary) for (path, summary), methods in rows.items()]


def render_index(settings: Settings, routes: Iterable[BaseRoute]) -> str:
    providers = [name for name, on in (("APNs", settings.apns_configured),
                                       ("FCM", settings.fcm_configured)) if on]
    providers.append("private stream (SSE)")
    if settings.webpush_enabled:
        providers.append("Web Push (browsers subscribe at webpush/subscribe)")
    if settings.mcp_enabled:
        providers.append("MCP at /mcp")
    rows = "\n".join(
        f"<tr><td><code>{escape(m)}</code></td><td><code>{escape(p)}</code></td>"
        f"<td>{escape(d)}</td></tr>" for m, p, d in _rows(routes))
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
<p>Routes take and return JSON in the envelope
<code>{{"success", "data", "error", "error_code", "problem"}}</code> unless noted.
The full reference, with every field and error code: <a href="docs">API reference</a>
(<a href="openapi.json">OpenAPI 3.1 document</a>).</p>
<table>{rows}</table>
</body></html>
"""
