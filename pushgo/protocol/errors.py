"""The registry of error codes: every ``error_code`` the gateway can put on the wire, each
declared once with its HTTP status, its category and whether a retry can succeed.

Two tables. ``REGISTRY`` holds the gateway's own codes (the API envelope's ``error_code``, MCP
tool errors, bulk result lines, the OAuth pages' live check); ``OAUTH_REGISTRY`` holds the
RFC 6749 / RFC 6750 ``error`` values of OAuth responses and Bearer challenges, which share some
spellings (``invalid_request``) with the first table but not their meaning.

The category is the ``problem.category`` of the API envelope, so it follows the status:
``validation`` (400, 405, 413, 415), ``auth`` (401), ``permission`` (403), ``not_found`` (404),
``conflict`` (409), ``rate_limit`` (429), ``internal`` (500), ``upstream`` (502) and
``too_busy`` (503). 429 and every 5xx are retryable.

Pure: no imports from pushgo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

VALIDATION: Final = "validation"
AUTH: Final = "auth"
PERMISSION: Final = "permission"
NOT_FOUND_: Final = "not_found"
CONFLICT_: Final = "conflict"
RATE_LIMIT: Final = "rate_limit"
INTERNAL: Final = "internal"
UPSTREAM: Final = "upstream"
TOO_BUSY: Final = "too_busy"

_CATEGORY_OF_STATUS = {400: VALIDATION, 401: AUTH, 403: PERMISSION, 404: NOT_FOUND_,
                       405: VALIDATION, 409: CONFLICT_, 413: VALIDATION, 429: RATE_LIMIT,
                       502: UPSTREAM, 503: TOO_BUSY}


def category_of(status: int) -> str:
    """The category an HTTP status falls in (for a status that no code declares)."""
    return _CATEGORY_OF_STATUS.get(status, INTERNAL if status >= 500 else VALIDATION)


def retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One error code: the wire string, its HTTP status, category and retryability."""

    code: str
    status: int
    category: str
    retryable: bool


REGISTRY: dict[str, ErrorCode] = {}
OAUTH_REGISTRY: dict[str, ErrorCode] = {}


def _declare(table: dict[str, ErrorCode], code: str, status: int) -> ErrorCode:
    if code in table:
        raise ValueError(f"error code {code!r} declared twice")
    entry = ErrorCode(code, status, category_of(status), retryable_status(status))
    table[code] = entry
    return entry


def _api(code: str, status: int = 400) -> ErrorCode:
    return _declare(REGISTRY, code, status)


def _oauth(code: str, status: int = 400) -> ErrorCode:
    return _declare(OAUTH_REGISTRY, code, status)


def by_code(code: str) -> ErrorCode:
    """The registered gateway code spelled ``code``; KeyError if there is none."""
    return REGISTRY[code]


def by_oauth_code(code: str) -> ErrorCode:
    return OAUTH_REGISTRY[code]


# --------------------------------------------------------------------------- request shape (400)

INVALID_REQUEST = _api("invalid_request")
INVALID_QUERY = _api("invalid_query")
INVALID_ARGUMENTS = _api("invalid_arguments")
INVALID_ACTION = _api("invalid_action")
INVALID_JSON_SYNTAX = _api("invalid_json_syntax")
INVALID_JSON_DATA = _api("invalid_json_data")
#: A JSON document nested deeper than pushgo.protocol.jsondepth.MAX_DEPTH.
JSON_TOO_DEEP = _api("json_too_deep")
MISSING_JSON_CONTENT_TYPE = _api("missing_json_content_type")
LINE_TOO_LONG = _api("line_too_long")
#: A /private/ws upgrade that does not offer the pushgo-private.v1 subprotocol.
MISSING_WEBSOCKET_SUBPROTOCOL = _api("missing_websocket_subprotocol")
INVALID_OPERATION_TYPE = _api("invalid_operation_type")
INVALID_ROUTE = _api("invalid_route")
TOKENS_REQUIRED = _api("tokens_required")
TOO_MANY_TOKENS = _api("too_many_tokens")
PROVIDER_NOT_CONFIGURED = _api("provider_not_configured")
OAUTH_REQUIRED = _api("oauth_required")
PASSWORD_FORBIDDEN_IN_OAUTH_MODE = _api("password_forbidden_in_oauth_mode")
INVALID_REDIRECT_URI = _api("invalid_redirect_uri")

