"""Live Activities from events: the APNs ``liveactivity`` payloads (push-to-start, update, end)
and the FCM equivalent (one ongoing notification per event, updated in place, removed on close).

An event's operation maps onto the activity's life: ``event.create`` → ``start`` (sent to the
device's push-to-start token), ``event.update`` → ``update`` and ``event.close`` → ``end``
(sent to the activity's own update token). The attributes and content state decode into the
PushGo iOS app's ``PushGoEventActivityAttributes``:

    attributes     {"eventID": <event_id>, "channelID": <channel_id>}
    content-state  {"title", "state" (ONGOING | CLOSED), "severity"?, "status"?, "body"?,
                    "updatedAt" (seconds since 2001-01-01, Foundation's default Date coding)}

``timestamp`` is the operation's time (a late, older push is ignored by the device),
``stale-date`` the operation's expiry (its TTL) on start and update, ``dismissal-date`` the
close time plus ``DISMISS_AFTER_S`` on end. Texts are shortened until the payload fits
Apple's 4096 bytes. Pure: every time comes from the operation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import msgspec

#: ``apns-push-type`` and the topic suffix Apple requires with it.
PUSH_TYPE = "liveactivity"
TOPIC_SUFFIX = ".push-type.liveactivity"
#: The ActivityAttributes type a push-to-start names (the PushGo iOS app's).
ATTRIBUTES_TYPE = "PushGoEventActivityAttributes"
#: Apple's limit for a Live Activity push payload.
PAYLOAD_LIMIT = 4096
#: An ended activity stays on the Lock Screen this long with its final state.
DISMISS_AFTER_S = 15 * 60
#: Seconds between 1970-01-01 and 2001-01-01 (Foundation's reference date).
APPLE_EPOCH_S = 978_307_200
#: Severities whose updates also alert (light the screen), as a start always does.
ALERTING = ("critical", "high")

#: event.<action> → the ActivityKit ``event``
EVENTS = {"create": "start", "update": "update", "close": "end"}


def live_event(route: str) -> str | None:
    """The ActivityKit event of an operation route (``event.create`` → ``start``), or None
    when the route is not an event's."""
    kind, _, action = route.partition(".")
    return EVENTS.get(action) if kind == "event" else None


@dataclass(frozen=True, slots=True)
class LiveActivityPayload:
    """A finished Live Activity payload: the same bytes for every device (nothing per
    delivery: ActivityKit reads only ``aps``). Shaped like ``apns.PayloadTemplate`` for the
    sender."""

    body: bytes
    event: str
    wakeup: bool = False

    def render(self, delivery_id: str, device_key: str | None = None) -> bytes:
        return self.body

    @property
    def size(self) -> int:
        return len(self.body)


def _aps(event: str, data: dict[str, str], title: str, body: str) -> dict[str, object]:
    sent_ms = int(data.get("sent_at") or 0)
    timestamp = sent_ms // 1000
    state: dict[str, object] = {"title": title, "state": data.get("event_state", "ONGOING")}
    for key in ("severity", "status"):
        if data.get(key):
            state[key] = data[key]
    if body:
        state["body"] = body
    state["updatedAt"] = round(sent_ms / 1000 - APPLE_EPOCH_S, 3)
    aps: dict[str, object] = {"timestamp": timestamp, "event": event, "content-state": state}
    if event == "start":
        aps["attributes-type"] = ATTRIBUTES_TYPE
        aps["attributes"] = {"eventID": data.get("event_id", ""),
                             "channelID": data.get("channel_id", "")}
    if event == "start" or (event == "update" and data.get("severity") in ALERTING):
        aps["alert"] = {"title": title, "body": body}
    return aps


