"""Request and response Structs of the device/channel/inbox routes.

Unknown fields are rejected everywhere. Optional strings where v1.2.9 treats "" as absent are
normalized by the services, not here. Pure.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from pushgo.protocol.fields import CHANNEL_TYPES, PLATFORMS

# Described in the OpenAPI document (GET /openapi.json) with their values; decoded as any
# string, so a bad value gets the field rule's own error code (invalid_platform, …).
Platform = Annotated[str, msgspec.Meta(extra_json_schema={"enum": sorted(PLATFORMS)})]
ChannelType = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(CHANNEL_TYPES)})]


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Out(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class DeviceRegisterIn(_In):
    platform: Platform
    device_key: str | None = None
    #: The app the device belongs to (its provider deliveries use that app's credentials);
    #: absent: unchanged (``default`` for a new device).
    app: str | None = None


class DeviceRegisterOut(_Out):
    device_key: str
    issued_new_key: bool
    issue_reason: str | None = None


class DeviceRouteIn(_In):
    device_key: str
    channel_type: ChannelType
    platform: Platform | None = None
    provider_token: str | None = None
    #: As DeviceRegisterIn.app.
    app: str | None = None


class DeviceRouteDeleteIn(_In):
    device_key: str
    channel_type: ChannelType


class DeviceRouteOut(_Out):
    device_key: str
    channel_type: str
    # Always false here, but always sent: v1.2.9 clients decode it as a required field.
    issued_new_key: bool
    provider_token: str | None = None


class TokenRetireIn(_In):
    platform: str
    provider_token: str
    # v1.3 apps name the route they retire the token from, so that a late retire after the
    # device moved to another route (or another token) leaves the new route alone.
    device_key: str | None = None
    channel_type: str | None = None


class TokenRetireOut(_Out):
    retired: bool


class SubscribeIn(_In):
    device_key: str
    password: str
    channel_id: str | None = None
    channel_name: str | None = None


class SubscribeOut(_Out):
    channel_id: str
    channel_name: str
    created: bool
    subscribed: bool


class UnsubscribeIn(_In):
    device_key: str
    channel_id: str


class UnsubscribeOut(_Out):
    channel_id: str
    removed: bool


class SyncItemIn(_In):
    channel_id: str
    password: str


class SyncIn(_In):
    device_key: str
    channels: list[SyncItemIn]


class SyncItemOut(_Out):
    channel_id: str
    subscribed: bool
    created: bool  # always sent (always false: sync never creates), as v1.2.9
    channel_name: str | None = None
    error: str | None = None
    error_code: str | None = None


class SyncOut(_Out):
    total: int
    success: int
    failed: int
    channels: list[SyncItemOut]


class ExistsOut(_Out):
    channel_id: str
    exists: bool
    channel_name: str | None = None


class RenameIn(_In):
    channel_id: str
    channel_name: str
    password: str


class RenameOut(_Out):
    channel_id: str
    channel_name: str


class PullIn(_In):
    device_key: str
    delivery_id: str | None = None


class PullItem(_Out):
    delivery_id: str
    payload: msgspec.Raw


class PullOut(_Out):
    items: list[PullItem]


class PullV2Out(_Out):
    items: list[PullItem]
    has_more: bool


class AckV2In(_In):
    device_key: str
    delivery_ids: list[str]


class AckV2Out(_Out):
    requested_count: int
    removed_count: int


class AckIn(_In):
    device_key: str
    delivery_id: str


class AckOut(_Out):
    removed: bool


class SendOut(_Out):
    channel_id: str
    op_id: str
    accepted: bool
    message_id: str | None = None
    event_id: str | None = None
    thing_id: str | None = None
    deliver_at: int | None = None  # a scheduled send: when it goes out (epoch ms)