# --------------------------------------------------------------------------- field rules (400)

CHANNEL_ID_REQUIRED = _api("channel_id_required")
INVALID_CHANNEL_ID = _api("invalid_channel_id")
INVALID_CHANNEL_NAME = _api("invalid_channel_name")
INVALID_CHANNEL_TYPE = _api("invalid_channel_type")
CHANNEL_BINDING_INVALID = _api("channel_binding_invalid")
DEVICE_KEY_REQUIRED = _api("device_key_required")
INVALID_DEVICE_KEY = _api("invalid_device_key")
DELIVERY_ID_REQUIRED = _api("delivery_id_required")
#: /v2/messages/ack: delivery_ids empty or more than 200 distinct ids.
INVALID_DELIVERY_IDS = _api("invalid_delivery_ids")
PASSWORD_REQUIRED = _api("password_required")
INVALID_PASSWORD = _api("invalid_password")
INVALID_PLATFORM = _api("invalid_platform")
INVALID_PROVIDER_TOKEN = _api("invalid_provider_token")
PROVIDER_TOKEN_REQUIRED = _api("provider_token_required")
PROVIDER_TOKEN_MISSING = _api("provider_token_missing")
PROVIDER_TOKEN_FORBIDDEN_FOR_PRIVATE_CHANNEL = _api("provider_token_forbidden_for_private_channel")
OP_ID_REQUIRED = _api("op_id_required")
INVALID_OP_ID = _api("invalid_op_id")
#: ``repeat`` out of its bounds (every_s 30–86400, max 1–100), or on a route that cannot
#: repeat (a direct send).
INVALID_REPEAT = _api("invalid_repeat")
THING_ID_REQUIRED = _api("thing_id_required")
INVALID_THING_ID = _api("invalid_thing_id")
#: /thing/{thing_id}/event/close with a body thing_id naming another thing.
THING_ID_MISMATCH = _api("thing_id_mismatch")
EVENT_ID_REQUIRED = _api("event_id_required")
INVALID_EVENT_ID = _api("invalid_event_id")
TITLE_REQUIRED = _api("title_required")
INVALID_STATUS = _api("invalid_status")
INVALID_MESSAGE = _api("invalid_message")
INVALID_SEVERITY = _api("invalid_severity")
INVALID_LOCATION = _api("invalid_location")
IMAGES_FORMAT_INVALID = _api("images_format_invalid")
INVALID_URL = _api("invalid_url")
TAGS_FORMAT_INVALID = _api("tags_format_invalid")
METADATA_OBJECT_REQUIRED = _api("metadata_object_required")
METADATA_KEY_REQUIRED = _api("metadata_key_required")
METADATA_KEY_DUPLICATE = _api("metadata_key_duplicate")
METADATA_KEY_TOO_LONG = _api("metadata_key_too_long")
METADATA_VALUE_REQUIRED = _api("metadata_value_required")
METADATA_VALUE_SCALAR_REQUIRED = _api("metadata_value_scalar_required")
METADATA_VALUE_TOO_LONG = _api("metadata_value_too_long")
EXTENSION_OBJECT_KEY_REQUIRED = _api("extension_object_key_required")
EXTENSION_OBJECT_ARRAYS_UNSUPPORTED = _api("extension_object_arrays_unsupported")
EXTENSION_OBJECT_NESTED_OBJECT_UNSUPPORTED = _api("extension_object_nested_object_unsupported")
EXTERNAL_IDS_KEY_INVALID = _api("external_ids_key_invalid")
EXTERNAL_IDS_VALUE_INVALID = _api("external_ids_value_invalid")
EXTERNAL_IDS_VALUE_REQUIRED = _api("external_ids_value_required")
EXTERNAL_IDS_VALUE_TOO_LONG = _api("external_ids_value_too_long")
MANUFACTURER_ATTR_INVALID = _api("manufacturer_attr_invalid")
MANUFACTURER_ATTR_KEY_REQUIRED = _api("manufacturer_attr_key_required")
MANUFACTURER_ATTR_KEY_TOO_LONG = _api("manufacturer_attr_key_too_long")

