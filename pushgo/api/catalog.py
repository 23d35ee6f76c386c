"""What each HTTP route takes and answers, for the OpenAPI document (pushgo.api.openapi), the
``/docs`` page and the index page: one declaration per route template, next to the types the
route decodes with.

A route's request body and query are the very Structs its handler decodes; its ``data`` is
the Struct it encodes, or, where a handler builds a dict, a Struct below that describes that
dict (``forbid_unknown_fields``, so that a field added to the dict and not here makes the
document's schema refuse the live answer: the fuzzer and tests/api/test_openapi.py notice).
``codes`` are the route's own error codes from the registry (pushgo.errors.codes); the codes
every route can answer are added by the generator. A route of the app without a declaration
here is still listed in the document, marked undescribed, and tests/api/test_openapi.py fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from pushgo.api import admin as ADM
from pushgo.errors import codes as C
from pushgo.protocol import apps as APPS
from pushgo.protocol import compat, wire
from pushgo.protocol import liveactivity as LA
from pushgo.protocol import operations as OPS
from pushgo.protocol import receipts as RCP
from pushgo.service.keys import KeyOut

# --------------------------------------------------------------------------- dict answers


class _Doc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class HealthOut(_Doc):
    status: str
    private_channel_enabled: bool
    private_runtime_ready: bool


class ReadyOut(_Doc):
    status: str


class TransportOut(_Doc):
    sse_enabled: bool
    sse_path: str
    quic_enabled: bool
    quic_port: int | None
    tcp_enabled: bool
    tcp_port: int | None
    wss_enabled: bool
    wss_port: int
    wss_path: str
    ws_subprotocol: str
    sse_url: str | None = None  # only with PUSHGO_PUBLIC_BASE_URL
    wss_url: str | None = None  # only with WSS on and PUSHGO_PUBLIC_BASE_URL


class ProfileOut(_Doc):
    private_channel_enabled: bool
    private_enabled: bool
    transport: TransportOut
    apns_enabled: bool
    fcm_enabled: bool
    mcp_enabled: bool


class VapidKeyOut(_Doc):
    application_server_key: str


class KeyListQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    all: Literal["true", "false"] = "false"  #: true: revoked keys too


class AuditQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    limit: str = "100"  #: a whole number, at most 500
    before: str | None = None  #: entries older than this seq (a whole number: the next page)


class ChannelCreateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channel_name: str
    password: str


class ChannelCreateOut(_Doc):
    channel_id: str
    channel_name: str
    created: bool


class ChannelInfoOut(_Doc):
    channel_id: str
    channel_name: str
    created_at: int
    updated_at: int
    subscribers: int


class StateCounts(_Doc):
    queued: int
    sent: int
    failed: int
    expired: int
    scheduled: int | None = None  # a scheduled send's deliveries waiting for deliver_at
    cancelled: int | None = None  # cancelled before they went out


class RouteWaiting(_Doc):
    state: str  # provider_unavailable | retrying
    last_error: str | None
    deliveries: int
    breaker: str | None = None
    since: int | None = None


class PrivateWaiting(_Doc):
    waiting_offline: int


class DeliveryStatusOut(_Doc):
    op_id: str
    total: int
    done: bool
    states: StateCounts
    failures: dict[str, int]
    created_at: int
    operations: int
    retrying: int
    routes: dict[str, StateCounts]
    channel_id: str | None = None
    waiting: dict[str, RouteWaiting] | None = None
    private: PrivateWaiting | None = None
    deliver_at: int | None = None  # a scheduled send: when its deliveries go out (epoch ms)
    state: str | None = None  # "scheduled" while they wait for it


class SendStatusOut(_Doc):
    op_id: str
    status: str  # accepted | provider_queued | sent | partially_failed | failed | scheduled | cancelled
    reason: str
    total: int
    sent: int
    failed: int
    expired: int
    queued: int
    created_at: int
    channel_id: str | None = None
    deliver_at: int | None = None
    scheduled: int | None = None
    cancelled: int | None = None


class CancelOut(_Doc):
    op_id: str
    outcome: str  # cancelled | already_cancelled | already_done
    cancelled: int  # deliveries cancelled by this call
    total: int
    states: dict[str, int]  # every delivery of the operation by state, afterwards
    repeat_stopped: bool  # a send repeated until acknowledged makes no more rounds


class ConsoleStates(_Doc):
    queued: int
    scheduled: int
    sent: int
    failed: int
    expired: int
    cancelled: int


class ConsoleOperation(_Doc):
    op_id: str
    kind: str  # message | event | thing
    created_at: int
    sender: str  # the key id it was accepted under (root: the gateway token)
    channel_id: str | None  # None: direct tokens, or an op_id over several channels
    channel_name: str | None
    deliver_at: int | None
    operations: int
    total: int
    done: bool
    states: ConsoleStates


class ConsoleSample(_Doc):
    at: int
    queued: int
    due: int
    sent: int  # sent by this process since the previous sample


class ConsoleStatsOut(_Doc):
    interval_s: float
    capacity: int
    now: int
    queued: int
    due: int
    samples: list[ConsoleSample]


class ConsoleHealthRow(_Doc):
    route: str
    state: str
    last_error: str | None
    since: int
    updated_at: int


class ConsoleBreaker(_Doc):
    state: str  # closed | open | half_open
    failures: int
    opened: int
    last_error: str | None


class ConsoleProvider(_Doc):
    route: str
    configured: bool  # this process sends to it
    state: str  # closed | open | half_open
    shared: ConsoleHealthRow | None
    shared_fresh: bool
    local: ConsoleBreaker | None


class ConsoleReason(_Doc):
    route: str
    reason: str
    count: int


class ConsoleFailuresOut(_Doc):
    since: int
    total: int
    reasons: list[ConsoleReason]


# --------------------------------------------------------------------------- query parameters


class ChannelQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channel_id: str


class DeviceQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    device_key: str


class StatusQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channel_id: str | None = None  # narrows an op_id used on several channels


class MetricsQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    scope: Literal["all", "process"] = "all"  # process: only the answering worker's


def _fields_query(name: str, names: frozenset[str]) -> type[Any]:
    """The query Struct of a compat route: the very names its handler accepts, all text."""
    return msgspec.defstruct(name, [(n, str | None, None) for n in sorted(names)],
                             forbid_unknown_fields=True, kw_only=True)


NtfyQuery = _fields_query("NtfyQuery", compat.NTFY_QUERY)
ServerChanQuery = _fields_query("ServerChanQuery", compat.SERVERCHAN_FIELDS)
BarkQuery = _fields_query("BarkQuery", compat.BARK_QUERY)


class ConsoleOperationsQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    limit: int | None = None  # 1-200, default 30


class NoQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# --------------------------------------------------------------------------- declarations

JSON = "application/json"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
HTML = "text/html"
JS = "text/javascript"
TEXT = "text/plain"
FORM = "application/x-www-form-urlencoded"

#: One Server-Sent Event (as Schemathesis checks each event of a text/event-stream answer);
#: ``data`` holds JSON (pushgo.protocol.sse), comments carry no event.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "id": {"type": "string"},
                   "retry": {"type": "integer"},
                   "data": {"type": "string", "contentMediaType": "application/json"}},
}

#: An OpenAPI link: the target's method and path, its parameters and request body, each a
#: runtime expression over the linking call (``$response.body#/data/…``) or a constant.
Link = tuple[str, str, dict[str, str], dict[str, Any] | None]


@dataclass(frozen=True)
class Op:
    """One route (one method of it, or all methods with ``method="*"``)."""

    summary: str
    tag: str
    body: type[Any] | None = None  #: the JSON body's Struct
    query: type[Any] | None = None  #: the query's Struct (each field one parameter)
    data: type[Any] | None = None  #: the success envelope's ``data``
    codes: tuple[str, ...] = ()  #: this route's own error codes
    #: A body that is not one JSON Struct: media type → JSON Schema.
    raw_body: dict[str, Any] | None = None
    #: An answer that is not the JSON envelope: its media type (200), its schema.
    media: str | None = None
    media_schema: dict[str, Any] = field(default_factory=dict)
    #: A route with its own wire format (OAuth, MCP): its statuses, bodies described loosely.
    loose: tuple[int, ...] = ()
    #: Links to later operations (stateful testing): name → (method, path, parameters, body).
    links: dict[str, Link] = field(default_factory=dict)
    #: The success status.
    status: int = 200


#: The codes every field of a send can answer with (pushgo.protocol.fields, operations).
_SEND = (C.CHANNEL_ID_REQUIRED.code, C.INVALID_CHANNEL_ID.code, C.PASSWORD_REQUIRED.code,
         C.INVALID_PASSWORD.code, C.PASSWORD_MISMATCH.code, C.RATE_LIMITED.code,
         C.CHANNEL_NOT_FOUND.code, C.INVALID_OP_ID.code, C.OP_ID_CONFLICT.code,
         C.THING_ID_REQUIRED.code, C.INVALID_THING_ID.code, C.INVALID_TTL.code,
         C.INVALID_SEVERITY.code, C.IMAGES_FORMAT_INVALID.code, C.TAGS_FORMAT_INVALID.code,
         C.METADATA_OBJECT_REQUIRED.code, C.METADATA_VALUE_TOO_LONG.code,
         C.INVALID_OCCURRED_AT.code, C.THING_DELETED.code, C.EVENT_CLOSED.code,
         C.PAYLOAD_TOO_LARGE.code, C.INVALID_DELIVER_AT.code, C.DELIVER_AT_IN_PAST.code,
         C.DELIVER_AT_TOO_FAR.code, C.TTL_BEFORE_DELIVER_AT.code)
_MESSAGE = (*_SEND, C.TITLE_REQUIRED.code, C.INVALID_MESSAGE.code,
            C.OCCURRED_AT_REQUIRED_FOR_THING_SCOPED_MESSAGE.code, C.INVALID_REPEAT.code)
_EVENT = (*_SEND, C.EVENT_ID_REQUIRED.code, C.INVALID_EVENT_ID.code, C.INVALID_STATUS.code,
          C.INVALID_EVENT_TIME.code, C.EVENT_TIME_REQUIRED.code, C.INVALID_STARTED_AT.code,
          C.INVALID_ENDED_AT.code, C.ENDED_AT_FORBIDDEN_ON_CREATE.code,
          C.EVENT_TEMPORAL_FIELDS_FORBIDDEN_ON_UPDATE.code, C.STARTED_AT_FORBIDDEN_ON_CLOSE.code,
          C.EVENT_CREATE_REQUIRED_FIELDS_MISSING.code, C.EVENT_UPDATE_REQUIRED_FIELDS_MISSING.code,
          C.INVALID_REPEAT.code,
          C.TITLE_REQUIRED.code, C.INVALID_LOCATION.code, C.THING_ID_MISMATCH.code)
_THING = (*_SEND, C.TITLE_REQUIRED.code, C.INVALID_OBSERVED_AT.code,
          C.OBSERVED_AT_REQUIRED.code, C.INVALID_CREATED_AT.code, C.INVALID_DELETED_AT.code,
          C.INVALID_LOCATION.code, C.EXTERNAL_IDS_KEY_INVALID.code,
          C.EXTERNAL_IDS_VALUE_INVALID.code)
_DEVICE = (C.DEVICE_KEY_REQUIRED.code, C.INVALID_DEVICE_KEY.code, C.DEVICE_KEY_NOT_FOUND.code)
_APP = (C.APP_NOT_FOUND.code, C.APP_NOT_ALLOWED.code)
_ROUTE = (*_DEVICE, C.INVALID_CHANNEL_TYPE.code, C.INVALID_PLATFORM.code,
          C.PLATFORM_MISMATCH.code, C.CHANNEL_TYPE_MISMATCH.code,
          C.INVALID_PROVIDER_TOKEN.code, C.PROVIDER_TOKEN_REQUIRED.code,
          C.PROVIDER_TOKEN_FORBIDDEN_FOR_PRIVATE_CHANNEL.code,
          C.APNS_CHANNEL_REQUIRES_APPLE_PLATFORM.code,
          C.FCM_CHANNEL_REQUIRES_ANDROID_PLATFORM.code,
          C.WNS_CHANNEL_REQUIRES_WINDOWS_PLATFORM.code,
          C.WEBPUSH_CHANNEL_REQUIRES_WEB_PLATFORM.code, C.INVALID_WEBPUSH_SUBSCRIPTION.code)
_LIVE = (*_DEVICE, C.INVALID_PROVIDER_TOKEN.code, C.PROVIDER_TOKEN_REQUIRED.code,
         C.LIVE_ACTIVITY_REQUIRES_IOS_APNS.code)
_LIVE_EVENT = (C.CHANNEL_ID_REQUIRED.code, C.INVALID_CHANNEL_ID.code, C.EVENT_ID_REQUIRED.code,
               C.INVALID_EVENT_ID.code)
_APP_LIVE = (C.LIVE_ACTIVITY_REQUIRES_IOS_APNS.code, C.UNSUPPORTED_SCHEMA_VERSION.code,
             C.INVALID_ACTIVITY_KEY.code, C.EVENT_ID_REQUIRED.code, C.INVALID_EVENT_ID.code)
_CHANNEL = (C.CHANNEL_ID_REQUIRED.code, C.INVALID_CHANNEL_ID.code, C.CHANNEL_NOT_FOUND.code)
_PASSWORD = (C.PASSWORD_REQUIRED.code, C.INVALID_PASSWORD.code, C.PASSWORD_MISMATCH.code,
             C.RATE_LIMITED.code)
_COMPAT = (*_MESSAGE, C.COMPAT_KEY_INVALID.code, C.THING_ID_UNSUPPORTED_ON_NTFY_ENDPOINT.code,
           C.UNSUPPORTED_MEDIA_TYPE.code, C.INVALID_QUERY.code, C.ROUTE_NOT_FOUND.code)
_INBOX = (*_DEVICE, C.DELIVERY_ID_REQUIRED.code, C.INVALID_DELIVERY_IDS.code)

_KEY = "$response.body#/data/device_key"
_TO_STATUS = {"op_id": "$response.body#/data/op_id"}
_SENT: dict[str, Link] = {"status": ("GET", "/deliveries/{op_id}", _TO_STATUS, None),
                          "send_status": ("GET", "/send_status/{op_id}", _TO_STATUS, None)}
_FUZZ_PASSWORD = "fuzz-pass-1"  # noqa: S105 - the channel password of linked test requests

OPS_BY_ROUTE: dict[tuple[str, str], Op] = {
    # gateway
    ("GET", "/"): Op("this page: what the gateway is, its version and routes", "gateway",
                     media=HTML, media_schema={"type": "string"}),
    ("GET", "/healthz"): Op("liveness", "gateway", data=HealthOut),
    ("GET", "/readyz"): Op("readiness: the store answers and delivery runs", "gateway",
                           data=ReadyOut, codes=(C.NOT_READY.code,)),
    ("GET", "/gateway/profile"): Op("which private transports and providers are on", "gateway",
                                    data=ProfileOut),
    # the operator console (the page needs no credential; its data routes need admin)
    ("GET", "/console"): Op("the operator console: operations, providers, queue and failures",
                            "admin", media=HTML, media_schema={"type": "string"}),
    ("GET", "/admin/console/operations"): Op(
        "the newest operations with their deliveries by state (admin)", "admin",
        query=ConsoleOperationsQuery, data=list[ConsoleOperation],
        codes=(C.SCOPE_REQUIRED.code, C.INVALID_QUERY.code)),
    ("GET", "/admin/console/stats"): Op(
        "provider queue depth and sends: now, and the last hour's samples (admin)", "admin",
        query=NoQuery, data=ConsoleStatsOut, codes=(C.SCOPE_REQUIRED.code, C.INVALID_QUERY.code)),
    ("GET", "/admin/console/providers"): Op(
        "each provider's circuit breaker state (admin)", "admin", query=NoQuery,
        data=list[ConsoleProvider], codes=(C.SCOPE_REQUIRED.code, C.INVALID_QUERY.code)),
    ("GET", "/admin/console/failures"): Op(
        "the last hour's failed deliveries by reason (admin)", "admin", query=NoQuery,
        data=ConsoleFailuresOut, codes=(C.SCOPE_REQUIRED.code, C.INVALID_QUERY.code)),
    ("GET", "/metrics"): Op("Prometheus metrics", "gateway", query=MetricsQuery, media=TEXT,
                            media_schema={"type": "string"}, codes=(C.INVALID_QUERY.code,)),
    ("GET", "/openapi.json"): Op("this API described for machines (OpenAPI 3.1)", "gateway",
                                 media=JSON, media_schema={"type": "object"}),
    ("GET", "/docs"): Op("the API reference, rendered from /openapi.json", "gateway",
                         media=HTML, media_schema={"type": "string"}),
    # Web Push (browsers)
    ("GET", "/webpush/vapid-public-key"): Op(
        "the applicationServerKey browsers subscribe with (base64url P-256 point)", "devices",
        data=VapidKeyOut, codes=(C.NOT_READY.code,)),
    ("GET", "/webpush/subscribe"): Op("a page that subscribes this browser to a channel",
                                      "devices", media=HTML, media_schema={"type": "string"}),
    ("GET", "/webpush/sw.js"): Op("the Web Push service worker of that page", "devices",
                                  media=JS, media_schema={"type": "string"}),
    # devices and channels
    ("POST", "/device/register"): Op(
        "register a device, get its device_key", "devices", body=wire.DeviceRegisterIn,
        data=wire.DeviceRegisterOut,
        codes=(*_APP, C.INVALID_PLATFORM.code, C.INVALID_DEVICE_KEY.code),
        links={
            "subscribe": ("POST", "/channel/subscribe", {},
                          {"device_key": _KEY, "channel_name": "fuzz",
                           "password": _FUZZ_PASSWORD}),
            "pull": ("POST", "/messages/pull", {}, {"device_key": _KEY}),
            "pull_v2": ("POST", "/v2/messages/pull", {}, {"device_key": _KEY}),
            "route": ("POST", "/channel/device", {},
                      {"device_key": _KEY, "channel_type": "private"}),
        }),
    ("POST", "/channel/device"): Op(
        "set the device route (apns, fcm, wns, webpush, private)", "devices", body=wire.DeviceRouteIn,
        data=wire.DeviceRouteOut, codes=(*_ROUTE, *_APP)),
    ("POST", "/channel/device/delete"): Op(
        "clear the route's provider token", "devices", body=wire.DeviceRouteDeleteIn,
        data=wire.DeviceRouteOut, codes=_ROUTE),
    ("POST", "/channel/device/provider-token/retire"): Op(
        "retire a dead provider token", "devices", body=wire.TokenRetireIn,
        data=wire.TokenRetireOut, codes=_ROUTE),
    ("POST", "/device/liveactivity/start-token"): Op(
        "register the device's Live Activity push-to-start token (events start activities)",
        "devices", body=LA.StartTokenIn, data=LA.TokenOut, codes=_LIVE),
    ("POST", "/device/liveactivity/start-token/delete"): Op(
        "forget the device's push-to-start token", "devices", body=LA.StartTokenDeleteIn,
        data=LA.TokenOut, codes=_DEVICE),
    ("POST", "/device/liveactivity/token"): Op(
        "register the update token of the Live Activity showing an event", "devices",
        body=LA.ActivityTokenIn, data=LA.TokenOut,
        codes=(*_LIVE, *_LIVE_EVENT, C.EVENT_NOT_FOUND.code, C.EVENT_CLOSED.code)),
    ("POST", "/device/liveactivity/token/delete"): Op(
        "forget the Live Activity of an event (it ended on the device)", "devices",
        body=LA.ActivityTokenDeleteIn, data=LA.TokenOut, codes=(*_DEVICE, *_LIVE_EVENT)),
    ("POST", "/v1/activity/register"): Op(
        "the PushGo iOS app: register the update token of an event's Live Activity by "
        "activity_key (event:<event_id>)", "devices", body=LA.ActivityRegisterIn,
        data=LA.ActivityKeyOut,
        codes=(*_APP_LIVE, C.CHANNEL_ID_REQUIRED.code, C.INVALID_CHANNEL_ID.code,
               C.INVALID_PROVIDER_TOKEN.code, C.PROVIDER_TOKEN_REQUIRED.code,
               C.EVENT_NOT_FOUND.code, C.EVENT_CLOSED.code, C.ACTIVITY_EVENT_AMBIGUOUS.code,
               C.ACTIVITY_LIMIT_EXCEEDED.code)),
    ("POST", "/v1/activity/unregister"): Op(
        "the PushGo iOS app: forget an event's Live Activity token (or all of the "
        "activity_key's)", "devices", body=LA.ActivityUnregisterIn, data=LA.ActivityKeyOut,
        codes=(*_APP_LIVE, C.INVALID_PROVIDER_TOKEN.code)),
    ("POST", "/channel/subscribe"): Op(
        "subscribe (a name and no id creates the channel)", "channels", body=wire.SubscribeIn,
        data=wire.SubscribeOut,
        codes=(*_DEVICE, *_CHANNEL, *_PASSWORD, C.INVALID_CHANNEL_NAME.code,
               C.CHANNEL_SUBSCRIBER_LIMIT_EXCEEDED.code, C.CHANNELS_LIMIT_EXCEEDED.code),
        links={
            "send": ("POST", "/message", {},
                     {"channel_id": "$response.body#/data/channel_id",
                      "password": "$request.body#/password", "title": "fuzz"}),
            "exists": ("GET", "/channel/exists",
                       {"channel_id": "$response.body#/data/channel_id"}, None),
            "info": ("GET", "/channel/info",
                     {"channel_id": "$response.body#/data/channel_id"}, None),
        }),
    ("POST", "/channel/unsubscribe"): Op(
        "unsubscribe", "channels", body=wire.UnsubscribeIn, data=wire.UnsubscribeOut,
        codes=(*_DEVICE, *_CHANNEL)),
    ("POST", "/channel/sync"): Op(
        "reconcile a device's subscriptions", "channels", body=wire.SyncIn, data=wire.SyncOut,
        codes=(*_DEVICE, *_CHANNEL, *_PASSWORD, C.CHANNELS_LIMIT_EXCEEDED.code)),
    ("GET", "/channel/exists"): Op("does a channel exist", "channels", query=ChannelQuery,
                                   data=wire.ExistsOut, codes=(*_CHANNEL, C.INVALID_QUERY.code)),
    ("POST", "/channel/rename"): Op(
        "rename a channel", "channels", body=wire.RenameIn, data=wire.RenameOut,
        codes=(*_CHANNEL, *_PASSWORD, C.INVALID_CHANNEL_NAME.code)),
    # apps (admin)
    ("GET", "/admin/apps"): Op("the apps this gateway sends for (admin)", "admin",
                               data=APPS.AppsOut, codes=(C.SCOPE_REQUIRED.code,)),
    ("POST", "/admin/apps"): Op(
        "add an app with its own APNs/FCM/WNS credentials (admin)", "admin", body=APPS.AppIn,
        data=APPS.AppOut, codes=(C.SCOPE_REQUIRED.code, C.INVALID_APP.code, C.APP_EXISTS.code)),
    ("DELETE", "/admin/apps/{name}"): Op(
        "remove a stored app; its devices' deliveries then fail (admin)", "admin",
        codes=(C.SCOPE_REQUIRED.code, C.APP_NOT_FOUND.code, C.APP_EXISTS.code)),
    ("POST", "/channel/create"): Op(
        "create a channel without subscribing a device (operators)", "channels",
        body=ChannelCreateIn, data=ChannelCreateOut,
        codes=(C.INVALID_CHANNEL_NAME.code, C.PASSWORD_REQUIRED.code, C.INVALID_PASSWORD.code)),
    ("GET", "/channel/info"): Op(
        "a channel's name, times and subscriber count (operators)", "channels",
        query=ChannelQuery, data=ChannelInfoOut, codes=(*_CHANNEL, C.INVALID_QUERY.code)),
    # inbox
    ("POST", "/messages/pull"): Op(
        "fetch and remove a device's pending payloads (v1)", "inbox", body=wire.PullIn,
        data=wire.PullOut, codes=_INBOX),
    ("POST", "/messages/ack"): Op("acknowledge a delivery", "inbox", body=wire.AckIn,
                                  data=wire.AckOut, codes=_INBOX),
    ("POST", "/v2/messages/pull"): Op(
        "a page of a device's pending payloads, kept until acknowledged (v1.3)", "inbox",
        body=wire.PullIn, data=wire.PullV2Out, codes=_INBOX,
        links={"ack": ("POST", "/v2/messages/ack", {},
                       {"device_key": "$request.body#/device_key",
                        "delivery_ids": ["$response.body#/data/items/0/delivery_id"]})}),
    ("POST", "/v2/messages/ack"): Op("acknowledge deliveries by id (v1.3)", "inbox",
                                     body=wire.AckV2In, data=wire.AckV2Out, codes=_INBOX),
    ("GET", "/private/readyz"): Op(
        "readiness of the private mode's warp-link runtime", "inbox", data=HealthOut,
        codes=("private_channel_runtime_unavailable",)),
    ("GET", "/private/ws"): Op(
        "warp-link over WebSocket (subprotocol pushgo-private.v1): the PushGo apps' private "
        "mode; a plain HTTP request is not an upgrade (404)", "inbox",
        loose=(101, 400, 401, 403, 404, 503)),
    ("GET", "/private/stream"): Op(
        "live deliveries of a private device (Server-Sent Events; Last-Event-ID resumes)",
        "inbox", query=DeviceQuery, media=SSE, media_schema=SSE_EVENT,
        codes=(*_DEVICE, C.INVALID_QUERY.code)),
    # sending
    ("POST", "/message"): Op("send a message", "send", body=OPS.MessageIn, data=wire.SendOut,
                             codes=_MESSAGE, links=_SENT),
    ("GET", "/message"): Op("send a message from a query string", "send",
                            query=OPS.MessageQuery, data=wire.SendOut,
                            codes=(*_MESSAGE, C.INVALID_QUERY.code), links=_SENT),
    ("POST", "/event/create"): Op("open an event", "send", body=OPS.EventCreateIn,
                                  data=wire.SendOut, codes=_EVENT, links=_SENT),
    ("POST", "/event/update"): Op("update an event", "send", body=OPS.EventUpdateIn,
                                  data=wire.SendOut, codes=_EVENT, links=_SENT),
    ("POST", "/event/close"): Op("close an event", "send", body=OPS.EventCloseIn,
                                 data=wire.SendOut, codes=_EVENT, links=_SENT),
    ("POST", "/thing/{thing_id}/event/close"): Op(
        "close an event of a thing (v1.3)", "send", body=OPS.EventCloseIn, data=wire.SendOut,
        codes=_EVENT, links=_SENT),
    ("POST", "/thing/create"): Op("create a thing", "send", body=OPS.ThingCreateIn,
                                  data=wire.SendOut, codes=_THING, links=_SENT),
    ("POST", "/thing/update"): Op("update a thing", "send", body=OPS.ThingUpdateIn,
                                  data=wire.SendOut, codes=_THING, links=_SENT),
    ("POST", "/thing/archive"): Op("archive a thing", "send", body=OPS.ThingArchiveIn,
                                   data=wire.SendOut, codes=_THING, links=_SENT),
    ("POST", "/thing/delete"): Op("delete a thing", "send", body=OPS.ThingDeleteIn,
                                  data=wire.SendOut, codes=_THING, links=_SENT),
    ("POST", "/messages/bulk"): Op(
        "many sends in one request: NDJSON or a JSON array in (gzip allowed), one result line "
        "per item out; an item is a channel operation, or a direct message with route apns|fcm "
        "and tokens, or route webpush and subscriptions ({endpoint, keys} objects)", "send",
        raw_body={NDJSON: {"type": "string"}, JSON: {"type": "array"}},
        media=NDJSON, media_schema={"type": "string"},
        codes=(C.UNSUPPORTED_MEDIA_TYPE.code,)),
    ("GET", "/deliveries/{op_id}"): Op(
        "delivery status of an operation", "status", query=StatusQuery,
        data=DeliveryStatusOut,
        codes=(C.OPERATION_NOT_FOUND.code, C.INVALID_OP_ID.code, C.OP_ID_REQUIRED.code,
               C.INVALID_QUERY.code, C.INVALID_CHANNEL_ID.code)),
    ("GET", "/deliveries/{op_id}/stream"): Op(
        "delivery status as Server-Sent Events until done (each event's data: the "
        "DeliveryStatusOut document)", "status", query=StatusQuery,
        media=SSE, media_schema=SSE_EVENT,
        codes=(C.OPERATION_NOT_FOUND.code, C.INVALID_OP_ID.code, C.OP_ID_REQUIRED.code,
               C.INVALID_QUERY.code, C.INVALID_CHANNEL_ID.code)),
    ("POST", "/operations/{op_id}/cancel"): Op(
        "cancel what has not gone out of an operation (a scheduled send): with the channel's "
        "password, or the gateway token alone", "status", body=OPS.CancelIn, data=CancelOut,
        codes=(C.OPERATION_NOT_FOUND.code, C.INVALID_OP_ID.code, C.OP_ID_REQUIRED.code,
               *_CHANNEL, *_PASSWORD)),
    ("POST", "/receipts/ack"): Op(
        "a device acknowledges a repeating send delivered to it (a notification action): "
        "the repeats stop", "status", body=RCP.ReceiptAckIn, data=RCP.ReceiptAckOut,
        codes=(*_DEVICE, C.RECEIPT_NOT_FOUND.code, C.INVALID_OP_ID.code,
               C.OP_ID_REQUIRED.code)),
    ("GET", "/receipts/{op_id}"): Op(
        "the receipt of a repeating send: repeat settings, sends made, next send, who "
        "acknowledged when and how, why it stopped", "status", query=StatusQuery,
        data=RCP.ReceiptOut,
        codes=(C.RECEIPT_NOT_FOUND.code, C.INVALID_OP_ID.code, C.OP_ID_REQUIRED.code,
               C.INVALID_QUERY.code, C.INVALID_CHANNEL_ID.code)),
    ("GET", "/send_status/{op_id}"): Op(
        "send status of an operation (v1.3)", "status", query=NoQuery, data=SendStatusOut,
        codes=(C.OPERATION_NOT_FOUND.code, C.INVALID_OP_ID.code, C.OP_ID_REQUIRED.code,
               C.INVALID_QUERY.code)),
    # compat ingress: the key is <channel_id>:<password> inside the path
    ("*", "/ntfy/{rest}"): Op(
        "ntfy-style send: /ntfy/<key>[/<title>]; body or ?message= is the text", "compat",
        query=NtfyQuery, raw_body={TEXT: {"type": "string"}}, data=wire.SendOut,
        codes=_COMPAT),
    ("*", "/serverchan/{rest}"): Op(
        "ServerChan-style send: /serverchan/<key>.send, query or form fields", "compat",
        query=ServerChanQuery, raw_body={FORM: {"type": "object",
                         "properties": {k: {"type": "string"}
                                        for k in sorted(compat.SERVERCHAN_FIELDS)}}},
        data=wire.SendOut, codes=_COMPAT),
    ("*", "/bark/{rest}"): Op(
        "Bark-style send: /bark/<key>/<title>/<body>, or POST /bark/push with JSON", "compat",
        query=BarkQuery, raw_body={JSON: {"$ref": "#/components/schemas/BarkPushIn"}}, data=wire.SendOut,
        codes=_COMPAT),
}

#: Types the document always carries (referenced by name from raw bodies above).
EXTRA_TYPES: tuple[type[Any], ...] = (compat.BarkPushIn,)

# --------------------------------------------------------------------------- OAuth and MCP: their
# own wire formats (RFC 8414, RFC 9728, RFC 7591, RFC 6749, JSON-RPC), described loosely

_OAUTH_META = (200, 404)
_OAUTH_FORM = (200, 400, 401, 403, 413, 415, 429)
_PAGE = (200, 302, 303, 400, 403, 404, 413, 415, 429)

OPS_BY_ROUTE.update({
    ("GET", "/.well-known/oauth-protected-resource"): Op(
        "protected resource metadata of /mcp (RFC 9728)", "oauth", loose=_OAUTH_META),
    ("GET", "/.well-known/oauth-protected-resource/{rest}"): Op(
        "protected resource metadata, path-suffixed form", "oauth", loose=_OAUTH_META),
    ("GET", "/.well-known/oauth-authorization-server"): Op(
        "authorization server metadata (RFC 8414)", "oauth", loose=_OAUTH_META),
    ("GET", "/.well-known/oauth-authorization-server/{rest}"): Op(
        "authorization server metadata, path-suffixed form", "oauth", loose=_OAUTH_META),
    ("GET", "/.well-known/openid-configuration"): Op(
        "authorization server metadata, OpenID discovery spelling", "oauth", loose=_OAUTH_META),
    ("GET", "/.well-known/openid-configuration/{rest}"): Op(
        "authorization server metadata, OpenID discovery path-suffixed", "oauth",
        loose=_OAUTH_META),
    ("GET", "/oauth/jwks.json"): Op("the access tokens' public keys (JWKS)", "oauth",
                                    loose=(200,)),
    ("POST", "/oauth/token"): Op("token endpoint (RFC 6749, PKCE)", "oauth", loose=_OAUTH_FORM,
                                 raw_body={FORM: {"type": "object"}}),
    ("POST", "/oauth/revoke"): Op("token revocation (RFC 7009)", "oauth", loose=_OAUTH_FORM,
                                  raw_body={FORM: {"type": "object"}}),
    ("POST", "/oauth/register"): Op("dynamic client registration (RFC 7591)", "oauth",
                                    loose=(201, 400, 413, 415, 429),
                                    raw_body={JSON: {"type": "object"}}),
    ("GET", "/oauth/authorize"): Op("the authorization page (binds a channel)", "oauth",
                                    loose=_PAGE),
    ("POST", "/oauth/authorize"): Op("the authorization page's form", "oauth", loose=_PAGE,
                                     raw_body={FORM: {"type": "object"}}),
    ("POST", "/oauth/channel/validate"): Op("the authorization page's live channel check",
                                            "oauth", loose=(200, 400, 403, 413, 415, 429),
                                            raw_body={JSON: {"type": "object"}}),
    ("GET", "/mcp/bind/session"): Op("bind a channel to an MCP session (page)", "mcp",
                                     loose=_PAGE),
    ("POST", "/mcp/bind/session"): Op("bind a channel to an MCP session (form)", "mcp",
                                      loose=_PAGE, raw_body={FORM: {"type": "object"}}),
    ("GET", "/mcp/revoke/session"): Op("revoke an MCP session's binding (page)", "mcp",
                                       loose=_PAGE),
    ("POST", "/mcp/revoke/session"): Op("revoke an MCP session's binding (form)", "mcp",
                                        loose=_PAGE, raw_body={FORM: {"type": "object"}}),
    # admin (the ``admin`` scope): API keys and the audit log
    ("POST", "/admin/keys"): Op(
        "create an API key (the key is in this answer only)", "admin", body=ADM.KeyCreateIn,
        data=ADM.KeyCreatedOut, status=201,
        codes=(C.INVALID_KEY_NAME.code, C.INVALID_SCOPE.code, C.INVALID_KEY_LIMIT.code,
               C.INVALID_ARGUMENTS.code, C.INVALID_CHANNEL_ID.code,
               C.CHANNEL_ID_REQUIRED.code)),
    ("GET", "/admin/keys"): Op("the API keys (never their secrets)", "admin",
                               query=KeyListQuery, data=ADM.KeyListOut),
    ("DELETE", "/admin/keys/{key_id}"): Op("revoke an API key (at once, in every process)",
                                           "admin", data=KeyOut, codes=(C.KEY_NOT_FOUND.code,)),
    ("GET", "/admin/audit"): Op("the audit log of admin actions, newest first", "admin",
                                query=AuditQuery, data=ADM.AuditOut),
    ("*", "/mcp"): Op("the MCP server (Streamable HTTP: POST JSON-RPC, GET a stream, DELETE "
                      "a session)", "mcp",
                      loose=(200, 202, 400, 401, 403, 404, 405, 406, 413, 415, 429),
                      raw_body={JSON: {"type": ["object", "array"]}}),
})
