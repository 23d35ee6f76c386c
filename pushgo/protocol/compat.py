"""The compat ingress: ntfy, ServerChan and Bark style requests as PushGo Gateway v1.2.9 maps
them onto a message (``/ntfy/{topic}``, ``/serverchan/{sendkey}``, ``/bark/{key}/{body}``,
``/bark/{key}/{title}/{body}``, ``POST /bark/push``).

The topic, sendkey or Bark device key is a *compat key*, ``<channel_id>:<password>`` (split at
the first colon, each side trimmed). Each request becomes a :class:`~operations.MessageIn`
that the caller validates and sends like any other message. The answer is the one of
``POST /message``, errors included (v1.2.9 answers these routes in its own envelope too).

Pure: raw path bytes, query pairs, header values and body bytes in; a matched route or a
MessageIn out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec

from pushgo.protocol import errors as codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol.operations import MessageIn

#: The title of a message whose sender gave none.
DEFAULT_TITLE = "Notification"

#: The query parameters each dialect takes; any other is refused (``invalid_query``).
NTFY_QUERY = frozenset({"message", "body", "title", "priority", "severity", "url", "op_id",
                        "thing_id", "occurred_at", "ttl", "images", "ciphertext", "tags",
                        "metadata"})
SERVERCHAN_FIELDS = frozenset({"title", "text", "desp", "body", "url", "ciphertext", "op_id",
                               "metadata"})
BARK_QUERY = frozenset({"url", "op_id", "level", "sound", "icon", "group", "images",
                        "ciphertext", "tags", "metadata"})

#: ntfy priority → message severity. v1.2.9 maps 1–2 to "info" and 3 to "warning", names its
#: message severities do not know, so those arrive as normal; 4–5 are critical. ntfy's names
#: for the levels (min … urgent/max) are read the same way (pushgo's own: v1.2.9 ignores them).
NTFY_PRIORITY = {"1": "normal", "2": "normal", "3": "normal", "4": "critical", "5": "critical",
                 "min": "normal", "low": "normal", "default": "normal", "high": "critical",
                 "urgent": "critical", "max": "critical"}
#: Bark level (case-insensitive) → message severity; v1.2.9's "warning" (time-sensitive) and
#: "info" (passive) arrive as normal, as above.
BARK_LEVEL = {"active": "critical", "critical": "critical", "time-sensitive": "normal",
              "timesensitive": "normal", "warning": "normal", "passive": "normal",
              "info": "normal"}

#: Metadata keys the dialects' own fields are kept under.
BARK_METADATA = {"sound": "compat.bark.sound", "icon": "compat.bark.icon",
                 "group": "compat.bark.group"}
SERVERCHAN_URL_METADATA = "compat.serverchan.url"

_NTFY_ACTIONS = ("publish", "send", "trigger")
_SERVERCHAN_SUFFIX = ".send"


@dataclass(frozen=True)
class CompatKey:
    channel_id: str
    password: str


@dataclass(frozen=True)
class CompatRoute:
    """A matched compat path: the methods it answers and what its segments carry."""

    dialect: str  # "ntfy", "serverchan", "bark" or "bark_push"
    methods: frozenset[str]
    key: str = ""
    title: str | None = None
    body: str | None = None


class BarkPushIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /bark/push``: the JSON body, ``device_key`` being the compat key."""

    device_key: str
    title: str | None = None
    body: str | None = None
    url: str | None = None
    op_id: str | None = None
    level: str | None = None
    sound: str | None = None
    icon: str | None = None
    group: str | None = None
    images: list[str] = msgspec.field(default_factory=list)
    ciphertext: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] | None = None


def _invalid(message: str) -> field_rules.FieldError:
    return field_rules.FieldError(codes.COMPAT_KEY_INVALID, message)


def parse_key(raw: str) -> CompatKey:
    """``<channel_id>:<password>``: split at the first colon, both sides trimmed, non-empty."""
    channel_id, colon, password = raw.strip().partition(":")
    if not colon or not channel_id.strip() or not password.strip():
        raise _invalid("compat key must be '<channel_id>:<password>'")
    return CompatKey(channel_id.strip(), password.strip())


def _clean(value: str, what: str) -> str:
    if "\x00" in value:  # as everywhere: PostgreSQL text cannot hold it
        raise field_rules.FieldError(codes.INVALID_REQUEST, f"{what} contains U+0000")
    return value