def build_apns(data: dict[str, str], route: str, *, title: str, body: str,
               expires_at_ms: int) -> LiveActivityPayload | None:
    """The ``liveactivity`` payload of an event operation (its stored payload map, route,
    notification texts and expiry); None when the route is not an event's or even the
    shortest texts do not fit."""
    event = live_event(route)
    if event is None:
        return None
    timestamp = int(data.get("sent_at") or 0) // 1000
    for limit in (None, 1024, 256, 64, 0):
        t = title if limit is None else title[:max(limit, 32)]
        b = body if limit is None else body[:limit]
        aps = _aps(event, data, t, b)
        if event == "end":
            aps["dismissal-date"] = timestamp + DISMISS_AFTER_S
        else:
            aps["stale-date"] = max(expires_at_ms // 1000, timestamp + 1)
        raw = json.dumps({"aps": aps}, separators=(",", ":"), ensure_ascii=False).encode()
        if len(raw) <= PAYLOAD_LIMIT:
            return LiveActivityPayload(raw, event)
    return None


# --------------------------------------------------------------------------- FCM

#: FCM data keys of an event's ongoing notification (the app posts, replaces or cancels the
#: notification tagged ``live_tag``).
FCM_ACTION = "live_activity"
FCM_TAG = "live_tag"
FCM_ONGOING = "live_ongoing"


def fcm_tag(channel_id: str, event_id: str) -> str:
    """The notification tag of an event: one notification per event, replaced in place."""
    return f"pushgo.event.{channel_id}.{event_id}"


def fcm_fields(data: dict[str, str], route: str) -> dict[str, str]:
    """The keys added to an event operation's FCM data message: ``live_activity`` (start,
    update or end), ``live_tag`` (the same for every operation of the event) and
    ``live_ongoing`` ("1" while the event is open, "0" on close: remove the notification).
    Empty for any other operation."""
    event = live_event(route)
    if event is None:
        return {}
    return {FCM_ACTION: event,
            FCM_TAG: fcm_tag(data.get("channel_id", ""), data.get("event_id", "")),
            FCM_ONGOING: "0" if event == "end" else "1"}


# --------------------------------------------------------------------------- the device routes


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class StartTokenIn(_In):
    """``POST /device/liveactivity/start-token``: the device's push-to-start token
    (``Activity<PushGoEventActivityAttributes>.pushToStartTokenUpdates``, hex)."""

    device_key: str
    token: str


class StartTokenDeleteIn(_In):
    """``POST /device/liveactivity/start-token/delete``: events no longer start activities."""

    device_key: str


class ActivityTokenIn(_In):
    """``POST /device/liveactivity/token``: the update token of the activity that shows this
    event (``activity.pushTokenUpdates``, hex)."""

    device_key: str
    channel_id: str
    event_id: str
    token: str


class ActivityTokenDeleteIn(_In):
    """``POST /device/liveactivity/token/delete``: the activity ended on the device."""

    device_key: str
    channel_id: str
    event_id: str


class TokenOut(msgspec.Struct, omit_defaults=True, kw_only=True):
    device_key: str
    #: Whether a token is now registered (false after a delete).
    registered: bool
    channel_id: str | None = None
    event_id: str | None = None


# --------------------------------------------------------------------------- the app's routes

#: ``activity_key`` of an event's activity, as the PushGo iOS app names it: ``event:<event_id>``.
ACTIVITY_KEY_PREFIX = "event:"
#: The ``schema_version`` of the app's registration bodies this gateway speaks.
ACTIVITY_SCHEMA_VERSION = 1


def activity_key(event_id: str) -> str:
    return ACTIVITY_KEY_PREFIX + event_id


def event_of_key(key: str) -> str | None:
    """The event id an ``activity_key`` names (``event:<event_id>``), or None when it names
    no event (the caller answers ``invalid_activity_key``)."""
    prefix, sep, event_id = key.strip().partition(":")
    if not sep or prefix != ACTIVITY_KEY_PREFIX[:-1] or not event_id.strip():
        return None
    return event_id.strip()


class _AppIn(msgspec.Struct, kw_only=True):
    """The PushGo iOS app's own bodies: unknown fields are ignored (a newer app may add one;
    the app never reads an answer beyond its status)."""


class ActivityRegisterIn(_AppIn):
    """``POST /v1/activity/register``: the update token of an activity the app started itself
    from an event's notification (``activity.pushTokenUpdates``, hex). No device key: the
    activity is known by ``activity_key`` (``event:<event_id>``) and, when the app knows it,
    the event's ``channel_id``."""

    activity_key: str
    token: str
    channel_id: str | None = None
    platform: str = "ios"
    schema_version: int = ACTIVITY_SCHEMA_VERSION


class ActivityUnregisterIn(_AppIn):
    """``POST /v1/activity/unregister``: the activity ended on the device. With ``token``,
    that token alone is forgotten; without, every token registered for ``activity_key``."""

    activity_key: str
    token: str | None = None
    platform: str = "ios"
    schema_version: int = ACTIVITY_SCHEMA_VERSION


class ActivityKeyOut(msgspec.Struct, omit_defaults=True, kw_only=True):
    activity_key: str
    #: Whether the token is now registered (false after an unregister).
    registered: bool
    channel_id: str | None = None
    event_id: str | None = None
    #: How many tokens an unregister forgot.
    removed: int | None = None