# timestamps: ``invalid_<field>`` always, ``<field>_required`` where the field is required
INVALID_OCCURRED_AT = _api("invalid_occurred_at")
INVALID_TTL = _api("invalid_ttl")
INVALID_STARTED_AT = _api("invalid_started_at")
INVALID_ENDED_AT = _api("invalid_ended_at")
INVALID_EVENT_TIME = _api("invalid_event_time")
EVENT_TIME_REQUIRED = _api("event_time_required")
INVALID_OBSERVED_AT = _api("invalid_observed_at")
OBSERVED_AT_REQUIRED = _api("observed_at_required")
INVALID_CREATED_AT = _api("invalid_created_at")
INVALID_DELETED_AT = _api("invalid_deleted_at")
INVALID_DELIVER_AT = _api("invalid_deliver_at")
#: A scheduled send's ``deliver_at``: not in the past, at most 30 days ahead; its ttl after it.
DELIVER_AT_IN_PAST = _api("deliver_at_in_past")
DELIVER_AT_TOO_FAR = _api("deliver_at_too_far")
TTL_BEFORE_DELIVER_AT = _api("ttl_before_deliver_at")

# operation rules
OCCURRED_AT_REQUIRED_FOR_THING_SCOPED_MESSAGE = _api(
    "occurred_at_required_for_thing_scoped_message")
ENDED_AT_FORBIDDEN_ON_CREATE = _api("ended_at_forbidden_on_create")
EVENT_TEMPORAL_FIELDS_FORBIDDEN_ON_UPDATE = _api("event_temporal_fields_forbidden_on_update")
STARTED_AT_FORBIDDEN_ON_CLOSE = _api("started_at_forbidden_on_close")
EVENT_CREATE_REQUIRED_FIELDS_MISSING = _api("event_create_required_fields_missing")
EVENT_UPDATE_REQUIRED_FIELDS_MISSING = _api("event_update_required_fields_missing")
#: The compat ingress (ntfy, ServerChan, Bark): a key that is not ``<channel_id>:<password>``,
#: and a thing_id given to the ntfy routes.
COMPAT_KEY_INVALID = _api("compat_key_invalid")
THING_ID_UNSUPPORTED_ON_NTFY_ENDPOINT = _api("thing_id_unsupported_on_ntfy_endpoint")

# --------------------------------------------------------------------------- state rules (400)

DEVICE_KEY_NOT_FOUND = _api("device_key_not_found")
PLATFORM_MISMATCH = _api("platform_mismatch")
CHANNEL_TYPE_MISMATCH = _api("channel_type_mismatch")
APNS_CHANNEL_REQUIRES_APPLE_PLATFORM = _api("apns_channel_requires_apple_platform")
FCM_CHANNEL_REQUIRES_ANDROID_PLATFORM = _api("fcm_channel_requires_android_platform")
WNS_CHANNEL_REQUIRES_WINDOWS_PLATFORM = _api("wns_channel_requires_windows_platform")
WEBPUSH_CHANNEL_REQUIRES_WEB_PLATFORM = _api("webpush_channel_requires_web_platform")
#: A Web Push subscription (the webpush route's provider token) that cannot be used: not the
#: JSON of a PushSubscription, an endpoint that is not a public https URL, keys of the wrong
#: shape.
INVALID_WEBPUSH_SUBSCRIPTION = _api("invalid_webpush_subscription")
CHANNEL_SUBSCRIBER_LIMIT_EXCEEDED = _api("channel_subscriber_limit_exceeded")
CHANNELS_LIMIT_EXCEEDED = _api("channels_limit_exceeded")
#: Live Activity tokens (``/device/liveactivity/*``) belong to iOS devices on the APNs route.
LIVE_ACTIVITY_REQUIRES_IOS_APNS = _api("live_activity_requires_ios_apns")
#: ``/v1/activity/*``: an ``activity_key`` that names no event (the app's are ``event:<id>``).
INVALID_ACTIVITY_KEY = _api("invalid_activity_key")
#: ``/v1/activity/*``: a ``schema_version`` of the app's bodies this gateway does not speak.
UNSUPPORTED_SCHEMA_VERSION = _api("unsupported_schema_version")
#: ``/v1/activity/register``: the event has as many app activities as the channel may have
#: subscribers (``PUSHGO_CHANNEL_SUBSCRIBER_LIMIT``).
ACTIVITY_LIMIT_EXCEEDED = _api("activity_limit_exceeded")

