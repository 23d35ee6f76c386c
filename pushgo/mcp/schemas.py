"""JSON Schemas (2020-12) of the MCP tools: inputs with the same fields as the HTTP API
(the request Structs of pushgo.protocol.operations) and outputs as the API answers.

Pure data: a test checks that every send tool's properties are exactly its Struct's fields,
so the schemas cannot drift from what the tools accept.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

_TS = {"type": ["number", "string"],
       "description": "Unix time in seconds or milliseconds (|v| < 1e12 means seconds)"}


def _str(desc: str, **extra: Any) -> Schema:
    return {"type": "string", "description": desc, **extra}


def _ts(desc: str) -> Schema:
    return {**_TS, "description": f"{desc}; {_TS['description']}"}


_SEVERITY = {"type": "string", "enum": ["critical", "high", "normal", "low"]}
_IMAGES = {"type": "array", "maxItems": 32, "items": {"type": "string", "maxLength": 2048},
           "description": "image URLs (≤ 32)"}
_TAGS = {"type": "array", "maxItems": 32, "items": {"type": "string", "maxLength": 64},
         "description": "tags (≤ 32, each ≤ 64 bytes)"}
_METADATA = {"type": "object", "description": "flat map of scalars: key ≤ 64 bytes, value ≤ 512 "
             "bytes", "additionalProperties": {"type": ["string", "number", "boolean"]}}
_ATTRS = {"type": "object", "description": "attribute patch: a null value deletes the key; "
          "values are scalars or one-level objects of scalars",
          "additionalProperties": {"type": ["string", "number", "boolean", "null", "object"]}}

_REPEAT = {"type": "object", "additionalProperties": False, "required": ["every_s", "max"],
           "description": "send again every every_s seconds until a device acknowledges it "
                          "(or the event closes, max sends were made, the ttl ends); read "
                          "who acknowledged at pushgo://receipts/{op_id}",
           "properties": {
               "every_s": {"type": "integer", "minimum": 30, "maximum": 86400,
                           "description": "seconds between sends (30–86400)"},
               "max": {"type": "integer", "minimum": 1, "maximum": 100,
                       "description": "sends in all, the first included (1–100)"}}}

COMMON: dict[str, Schema] = {
    "channel_id": _str("the channel id (26 characters, Crockford base32)"),
    "password": _str("the channel password (8–128 bytes); required in legacy mode"),
    "op_id": _str("idempotency key (1–128 of A-Z a-z 0-9 _ : -): the same op_id with the same "
                  "payload returns the first answer and sends nothing new", maxLength=128),
    "ciphertext": _str("opaque end-to-end encrypted payload, passed through unchanged"),
    "metadata": _METADATA,
    "deliver_at": _ts("a scheduled send: when it goes out, in the future and at most 30 days "
                      "ahead (its TTL counts from then); nothing is delivered before, and "
                      "pushgo.operation.cancel stops it"),
}

MESSAGE: dict[str, Schema] = {
    **COMMON,
    "title": _str("notification title (required, not blank)"),
    "body": _str("notification body text"),
    "thing_id": _str("scope the message to a Thing (needs occurred_at)", maxLength=64),
    "occurred_at": _ts("when it happened"),
    "severity": {**_SEVERITY, "description": "delivery priority (default normal)"},
    "ttl": _ts("absolute expiry, at most 30 days after sending"),
    "url": _str("link opened from the notification"),
    "images": _IMAGES,
    "tags": _TAGS,
    "repeat": _REPEAT,
}

_EVENT: dict[str, Schema] = {
    **COMMON,
    "thing_id": _str("the Thing this event belongs to", maxLength=64),
    "event_time": _ts("when this change of the event happened (required)"),
    "title": _str("event title (required on create)"),
    "description": _str("longer description"),
    "status": _str("short status text (≤ 24 characters)", maxLength=24),
    "message": _str("status message (≤ 512 characters)", maxLength=512),
    "severity": {**_SEVERITY, "description": "event severity"},
    "tags": _TAGS,
    "images": _IMAGES,
    "started_at": _ts("when the event started (create only; default event_time)"),
    "ended_at": _ts("when the event ended (close only; default event_time)"),
    "attrs": _ATTRS,
}
_EVENT_ID = _str("the event id returned by pushgo.event.create", maxLength=64)

EVENT: dict[str, dict[str, Schema]] = {
    "create": {**{k: v for k, v in _EVENT.items() if k != "ended_at"}, "repeat": _REPEAT},
    "update": {**{k: v for k, v in _EVENT.items() if k not in ("started_at", "ended_at")},
               "event_id": _EVENT_ID, "repeat": _REPEAT},
    "close": {**{k: v for k, v in _EVENT.items() if k != "started_at"}, "event_id": _EVENT_ID},
}
EVENT_REQUIRED = {
    "create": ["channel_id", "event_time", "title", "status", "message", "severity"],
    "update": ["channel_id", "event_id", "event_time", "status", "message", "severity"],
    "close": ["channel_id", "event_id", "event_time", "status", "message", "severity"],
}

_THING: dict[str, Schema] = {
    **COMMON,
    "observed_at": _ts("when this state of the thing was observed (required)"),
    "title": _str("thing title"),
    "description": _str("longer description"),
    "tags": _TAGS,
    "primary_image": _str("main image URL", maxLength=2048),
    "images": _IMAGES,
    "external_ids": {"type": "object", "description": "external id patch: key → string, or "
                     "null to remove", "additionalProperties": {"type": ["string", "null"]}},
    "location_type": {"type": "string", "enum": ["physical", "geo", "cloud", "datacenter",
                                                 "logical"],
                      "description": "kind of location (with location_value)"},
    "location_value": _str("location: text, 'lat,lng', 'provider:region[:zone]', "
                           "'site[:room[:rack]]' or 'a/b/c' by location_type"),
    "attrs": _ATTRS,
}
_THING_ID = _str("the thing id returned by pushgo.thing.create", maxLength=64)
THING: dict[str, dict[str, Schema]] = {
    "create": {**_THING, "created_at": _ts("creation time (default observed_at)")},
    "update": {**_THING, "thing_id": _THING_ID},
    "archive": {**_THING, "thing_id": _THING_ID},
    "delete": {**_THING, "thing_id": _THING_ID,
               "deleted_at": _ts("deletion time (default observed_at)")},
}
THING_REQUIRED = {
    "create": ["channel_id", "observed_at"],
    "update": ["channel_id", "thing_id", "observed_at"],
    "archive": ["channel_id", "thing_id", "observed_at"],
    "delete": ["channel_id", "thing_id", "observed_at"],
}


def input_schema(props: dict[str, Schema], required: list[str], *, password: bool) -> Schema:
    """An object schema refusing unknown members. ``password``: legacy mode (required);
    without it (OAuth mode) the member is not offered at all."""
    props = copy.deepcopy(props)
    req = list(required)
    if password:
        if "password" in props:
            req.insert(1, "password")
    else:
        props.pop("password", None)
    return {"type": "object", "properties": props, "required": req,
            "additionalProperties": False}


_COUNTS: Schema = {"type": "object", "additionalProperties": {"type": "integer"}}
DELIVERY: Schema = {
    "type": "object", "description": "the send's delivery status when the tool answered",
    "properties": {
        "devices": {"type": "integer", "description": "deliveries: one per subscribed device"},
        "routes": {"type": "object", "additionalProperties": _COUNTS,
                   "description": "per route (apns, fcm, private…): deliveries by state"},
        "states": _COUNTS,
        "failures": {**_COUNTS, "description": "failed deliveries by reason"},
        "pending": {"type": "array", "description": "what still waits, and why", "items": {
            "type": "object",
            "properties": {
                "route": {"type": "string"}, "deliveries": {"type": "integer"},
                "reason": {"type": "string", "enum": ["provider_unavailable", "retrying",
                                                     "device_offline", "sending"]},
                "last_error": {"type": "string"}, "since": {"type": "integer"},
                "breaker": {"type": "string"}},
            "required": ["route", "deliveries", "reason"]}},
        "done": {"type": "boolean", "description": "no provider delivery is left queued "
                 "or scheduled"},
        "deliver_at": {"type": "integer", "description": "a scheduled send: when its "
                       "deliveries go out (epoch milliseconds)"},
    },
    "required": ["devices", "routes", "states", "failures", "pending", "done"],
}


def send_output(id_field: str) -> Schema:
    props: dict[str, Schema] = {
        "channel_id": {"type": "string"},
        "op_id": {"type": "string", "description": "the idempotency key used (given or made)"},
        "accepted": {"type": "boolean", "description": "stored in the outbox; delivery to "
                     "each device is asynchronous"},
        id_field: {"type": "string"},
        "deliver_at": {"type": "integer", "description": "a scheduled send: when it goes out "
                       "(epoch milliseconds)"},
    }
    if id_field != "thing_id":
        props["thing_id"] = {"type": "string"}
    props["summary"] = {"type": "string", "description": "what happened, in words: devices "
                        "reached on which routes, what failed and what is still pending and why"}
    props["delivery"] = DELIVERY
    return {"type": "object", "properties": props,
            "required": ["channel_id", "op_id", "accepted", id_field]}


_CHANNEL_ID = _str("the channel id")
LIST_OUT_CHANNELS: Schema = {"type": "array", "items": {
    "type": "object",
    "properties": {"channel_id": {"type": "string"}, "channel_name": {"type": "string"},
                   "granted_at": {"type": "integer"}, "status": {"type": "string"}},
    "required": ["channel_id", "channel_name", "granted_at", "status"]}}

BIND_START_IN = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "requested_channel_id": _str("pre-fill this channel on the bind page"),
        "redirect_uri": _str("where the browser goes after completing the page"),
        "action": {"type": "string", "enum": ["bind", "revoke"], "default": "bind"},
        "lang": {"type": "string", "enum": ["en", "zh-CN"], "description": "page language"},
    },
}
BIND_START_OUT = {
    "type": "object",
    "properties": {"bind_session_id": {"type": "string"},
                   "bind_url": {"type": "string", "description": "open in a browser"},
                   "expires_at": {"type": "integer", "description": "epoch milliseconds"},
                   "poll_after_ms": {"type": "integer"},
                   # After a URL-mode elicitation (the client opened bind_url itself):
                   "elicitation": {"type": "string", "description": "the user's answer to "
                                   "opening the page",
                                   "enum": ["accept", "decline", "cancel", "unanswered"]},
                   "status": {"type": "string", "enum": ["pending", "completed", "expired"]},
                   "action": {"type": "string", "enum": ["bind", "revoke"]},
                   "channel_id": {"type": "string"}, "channel_name": {"type": "string"},
                   "channels": {**LIST_OUT_CHANNELS, "description": "the channels bound "
                                "now, when the session completed"}},
    "required": ["bind_session_id", "bind_url", "expires_at", "poll_after_ms"],
}
BIND_STATUS_IN = {
    "type": "object", "additionalProperties": False,
    "properties": {"bind_session_id": _str("from pushgo.channel.bind.start")},
    "required": ["bind_session_id"],
}
BIND_STATUS_OUT = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["pending", "completed", "expired"]},
                   "channel_id": {"type": "string"}, "channel_name": {"type": "string"},
                   "action": {"type": "string", "enum": ["bind", "revoke"]}},
    "required": ["status", "action"],
}
LIST_IN: Schema = {"type": "object", "additionalProperties": False, "properties": {}}
LIST_OUT = {
    "type": "object",
    "properties": {"channels": LIST_OUT_CHANNELS},
    "required": ["channels"],
}
UNBIND_IN = {"type": "object", "additionalProperties": False,
             "properties": {"channel_id": _CHANNEL_ID}, "required": ["channel_id"]}
UNBIND_OUT = {"type": "object",
              "properties": {"removed": {"type": "boolean"}, "channel_id": {"type": "string"}},
              "required": ["removed", "channel_id"]}

def cancel_input(*, password: bool) -> Schema:
    """``pushgo.operation.cancel``: the op_id and its channel (and, in legacy mode, the
    channel's password)."""
    props: dict[str, Schema] = {
        "op_id": _str("the op_id a send tool answered", maxLength=128),
        "channel_id": _str("the channel the operation was sent to"),
    }
    required = ["op_id", "channel_id"]
    if password:
        props["password"] = COMMON["password"]
        required.append("password")
    return {"type": "object", "additionalProperties": False, "properties": props,
            "required": required}


CANCEL_OUT: Schema = {
    "type": "object",
    "properties": {
        "op_id": {"type": "string"},
        "outcome": {"type": "string", "enum": ["cancelled", "already_cancelled", "already_done"],
                    "description": "cancelled: deliveries stopped now; already_cancelled: a "
                    "repeated cancel; already_done: everything had gone out (or is in a "
                    "provider's hands), nothing changed"},
        "cancelled": {"type": "integer", "description": "deliveries cancelled by this call"},
        "total": {"type": "integer"},
        "states": {**_COUNTS, "description": "the operation's deliveries by state, afterwards"},
        "repeat_stopped": {"type": "boolean", "description": "a send repeated until "
                           "acknowledged makes no more rounds"},
    },
    "required": ["op_id", "outcome", "cancelled", "total", "states", "repeat_stopped"],
}

#: What an ``isError`` result of any tool carries as ``structuredContent``.
ERROR_PROPERTIES: dict[str, Schema] = {
    "error_code": {"type": "string", "description": "machine-readable reason (isError results)"},
    "error": {"type": "string", "description": "what went wrong (isError results)"},
    "status": {"type": "integer", "description": "the HTTP API's status for the same failure"},
}


def admit_errors(schema: Schema | None) -> Schema | None:
    """A tool's output schema that also admits the structured content of its ``isError``
    results: clients validate every ``structuredContent`` against the ``outputSchema``, and
    pushgo's failures carry ``{error_code, error, status}``. The properties stay at the root
    (both shapes' fields; one both name takes either type), the ``required`` lists become
    an ``anyOf``."""
    if schema is None:
        return None
    out = copy.deepcopy(schema)
    required = out.pop("required", [])
    props = out.setdefault("properties", {})
    for name, prop in ERROR_PROPERTIES.items():
        props[name] = {"anyOf": [props[name], prop]} if name in props else prop
    out["anyOf"] = [{"required": required}, {"required": list(ERROR_PROPERTIES)}]
    return out
