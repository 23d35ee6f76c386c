"""Send operations (message, event create/update/close, thing create/update/archive/delete):
their wire request Structs, validation into an :class:`OpSpec`, and the request fingerprint
used for op_id idempotency.

Pure: the caller supplies ids and time when the spec is rendered (see payload.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pushgo.protocol import errors as codes
from pushgo.protocol import fields as field_rules

Ts = int | float | str | None
Meta = dict[str, Any] | None


class _Req(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    channel_id: str
    password: str | None = None
    op_id: str | None = None
    deliver_at: Ts = None  # a scheduled send: nothing goes out before then


class RepeatIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``repeat``: send again every ``every_s`` seconds until a device acknowledges, at most
    ``max`` sends in all (the first one included)."""

    every_s: int
    max: int


#: Bounds of ``repeat``: a round at most every 30 s, at least once a day; 1 to 100 sends.
REPEAT_EVERY_MIN_S = 30
REPEAT_EVERY_MAX_S = 86_400
REPEAT_MAX_SENDS = 100


@dataclass(frozen=True)
class Repeat:
    """A validated ``repeat``."""

    every_s: int
    max: int


def repeat_rule(raw: RepeatIn | None) -> Repeat | None:
    if raw is None:
        return None
    if not REPEAT_EVERY_MIN_S <= raw.every_s <= REPEAT_EVERY_MAX_S:
        raise field_rules.FieldError(
            codes.INVALID_REPEAT,
            f"repeat.every_s must be {REPEAT_EVERY_MIN_S} to {REPEAT_EVERY_MAX_S} seconds")
    if not 1 <= raw.max <= REPEAT_MAX_SENDS:
        raise field_rules.FieldError(codes.INVALID_REPEAT,
                                     f"repeat.max must be 1 to {REPEAT_MAX_SENDS} sends")
    return Repeat(raw.every_s, raw.max)


class MessageIn(_Req, kw_only=True):
    title: str
    body: str | None = None
    thing_id: str | None = None
    occurred_at: Ts = None
    severity: str | None = None
    ttl: Ts = None
    url: str | None = None
    images: list[str] = msgspec.field(default_factory=list)
    ciphertext: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: Meta = None
    repeat: RepeatIn | None = None


class MessageQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """GET /message: everything is text; images/tags are CSV, metadata a JSON string."""

    channel_id: str
    password: str
    title: str
    op_id: str | None = None
    body: str | None = None
    thing_id: str | None = None
    occurred_at: str | None = None
    severity: str | None = None
    ttl: str | None = None
    url: str | None = None
    images: str | None = None
    ciphertext: str | None = None
    tags: str | None = None
    metadata: str | None = None
    deliver_at: str | None = None


class _EventBody(_Req, kw_only=True):
    thing_id: str | None = None
    event_time: Ts = None
    title: str | None = None
    description: str | None = None
    status: str | None = None
    message: str | None = None
    severity: str | None = None
    tags: list[str] | None = None
    images: list[str] = msgspec.field(default_factory=list)
    ciphertext: str | None = None
    started_at: Ts = None
    ended_at: Ts = None
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: Meta = None


class EventCreateIn(_EventBody, kw_only=True):
    repeat: RepeatIn | None = None


class EventUpdateIn(_EventBody, kw_only=True):
    event_id: str
    repeat: RepeatIn | None = None


class EventCloseIn(_EventBody, kw_only=True):
    event_id: str


class _ThingBody(_Req, kw_only=True):
    observed_at: Ts = None
    title: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    primary_image: str | None = None
    images: list[str] = msgspec.field(default_factory=list)
    external_ids: dict[str, Any] = msgspec.field(default_factory=dict)
    location_type: str | None = None
    location_value: str | None = None
    ciphertext: str | None = None
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: Meta = None


class ThingCreateIn(_ThingBody, kw_only=True):
    created_at: Ts = None


class ThingUpdateIn(_ThingBody, kw_only=True):
    thing_id: str


class ThingArchiveIn(_ThingBody, kw_only=True):
    thing_id: str