#: ``pushgo key create`` / ``POST /admin/keys``: the key's name is empty or too long.
INVALID_KEY_NAME = _api("invalid_key_name")
#: A scope that is not one of send, direct, status, devices, metrics, admin (or none given).
INVALID_SCOPE = _api("invalid_scope")
#: A key's weight (1-1000), requests per second or notifications per day out of range.
INVALID_KEY_LIMIT = _api("invalid_key_limit")

# --------------------------------------------------------------------------- other 4xx

AUTHENTICATION_FAILED = _api("authentication_failed", 401)
PASSWORD_MISMATCH = _api("password_mismatch", 403)
GATEWAY_TOKEN_REQUIRED = _api("gateway_token_required", 403)
CHANNEL_NOT_BOUND = _api("channel_not_bound", 403)
#: An API key without the scope the route needs (send, direct, status, devices, metrics,
#: admin).
SCOPE_REQUIRED = _api("scope_required", 403)
#: An API key limited to listed channels, used on another channel.
CHANNEL_NOT_ALLOWED = _api("channel_not_allowed", 403)
#: An API key limited to listed apps, used for another app's devices.
APP_NOT_ALLOWED = _api("app_not_allowed", 403)
NOT_FOUND = _api("not_found", 404)
#: No live API key of that id (``pushgo key revoke``, ``DELETE /admin/keys/{key_id}``).
KEY_NOT_FOUND = _api("key_not_found", 404)
#: No app of that name.
APP_NOT_FOUND = _api("app_not_found", 404)
#: An app definition that cannot be used (``POST /admin/apps``): its message names the field.
INVALID_APP = _api("invalid_app")
#: ``POST /admin/apps``: the name is taken (by a stored app or one of PUSHGO_APPS_FILE), or
#: ``DELETE /admin/apps/{name}`` of an app that only its file can remove.
APP_EXISTS = _api("app_exists", 409)
ROUTE_NOT_FOUND = _api("route_not_found", 404)
CHANNEL_NOT_FOUND = _api("channel_not_found", 404)
OPERATION_NOT_FOUND = _api("operation_not_found", 404)
#: An activity token registered for an event the channel does not have.
EVENT_NOT_FOUND = _api("event_not_found", 404)
#: No repeating send of this op_id (``GET /receipts/{op_id}``), or none delivered to the
#: device that acknowledges it (``POST /receipts/ack``).
RECEIPT_NOT_FOUND = _api("receipt_not_found", 404)
BIND_SESSION_NOT_FOUND = _api("bind_session_not_found", 404)
METHOD_NOT_ALLOWED = _api("method_not_allowed", 405)
#: A request body that did not arrive in time (PUSHGO_HTTP_BODY_TIMEOUT_S); the connection closes.
REQUEST_TIMEOUT = _api("request_timeout", 408)
CONFLICT = _api("conflict", 409)
OP_ID_CONFLICT = _api("op_id_conflict", 409)
STORE_CONFLICT = _api("store_conflict", 409)
EVENT_CLOSED = _api("event_closed", 409)
#: ``/v1/activity/register`` without ``channel_id`` for an event id open in several channels.
ACTIVITY_EVENT_AMBIGUOUS = _api("activity_event_ambiguous", 409)
THING_DELETED = _api("thing_deleted", 409)
PAYLOAD_TOO_LARGE = _api("payload_too_large", 413)
UNSUPPORTED_MEDIA_TYPE = _api("unsupported_media_type", 415)
#: Too many failed channel-password checks from one client address (answered with
#: ``Retry-After``, before any password hashing).
RATE_LIMITED = _api("rate_limited", 429)
#: An API key's (or a channel's) configured request rate or daily notification quota is
#: used up; answered with ``Retry-After`` and the ``RateLimit-*`` headers.
QUOTA_EXCEEDED = _api("quota_exceeded", 429)
#: An MCP session (or subscriptions/listen stream) already watches as many resources as it
#: may (pushgo.mcp.watch.MAX_SUBSCRIPTIONS); answered as a JSON-RPC error carrying it.
SUBSCRIPTION_LIMIT_EXCEEDED = _api("subscription_limit_exceeded", 429)
#: Starlette's own HTTPException passed through; the status is the exception's (see
#: GatewayError's ``status`` override), 400 is only the registered default.
HTTP_ERROR = _api("http_error")