def path_segments(raw_path: bytes, prefix: bytes) -> list[str] | None:
    """The segments of ``raw_path`` after ``prefix``, each percent-decoded on its own (so a
    ``%2F`` stays inside its segment); None when the path is not under ``prefix``."""
    path = raw_path.split(b"?", 1)[0]
    if not path.startswith(prefix):
        return None
    out = []
    for piece in path[len(prefix):].split(b"/"):
        try:
            text = unquote_to_bytes(piece).decode("utf-8")
        except UnicodeDecodeError:
            raise field_rules.FieldError(codes.INVALID_REQUEST,
                                         "path segment is not UTF-8") from None
        out.append(_clean(text, "path segment"))
    return out


def match_ntfy(segments: list[str]) -> CompatRoute | None:
    """``/ntfy/{topic}`` (POST, PUT) and ``/ntfy/{topic}/publish|send|trigger`` (GET too)."""
    if any(not s for s in segments):
        return None
    if len(segments) == 1:
        return CompatRoute("ntfy", frozenset({"POST", "PUT"}), key=segments[0])
    if len(segments) == 2 and segments[1] in _NTFY_ACTIONS:
        return CompatRoute("ntfy", frozenset({"GET", "POST", "PUT"}), key=segments[0])
    return None


def match_serverchan(segments: list[str]) -> CompatRoute | None:
    """``/serverchan/{sendkey}`` (GET, POST); ServerChan's ``<sendkey>.send`` spelling too."""
    if len(segments) != 1 or not segments[0]:
        return None
    key = segments[0]
    if key.endswith(_SERVERCHAN_SUFFIX) and len(key) > len(_SERVERCHAN_SUFFIX):
        key = key[:-len(_SERVERCHAN_SUFFIX)]
    return CompatRoute("serverchan", frozenset({"GET", "POST"}), key=key)


def match_bark(segments: list[str]) -> CompatRoute | None:
    """``POST /bark/push``, ``GET /bark/{key}/{body}``, ``GET /bark/{key}/{title}/{body}``."""
    if any(not s for s in segments):
        return None
    if segments == ["push"]:
        return CompatRoute("bark_push", frozenset({"POST"}))
    if len(segments) == 2:
        return CompatRoute("bark", frozenset({"GET"}), key=segments[0], body=segments[1])
    if len(segments) == 3:
        return CompatRoute("bark", frozenset({"GET"}), key=segments[0], title=segments[1],
                           body=segments[2])
    return None


def query_fields(items: Iterable[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """Query (or form) pairs as a dict: an unknown name is refused, the first of a repeated
    name wins (as GET /message)."""
    out: dict[str, str] = {}
    for name, value in items:
        if name not in allowed:
            raise field_rules.FieldError(codes.INVALID_QUERY,
                                         f"unknown query parameter {name!r}")
        out.setdefault(name, _clean(value, f"query parameter {name!r}"))
    return out


def form_fields(raw: bytes, allowed: frozenset[str]) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (ServerChan's POST)."""
    return query_fields(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True),
                        allowed)


def _normalized(value: str | None) -> str | None:
    return field_rules.blank_to_none(value)


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = _normalized(headers.get(name))
        if value is not None:
            return _clean(value, f"header {name}")
    return None


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v is not None), None)


def _title(*values: str | None) -> str:
    """The first title given (an empty one is refused later, as v1.2.9), else the default."""
    return next((v for v in values if v is not None), DEFAULT_TITLE)


def _metadata(raw: str | None) -> dict[str, Any]:
    return dict(field_rules.metadata_from_query(raw))


def _csv(raw: str | None) -> list[str]:
    return field_rules.csv_list(raw) or []


def ntfy_severity(priority: str | None) -> str | None:
    return NTFY_PRIORITY.get((priority or "").strip().lower())


def bark_severity(level: str | None) -> str | None:
    return BARK_LEVEL.get((level or "").strip().lower())