class ThingDeleteIn(_ThingBody, kw_only=True):
    thing_id: str
    deleted_at: Ts = None


@dataclass(frozen=True)
class OpSpec:
    """A validated operation, independent of ids, time and the channel password."""

    route: str
    entity_type: str
    channel_id: str
    op_id: str | None
    entity_id: str | None  # given (update/close/...); None: generated on accept
    thing_id: str | None
    severity: str  # delivery priority: messages use theirs, events/things "normal"
    ttl_ms: int | None  # absolute expiry asked for (messages)
    occurred_at: int | None  # None: the accept time
    fields: dict[str, Any] = field(default_factory=dict)
    #: A scheduled send: when its deliveries become due (epoch ms); None: at once. Checked
    #: against the clock (not past, ≤ 30 days ahead) when the send is prepared.
    deliver_at: int | None = None
    #: Send again until acknowledged (messages, event create and update).
    repeat: Repeat | None = None

    def fingerprint(self) -> str:
        """What makes two requests with one op_id "the same payload"."""
        doc: dict[str, Any] = {
            "route": self.route, "entity_id": self.entity_id, "thing_id": self.thing_id,
            "severity": self.severity,
            "ttl": self.ttl_ms, "occurred_at": self.occurred_at, "fields": self.fields,
        }
        if self.deliver_at is not None:  # absent otherwise: older fingerprints still match
            doc["deliver_at"] = self.deliver_at
        if self.repeat is not None:  # absent otherwise: earlier fingerprints stay the same
            doc["repeat"] = [self.repeat.every_s, self.repeat.max]
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()