# --------------------------------------------------------------------------- the OAuth pages'
# live channel check (``POST /oauth/channel/validate``): results of a check, answered 200
# with ``valid: false`` (but for ``too_many_attempts``, 429)

INCOMPLETE = _api("incomplete")
CHANNEL_PASSWORD_MISMATCH = _api("channel_password_mismatch", 403)
TOO_MANY_ATTEMPTS = _api("too_many_attempts", 429)

# --------------------------------------------------------------------------- 5xx

INTERNAL_ERROR = _api("internal_error", 500)
SERVER_BUSY = _api("server_busy", 503)
STORE_UNAVAILABLE = _api("store_unavailable", 503)
NOT_READY = _api("not_ready", 503)
#: /private/readyz with no warp-link transport serving (as PushGo Gateway v1.2.9).
PRIVATE_CHANNEL_RUNTIME_UNAVAILABLE = _api("private_channel_runtime_unavailable", 503)
#: /private/ws while PUSHGO_PRIVATE_TRANSPORTS leaves WSS out.
PRIVATE_WSS_TRANSPORT_DISABLED = _api("private_wss_transport_disabled", 503)

# --------------------------------------------------------------------------- OAuth (RFC 6749 §5.2,
# §4.1.2.1, RFC 6750 §3.1, RFC 7591 §3.2.2, RFC 8707 §2); the status is the usual one, a
# response may carry another (invalid_client: 401 with a challenge, a body over the limit: 413)

OAUTH_INVALID_REQUEST = _oauth("invalid_request")
OAUTH_INVALID_CLIENT = _oauth("invalid_client")
OAUTH_INVALID_GRANT = _oauth("invalid_grant")
OAUTH_UNSUPPORTED_GRANT_TYPE = _oauth("unsupported_grant_type")
OAUTH_UNSUPPORTED_RESPONSE_TYPE = _oauth("unsupported_response_type")
OAUTH_INVALID_SCOPE = _oauth("invalid_scope")
OAUTH_INVALID_TARGET = _oauth("invalid_target")
OAUTH_ACCESS_DENIED = _oauth("access_denied", 403)
OAUTH_INVALID_CLIENT_METADATA = _oauth("invalid_client_metadata")
OAUTH_INVALID_REDIRECT_URI = _oauth("invalid_redirect_uri")
OAUTH_TOO_MANY_REQUESTS = _oauth("too_many_requests", 429)
OAUTH_INVALID_TOKEN = _oauth("invalid_token", 401)
OAUTH_INSUFFICIENT_SCOPE = _oauth("insufficient_scope", 403)
