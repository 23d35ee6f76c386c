"""MCP resources: ``pushgo://channels`` (the caller's authorized channels) and the template
``pushgo://channels/{channel_id}`` (channel info with its recent messages, open events and
things, read from the store), and ``pushgo://operations/{op_id}`` (an operation's delivery
status, as ``GET /deliveries/{op_id}``), and ``pushgo://receipts/{op_id}`` (the receipt of a
send repeated until acknowledged, as ``GET /receipts/{op_id}``).

Legacy mode has no channel grants, so ``pushgo://channels`` lists none (an empty
``channels`` array with a ``note`` saying why). A channel resource is readable for any
existing channel by whoever holds the gateway token; its history (messages, events, things)
only when a gateway token is configured at all — without one, knowing a channel id must not
be enough to read what was sent to it, so only what ``/channel/exists`` shows is given.
OAuth mode lists and reads only granted channels; an ungranted channel reads as not found,
so its existence does not leak. The mode is the caller's: an OAuth-mode gateway also takes
the gateway token, and that caller is served as in legacy mode. Password hashes are never read.

The channel and operation resources take subscriptions (:meth:`Resources.watch`, run by
pushgo.mcp.watch): an operation changes as its deliveries progress, a channel when work is
accepted for it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import msgspec

from pushgo.errors import GatewayError
from pushgo.mcp.auth import ChannelBinding, Principal
from pushgo.mcp.watch import ChannelFeed
from pushgo.protocol import fields as field_rules
from pushgo.protocol.jsonrpc import INVALID_PARAMS, RESOURCE_NOT_FOUND_LEGACY, RpcError
from pushgo.protocol.mcp import Resource, ResourceTemplate, TextResourceContents
from pushgo.service import Services

SCHEME = "pushgo://"
CHANNELS_URI = "pushgo://channels"
CHANNEL_TEMPLATE = "pushgo://channels/{channel_id}"
OPERATION_TEMPLATE = "pushgo://operations/{op_id}"
OPERATIONS_PREFIX = "pushgo://operations/"
RECEIPT_TEMPLATE = "pushgo://receipts/{op_id}"
RECEIPTS_PREFIX = "pushgo://receipts/"
MIME = "application/json"
#: A watched operation that does not change is re-read at the status poll anyway; this only
#: bounds how long its watcher stays silent about it.
WATCH_KEEPALIVE_S = 3600.0

LEGACY_NOTE = ("legacy mode: no channels are bound; send tools take channel_id and password "
               "in each call, and pushgo://channels/{channel_id} reads any existing channel")


#: What a channel resource hides from a gateway without a token (nobody is authenticated).
HISTORY_KEYS = ("recent_messages", "open_events", "things")
HISTORY_HIDDEN_NOTE = ("history is shown only when the gateway has PUSHGO_TOKEN set "
                       "(or in OAuth mode, to clients the channel is bound to)")


def not_found(uri: str, *, modern: bool) -> RpcError:
    """2026-07-28 uses Invalid params (-32602); earlier revisions -32002."""
    return RpcError(INVALID_PARAMS if modern else RESOURCE_NOT_FOUND_LEGACY,
                    "Resource not found", {"uri": uri})


def _json(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class Resources:
    def __init__(self, svc: Services, binding: ChannelBinding, *, oauth: bool,
                 feed: ChannelFeed | None = None) -> None:
        self.svc = svc
        self.binding = binding
        self.oauth = oauth
        self.feed = feed or ChannelFeed()

    def watchable(self, uri: str) -> bool:
        """Whether ``uri`` names a resource that can be subscribed to (an operation or a
        channel; the list of channels is announced by list_changed instead). A gateway
        without a token shows nobody a channel's history, nor when it changes."""
        if uri.startswith(CHANNELS_URI + "/"):
            return self.oauth or self.svc.ctx.settings.token is not None
        return uri.startswith(OPERATIONS_PREFIX)

    async def watch(self, uri: str, principal: Principal) -> AsyncIterator[None]:
        """One item per change of a resource the caller has read (pushgo.mcp.watch): an
        operation's delivery counts until it is done; a channel whenever work is accepted
        for it, while the caller may still read it."""
        if uri.startswith(OPERATIONS_PREFIX):
            channels: list[str] | None = None
            if principal.oauth:
                channels = [str(c["channel_id"]) for c in await self._granted(principal)]
            seen = False
            async for doc in self.svc.status.watch(unquote(uri[len(OPERATIONS_PREFIX):]),
                                                   channel_ids=channels,
                                                   keepalive_s=WATCH_KEEPALIVE_S):
                if doc is None:
                    continue
                if seen:
                    yield None
                seen = True
            return
        cid = field_rules.channel_id(uri[len(CHANNELS_URI) + 1:])
        with self.feed.follow(cid) as signal:
            while True:
                await signal.wait()
                if principal.oauth and not await self.binding.is_granted(principal, cid):
                    return
                yield None

    def templates(self) -> list[ResourceTemplate]:
        return [ResourceTemplate(
            uriTemplate=CHANNEL_TEMPLATE, name="channel", title="Channel",
            description="A channel: its name and subscriber count, its recent messages, open "
                        "events and things.", mimeType=MIME),
            ResourceTemplate(
                uriTemplate=OPERATION_TEMPLATE, name="operation", title="Delivery status",
                description="How far an operation (a send's op_id) has got: its deliveries "
                            "by state (queued, sent, failed, expired) and failure reason.",
                mimeType=MIME),
            ResourceTemplate(
                uriTemplate=RECEIPT_TEMPLATE, name="receipt", title="Receipt",
                description="A send repeated until acknowledged (its op_id): the repeat "
                            "settings, sends made, the next send, who acknowledged when and "
                            "through which path, and why it stopped.",
                mimeType=MIME)]

    async def _operation(self, uri: str, principal: Principal, *, modern: bool
                         ) -> list[TextResourceContents]:
        """Counts only, never content: readable as the HTTP status route is; an OAuth caller
        sees only what was sent to its granted channels. The same for a receipt."""
        receipt = uri.startswith(RECEIPTS_PREFIX)
        prefix = RECEIPTS_PREFIX if receipt else OPERATIONS_PREFIX
        get: Callable[..., Awaitable[Any]] = (
            self._receipt if receipt else self.svc.status.get)
        channels: list[str] | None = None
        if principal.oauth:
            channels = [str(c["channel_id"]) for c in await self._granted(principal)]
            if not channels:
                raise not_found(uri, modern=modern)
        try:
            doc = await get(unquote(uri[len(prefix):]), channel_ids=channels)
        except GatewayError as exc:
            if exc.status >= 500:
                raise
            raise not_found(uri, modern=modern) from None
        return [TextResourceContents(uri=uri, mimeType=MIME, text=_json(doc))]

    async def _receipt(self, op_id: str, channel_ids: list[str] | None) -> dict[str, Any]:
        return msgspec.to_builtins(await self.svc.receipts.get(op_id, channel_ids))  # type: ignore[no-any-return]

    async def _granted(self, principal: Principal) -> list[dict[str, Any]]:
        """The caller's granted channels: none for a caller without a grant, but a store
        outage is an error (the dispatcher answers it), never an empty list."""
        if not principal.oauth:
            return []
        try:
            return await self.binding.list_channels(principal)
        except GatewayError as exc:
            if exc.status >= 500:
                raise
            return []

    async def listed(self, principal: Principal) -> list[Resource]:
        """An OAuth caller's channel list and channels; a legacy caller has no grants, so
        nothing (``pushgo://channels`` still reads, empty, with a note)."""
        if not principal.oauth:
            return []
        out = [Resource(uri=CHANNELS_URI, name="channels", title="Authorized channels",
                        description="The channels this client may use.", mimeType=MIME)]
        for ch in await self._granted(principal):
            out.append(Resource(uri=f"{CHANNELS_URI}/{ch['channel_id']}",
                                name=f"channel {ch['channel_id']}",
                                title=str(ch.get("channel_name") or ch["channel_id"]),
                                mimeType=MIME))
        return out

    async def read(self, uri: str, principal: Principal, *, modern: bool
                   ) -> list[TextResourceContents]:
        if uri == CHANNELS_URI:
            if principal.oauth:
                doc: dict[str, Any] = {"channels": await self._granted(principal)}
            else:
                doc = {"channels": [], "mode": "legacy", "note": LEGACY_NOTE}
            return [TextResourceContents(uri=uri, mimeType=MIME, text=_json(doc))]
        if uri.startswith((OPERATIONS_PREFIX, RECEIPTS_PREFIX)):
            return await self._operation(uri, principal, modern=modern)
        prefix = CHANNELS_URI + "/"
        if not uri.startswith(prefix):
            raise not_found(uri, modern=modern)
        try:
            cid = field_rules.channel_id(uri[len(prefix):])
        except GatewayError:
            raise not_found(uri, modern=modern) from None
        if principal.oauth and not await self.binding.is_granted(principal, cid):
            raise not_found(uri, modern=modern)
        overview = await self.svc.channels.overview(cid)
        if overview is None:
            raise not_found(uri, modern=modern)
        if not principal.oauth and self.svc.ctx.settings.token is None:
            overview = {k: v for k, v in overview.items() if k not in HISTORY_KEYS}
            overview["note"] = HISTORY_HIDDEN_NOTE
        return [TextResourceContents(uri=uri, mimeType=MIME, text=_json(overview))]