def require_password(raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise field_rules.FieldError(codes.PASSWORD_REQUIRED, "password is required")
    return raw


def message_spec(req: MessageIn, *, channel_key: str | None = None) -> OpSpec:
    """``channel_key``: a direct send's key (see protocol.bulk), used instead of a channel
    id; ``req.channel_id`` is then ignored."""
    thing_id = field_rules.token_id(req.thing_id, "thing_id", field_rules.ENTITY_ID_MAX, required=False) \
        if req.thing_id is not None else None
    if req.thing_id is not None and thing_id is None:
        raise field_rules.FieldError(codes.INVALID_THING_ID, "thing_id must not be empty")
    cid = field_rules.channel_id(req.channel_id) if channel_key is None else channel_key
    op = field_rules.op_id(req.op_id)
    title = req.title.strip()
    if not title:
        raise field_rules.FieldError(codes.TITLE_REQUIRED, "title must not be empty")
    meta = field_rules.metadata(req.metadata)
    occurred = field_rules.timestamp(req.occurred_at, "occurred_at")
    if thing_id is not None and occurred is None:
        raise field_rules.FieldError(codes.OCCURRED_AT_REQUIRED_FOR_THING_SCOPED_MESSAGE,
                           "occurred_at is required when message is scoped to thing_id")
    fields = {
        "title": title,
        "body": field_rules.blank_to_none(req.body),
        "url": field_rules.link(req.url),
        "images": field_rules.images(req.images),
        "tags": field_rules.tags(req.tags),
        "ciphertext": field_rules.blank_to_none(req.ciphertext),
        "metadata": meta,
    }
    return OpSpec(
        route="message", entity_type="message", channel_id=cid, op_id=op, entity_id=None,
        thing_id=thing_id, severity=field_rules.severity_lenient(req.severity),
        ttl_ms=field_rules.timestamp(req.ttl, "ttl"), occurred_at=occurred, fields=fields,
        deliver_at=field_rules.timestamp(req.deliver_at, "deliver_at"),
        repeat=repeat_rule(req.repeat),
    )


def message_from_query(q: MessageQuery) -> MessageIn:
    meta = field_rules.metadata_from_query(q.metadata)
    return MessageIn(
        channel_id=q.channel_id, password=q.password, title=q.title, op_id=field_rules.blank_to_none(q.op_id),
        body=q.body, thing_id=field_rules.blank_to_none(q.thing_id), occurred_at=q.occurred_at,
        severity=q.severity, ttl=q.ttl, url=q.url, images=field_rules.csv_list(q.images) or [],
        ciphertext=q.ciphertext, tags=field_rules.csv_list(q.tags) or [], metadata=meta,
        deliver_at=q.deliver_at,
    )


def scoped_to_thing(req: EventCloseIn, path_thing_id: str) -> EventCloseIn:
    """``POST /thing/{thing_id}/event/close``: the path names the thing the event belongs to.
    The apps send the same id in the body too; a body naming another thing is refused rather
    than guessed between."""
    path_id = path_thing_id.strip()
    if not path_id:
        raise field_rules.FieldError(codes.INVALID_THING_ID, "thing_id must not be empty")
    body_id = (req.thing_id or "").strip()
    if body_id and body_id != path_id:
        raise field_rules.FieldError(codes.THING_ID_MISMATCH,
                                     "thing_id in the body differs from the path's")
    return msgspec.structs.replace(req, thing_id=path_id)


def event_spec(req: _EventBody, action: str, *, now_ms: int | None = None) -> OpSpec:
    """``now_ms`` (the caller's clock): a close without ``event_time`` happened now, as the
    v1.3 Android app closes events without one; without ``now_ms`` it stays required."""
    cid = field_rules.channel_id(req.channel_id)
    op = field_rules.op_id(req.op_id)
    thing_id = field_rules.token_id(req.thing_id, "thing_id", field_rules.ENTITY_ID_MAX, required=False)
    event_id = None
    if isinstance(req, EventUpdateIn | EventCloseIn):
        event_id = field_rules.token_id(req.event_id, "event_id", field_rules.ENTITY_ID_MAX, required=True)
    tags = field_rules.tags(req.tags) if req.tags is not None else None
    severity = field_rules.severity_strict(req.severity)
    status = field_rules.bounded_text(req.status, "status", field_rules.EVENT_STATUS_MAX)
    message = field_rules.bounded_text(req.message, "message", field_rules.EVENT_MESSAGE_MAX)
    images = field_rules.images(req.images)
    attrs = field_rules.attrs(req.attrs)
    meta = field_rules.metadata(req.metadata)
    started = field_rules.timestamp(req.started_at, "started_at")
    ended = field_rules.timestamp(req.ended_at, "ended_at")
    if action == "create" and ended is not None:
        raise field_rules.FieldError(codes.ENDED_AT_FORBIDDEN_ON_CREATE,
                                     "ended_at is only allowed on /event/close")
    if action == "update" and (started is not None or ended is not None):
        raise field_rules.FieldError(codes.EVENT_TEMPORAL_FIELDS_FORBIDDEN_ON_UPDATE,
                           "started_at and ended_at are not allowed on /event/update")
    if action == "close" and started is not None:
        raise field_rules.FieldError(codes.STARTED_AT_FORBIDDEN_ON_CLOSE,
                           "started_at is only allowed on /event/create")
    if action == "create":
        if req.title is None or status is None or message is None or severity is None:
            raise field_rules.FieldError(codes.EVENT_CREATE_REQUIRED_FIELDS_MISSING,
                               "title, status, message and severity are required on /event/create")
    elif status is None or message is None or severity is None:
        raise field_rules.FieldError(codes.EVENT_UPDATE_REQUIRED_FIELDS_MISSING,
                           "status, message and severity are required on /event/update and "
                           "/event/close")
    absent_on_close = action == "close" and now_ms is not None and req.event_time is None
    event_time = field_rules.timestamp(req.event_time, "event_time", required=not absent_on_close)
    if event_time is None:
        assert now_ms is not None
        event_time = now_ms
    if action == "create":
        started = started if started is not None else event_time
    if action == "close":
        ended = ended if ended is not None else event_time
    fields = {
        "title": req.title, "description": field_rules.blank_to_none(req.description), "status": status,
        "message": message, "event_severity": severity, "tags": tags, "images": images,
        "ciphertext": field_rules.blank_to_none(req.ciphertext), "started_at": started, "ended_at": ended,
        "event_time": event_time, "attrs": attrs, "metadata": meta,
    }
    return OpSpec(
        route=f"event.{action}", entity_type="event", channel_id=cid, op_id=op,
        entity_id=event_id, thing_id=thing_id, severity="normal", ttl_ms=None,
        occurred_at=event_time, fields=fields,
        deliver_at=field_rules.timestamp(req.deliver_at, "deliver_at"),
        repeat=repeat_rule(req.repeat) if isinstance(req, EventCreateIn | EventUpdateIn) else None,
    )


def thing_spec(req: _ThingBody, action: str) -> OpSpec:
    cid = field_rules.channel_id(req.channel_id)
    op = field_rules.op_id(req.op_id)
    thing_id = None
    if isinstance(req, ThingUpdateIn | ThingArchiveIn | ThingDeleteIn):
        thing_id = field_rules.token_id(req.thing_id, "thing_id", field_rules.ENTITY_ID_MAX, required=True)
    tags = field_rules.tags(req.tags) if req.tags is not None else None
    images = field_rules.images(req.images)
    primary = field_rules.image_url(req.primary_image, "primary_image")
    attrs = field_rules.attrs(req.attrs)
    manufacturer = attrs.get("manufacturer")
    if "manufacturer" in attrs and manufacturer is not None:
        if not isinstance(manufacturer, dict):
            raise field_rules.FieldError(codes.MANUFACTURER_ATTR_INVALID,
                                         "attrs.manufacturer must be object or null")
        for key in manufacturer:
            if not key.strip():
                raise field_rules.FieldError(codes.MANUFACTURER_ATTR_KEY_REQUIRED,
                                   "attrs.manufacturer contains empty key")
            if len(key.strip().encode()) > 64:
                raise field_rules.FieldError(codes.MANUFACTURER_ATTR_KEY_TOO_LONG,
                                   "attrs.manufacturer key is too long")
    ext = field_rules.external_ids(req.external_ids)
    loc = field_rules.location(req.location_type, req.location_value)
    meta = field_rules.metadata(req.metadata)
    observed = field_rules.timestamp(req.observed_at, "observed_at", required=True)
    assert observed is not None
    created = field_rules.timestamp(req.created_at, "created_at") if isinstance(req, ThingCreateIn) else None
    deleted = field_rules.timestamp(req.deleted_at, "deleted_at") if isinstance(req, ThingDeleteIn) else None
    if action == "create":
        created = created if created is not None else observed
    if action == "delete":
        deleted = deleted if deleted is not None else observed
    fields = {
        "title": req.title, "description": field_rules.blank_to_none(req.description), "tags": tags,
        "primary_image": primary, "images": [i for i in images if i != primary],
        "external_ids": ext, "location": list(loc) if loc else None,
        "ciphertext": field_rules.blank_to_none(req.ciphertext), "attrs": attrs, "metadata": meta,
        "observed_at": observed, "created_at": created, "deleted_at": deleted,
    }
    return OpSpec(
        route=f"thing.{action}", entity_type="thing", channel_id=cid, op_id=op,
        entity_id=thing_id, thing_id=thing_id, severity="normal", ttl_ms=None,
        occurred_at=observed, fields=fields,
        deliver_at=field_rules.timestamp(req.deliver_at, "deliver_at"),
    )


#: action → request Struct
EVENT_ACTIONS: dict[str, type[_EventBody]] = {
    "create": EventCreateIn, "update": EventUpdateIn, "close": EventCloseIn,
}
THING_ACTIONS: dict[str, type[_ThingBody]] = {
    "create": ThingCreateIn, "update": ThingUpdateIn, "archive": ThingArchiveIn,
    "delete": ThingDeleteIn,
}


class CancelIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /operations/{op_id}/cancel``: the channel of the operation and its password.
    Without a password (a gateway with PUSHGO_TOKEN only) ``channel_id`` may be left out:
    every operation of that op_id is cancelled, direct sends included."""

    channel_id: str | None = None
    password: str | None = None