def ntfy_message(key: str, query: Mapping[str, str], headers: Mapping[str, str],
                 body: bytes | None) -> MessageIn:
    """Title: ``?title=``, the Title header, else the default. Body: ``?message=``,
    ``?body=``, the Message header, else the request body. Severity: ``?severity=``, else the
    priority (``?priority=``, else the Priority header). ``headers``: lower-case names."""
    if query.get("thing_id") is not None:
        raise field_rules.FieldError(codes.THING_ID_UNSUPPORTED_ON_NTFY_ENDPOINT,
                                     "thing_id is not supported on this endpoint")
    compat_key = parse_key(key)
    text = None
    if body is not None:
        text = _normalized(_clean(body.decode("utf-8", "replace"), "body"))
    priority = _first(query.get("priority"), _header(headers, "priority", "x-priority"))
    return MessageIn(
        channel_id=compat_key.channel_id, password=compat_key.password,
        op_id=query.get("op_id"),
        title=_title(query.get("title"), _header(headers, "title", "x-title")),
        body=_first(query.get("message"), query.get("body"),
                    _header(headers, "message", "x-message"), text),
        severity=_first(query.get("severity"), ntfy_severity(priority)),
        occurred_at=query.get("occurred_at"), ttl=query.get("ttl"), url=query.get("url"),
        images=_csv(query.get("images")), ciphertext=query.get("ciphertext"),
        tags=_csv(_first(query.get("tags"), _header(headers, "tags", "x-tags"))),
        metadata=_metadata(query.get("metadata")),
    )


def serverchan_message(key: str, fields: Mapping[str, str]) -> MessageIn:
    """Title: ``title``, else ``text``, else the default; body: ``desp``, else ``body``; the
    url also kept in metadata."""
    compat_key = parse_key(key)
    metadata = _metadata(fields.get("metadata"))
    url = fields.get("url")
    if _normalized(url) is not None:
        metadata[SERVERCHAN_URL_METADATA] = _normalized(url)
    return MessageIn(
        channel_id=compat_key.channel_id, password=compat_key.password,
        op_id=fields.get("op_id"),
        title=_title(fields.get("title"), fields.get("text")),
        body=_first(fields.get("desp"), fields.get("body")), url=url,
        ciphertext=fields.get("ciphertext"), metadata=metadata,
    )


def _bark_metadata(base: Mapping[str, Any] | None, sound: str | None, icon: str | None,
                   group: str | None) -> dict[str, Any]:
    metadata = dict(base or {})
    for name, value in (("sound", sound), ("icon", icon), ("group", group)):
        text = _normalized(value)
        if text is not None:
            metadata[BARK_METADATA[name]] = text
    return metadata


def bark_message(route: CompatRoute, query: Mapping[str, str]) -> MessageIn:
    """``GET /bark/{key}[/{title}]/{body}``: level → severity, sound/icon/group → metadata."""
    compat_key = parse_key(route.key)
    return MessageIn(
        channel_id=compat_key.channel_id, password=compat_key.password,
        op_id=query.get("op_id"), title=route.title or DEFAULT_TITLE, body=route.body,
        severity=bark_severity(query.get("level")), url=query.get("url"),
        images=_csv(query.get("images")), ciphertext=query.get("ciphertext"),
        tags=_csv(query.get("tags")),
        metadata=_bark_metadata(_metadata(query.get("metadata")), query.get("sound"),
                                query.get("icon"), query.get("group")),
    )


def bark_push_message(req: BarkPushIn) -> MessageIn:
    """``POST /bark/push``: as the GET form, from a JSON body."""
    compat_key = parse_key(req.device_key)
    return MessageIn(
        channel_id=compat_key.channel_id, password=compat_key.password, op_id=req.op_id,
        title=_title(req.title), body=req.body,
        severity=bark_severity(req.level), url=req.url, images=req.images,
        ciphertext=req.ciphertext, tags=req.tags,
        metadata=_bark_metadata(req.metadata, req.sound, req.icon, req.group),
    )


def loggable_path(path: str) -> str:
    """``path`` for a log line: a compat path carries a channel password (and Bark's, the
    message), so it is logged as its shape only."""
    for prefix, shown in (("/ntfy/", "/ntfy/{topic}"), ("/serverchan/", "/serverchan/{sendkey}"),
                          ("/bark/", "/bark/{device_key}/…")):
        if path.startswith(prefix):
            if path == "/bark/push":
                return path
            action = path.rsplit("/", 1)[-1]
            return f"{shown}/{action}" if prefix == "/ntfy/" and action in _NTFY_ACTIONS \
                and path.count("/") > 2 else shown
    return path
