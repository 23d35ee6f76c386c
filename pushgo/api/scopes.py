"""Which scope each route needs of an API key: one table, read by the front door (a key
without the route's scope gets 403 ``scope_required`` before the route runs). The gateway
token (ROOT) has every scope.

``None``: any live key may call the route (the description of the API, health, pages that
hold no secret). A route missing from the table needs ``admin``: a new route is closed to
keys until it is given its scope here (``tests/api/test_keys.py`` checks that every route
of the app is in the table).

What the table does not decide — a key limited to some channels, direct items of a bulk
body — the services check where the channel is known (pushgo.service.keys).
"""

from __future__ import annotations

from pushgo.service.principal import Scope

SEND, DIRECT, STATUS, DEVICES, METRICS, ADMIN = (
    Scope.SEND, Scope.DIRECT, Scope.STATUS, Scope.DEVICES, Scope.METRICS, Scope.ADMIN)

#: route template → the scope it needs (every method of the template alike).
ROUTE_SCOPES: dict[str, Scope | None] = {
    # The description of the gateway: no secret, any key.
    "/": None, "/healthz": None, "/readyz": None, "/gateway/profile": None,
    "/openapi.json": None, "/docs": None, "/private/readyz": None,
    "/webpush/vapid-public-key": None, "/webpush/subscribe": None, "/webpush/sw.js": None,
    "/console": None,
    # Sending to channels (a key's ``channels`` are checked by the Publisher).
    "/message": SEND,
    "/event/create": SEND, "/event/update": SEND, "/event/close": SEND,
    "/thing/create": SEND, "/thing/update": SEND, "/thing/archive": SEND,
    "/thing/delete": SEND, "/thing/{thing_id}/event/close": SEND,
    "/ntfy/{rest:path}": SEND, "/serverchan/{rest:path}": SEND, "/bark/{rest:path}": SEND,
    # Bulk: its channel items need ``send``, its direct items (provider tokens) ``direct``
    # too (pushgo.service.bulk).
    "/messages/bulk": SEND,
    # What became of an operation, and cancelling it (on the key's channels).
    "/send_status/{op_id}": STATUS, "/operations/{op_id}/cancel": STATUS,
    "/deliveries/{op_id}": STATUS, "/deliveries/{op_id}/stream": STATUS,
    "/receipts/{op_id}": STATUS, "/channel/info": STATUS,
    # The apps' side: devices, their routes and subscriptions, their inbox and streams.
    # Creating a channel is what ``/channel/subscribe`` does for a new channel, without a
    # device: the same scope.
    "/device/register": DEVICES, "/channel/device": DEVICES,
    "/channel/device/delete": DEVICES, "/channel/device/provider-token/retire": DEVICES,
    "/device/liveactivity/start-token": DEVICES,
    "/device/liveactivity/start-token/delete": DEVICES,
    "/device/liveactivity/token": DEVICES, "/device/liveactivity/token/delete": DEVICES,
    "/v1/activity/register": DEVICES, "/v1/activity/unregister": DEVICES,
    "/channel/subscribe": DEVICES, "/channel/unsubscribe": DEVICES,
    "/channel/sync": DEVICES, "/channel/exists": DEVICES, "/channel/rename": DEVICES,
    "/channel/create": DEVICES,
    "/messages/pull": DEVICES, "/messages/ack": DEVICES, "/v2/messages/pull": DEVICES,
    "/v2/messages/ack": DEVICES, "/private/stream": DEVICES, "/private/ws": DEVICES,
    "/receipts/ack": DEVICES,
    "/metrics": METRICS,
}

#: Path prefixes with their own rules: the admin routes, and /mcp with its OAuth server
#: (legacy and OAuth modes authorise there; an API key is not one of their credentials).
PREFIX_SCOPES: tuple[tuple[str, Scope | None], ...] = (
    ("/admin/", ADMIN), ("/mcp", None), ("/oauth/", None), ("/.well-known/", None),
)


def scope_of(template: str) -> Scope | None:
    """The scope a route (by its template) needs of an API key."""
    if template in ROUTE_SCOPES:
        return ROUTE_SCOPES[template]
    for prefix, scope in PREFIX_SCOPES:
        if template.startswith(prefix):
            return scope
    return ADMIN
