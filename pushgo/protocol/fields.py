"""Field rules shared by messages, events and things: ids, images, tags, metadata,
attrs, external ids, locations, timestamps. Each check raises FieldError(code, message).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pushgo.errors import InvalidInput
from pushgo.protocol import errors as codes
from pushgo.protocol import jsondepth
from pushgo.protocol.ids import is_token_id, parse_channel_id
from pushgo.protocol.timeparse import to_epoch_ms

OP_ID_MAX = 128
ENTITY_ID_MAX = 64
IMAGES_MAX = 32
IMAGE_URL_MAX = 2048
TAGS_MAX = 32
TAG_MAX = 64
METADATA_KEY_MAX = 64
#: A metadata value's text, in UTF-8 bytes: PushGo Gateway v1.3's ceiling (16 KiB; v1.2.9 had
#: 512). v1.3 limits neither the number of keys nor their total: the 32 KiB request body
#: (pushgo.api.envelope.MAX_BODY, the same in v1.3) bounds them, and a payload past a
#: provider's 4 KiB goes as a wake-up that the app completes with /v2/messages/pull.
METADATA_VALUE_MAX = 16 * 1024
EVENT_STATUS_MAX = 24
EVENT_MESSAGE_MAX = 512
EXTERNAL_ID_KEY_MAX = 64
EXTERNAL_ID_VALUE_MAX = 256
LOCATION_TEXT_MAX = 256
LOCATION_TOKEN_MAX = 64
MAX_TTL_MS = 30 * 24 * 3600 * 1000
SEVERITIES = ("critical", "high", "normal", "low")
LOCATION_TYPES = ("physical", "geo", "cloud", "datacenter", "logical")

Scalar = str | int | float | bool


class FieldError(InvalidInput):
    """A field that breaks its rule: 400 with a specific ``error_code``."""

    def __init__(self, code: codes.ErrorCode, message: str) -> None:
        super().__init__(code, message)


def _required(field: str) -> codes.ErrorCode:
    """``<field>_required``: registered for every field the operations pass in."""
    return codes.by_code(f"{field}_required")


def _invalid(field: str) -> codes.ErrorCode:
    """``invalid_<field>``: registered for every field the operations pass in."""
    return codes.by_code(f"invalid_{field}")


def blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def channel_id(raw: str) -> str:
    if not raw.strip():
        raise FieldError(codes.CHANNEL_ID_REQUIRED, "channel id must not be empty")
    # Readers often paste ids with separators; they are not part of the id.
    parsed = parse_channel_id(re.sub(r"[\s\-]", "", raw))
    if parsed is None:
        raise FieldError(codes.INVALID_CHANNEL_ID, "invalid channel id")
    return parsed


def device_key(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise FieldError(codes.DEVICE_KEY_REQUIRED, "device_key is required")
    if len(value) > 128 or not value.isprintable():
        raise FieldError(codes.INVALID_DEVICE_KEY, "device_key is invalid")
    return value


def token_id(raw: str | None, field: str, max_len: int, *, required: bool) -> str | None:
    if raw is None:
        if required:
            raise FieldError(_required(field), f"{field} is required")
        return None
    value = raw.strip()
    if not value:
        if required:
            raise FieldError(_required(field), f"{field} must not be empty")
        return None
    if len(value.encode()) > max_len:
        raise FieldError(_invalid(field), f"{field} is too long (max {max_len})")
    if not is_token_id(value, max_len):
        raise FieldError(_invalid(field), f"{field} may only contain A-Z a-z 0-9 _ : -")
    return value


def op_id(raw: str | None) -> str | None:
    return token_id(raw, "op_id", OP_ID_MAX, required=False)


def timestamp(raw: object, field: str, *, required: bool = False) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            raise FieldError(_required(field), f"{field} is required")
        return None
    ms = to_epoch_ms(raw)
    if ms is None:
        raise FieldError(_invalid(field), f"{field} must be Unix seconds or milliseconds")
    return ms


#: How far ahead a send may be scheduled (``deliver_at``).
MAX_SCHEDULE_MS = 30 * 24 * 3600 * 1000


def deliver_at(value: int | None, ttl_ms: int | None, now_ms: int) -> int | None:
    """A scheduled send's time, checked against the caller's clock: later than now, at most
    30 days ahead, and before the expiry asked for (``ttl``) when there is one."""
    if value is None:
        return None
    if value <= now_ms:
        raise FieldError(codes.DELIVER_AT_IN_PAST, "deliver_at must be in the future")
    if value > now_ms + MAX_SCHEDULE_MS:
        raise FieldError(codes.DELIVER_AT_TOO_FAR, "deliver_at must be at most 30 days ahead")
    if ttl_ms is not None and ttl_ms <= value:
        raise FieldError(codes.TTL_BEFORE_DELIVER_AT, "ttl must be later than deliver_at")
    return value


def _string_list(values: list[str] | None, field: str, max_items: int, max_len: int,
                 code: codes.ErrorCode) -> list[str]:
    if not values:
        return []
    if len(values) > max_items:
        raise FieldError(code, f"{field} exceeds max length {max_items}")
    out: list[str] = []
    seen: set[str] = set()
    for raw in values:
        value = raw.strip()
        if not value:
            raise FieldError(code, f"{field} contains an empty entry")
        if len(value.encode()) > max_len:
            raise FieldError(code, f"{field} contains an entry over {max_len} bytes")
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


#: Schemes a message's ``url`` may not use: script, inline data and local files, which the
#: PushGo apps refuse to open anyway. Any other absolute URI is kept (``https:``, and deep links
#: such as ``mailto:``, ``tel:`` or another app's scheme, which the apps open).
BLOCKED_URL_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "content", "intent"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_WEB = ("http", "https")


def _web_host(value: str) -> bool:
    """``value`` is an http(s) URL naming a host (no user information)."""
    try:
        parts = urlsplit(value)
        return bool(parts.scheme.lower() in _WEB and parts.hostname and "@" not in parts.netloc)
    except ValueError:
        return False


def link(raw: str | None) -> str | None:
    """A message's ``url``: an absolute URI, not one of ``BLOCKED_URL_SCHEMES``; an http(s)
    one names a host. Blank is none. 400 ``invalid_url`` otherwise."""
    value = blank_to_none(raw)
    if value is None:
        return None
    scheme, colon, rest = value.partition(":")
    bad = (not colon or not _SCHEME.fullmatch(scheme) or not rest or len(value.encode()) > IMAGE_URL_MAX
           or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value))
    if bad or scheme.lower() in BLOCKED_URL_SCHEMES:
        raise FieldError(codes.INVALID_URL, "url must be an absolute URL (https://…, or an app "
                                            "link); javascript:, data: and file: are refused")
    if scheme.lower() in _WEB and not _web_host(value):
        raise FieldError(codes.INVALID_URL, "url must name a host")
    return value


def images(values: list[str] | None) -> list[str]:
    """Image URLs the apps download: http(s) with a host, each at most 2 KiB."""
    out = _string_list(values, "images", IMAGES_MAX, IMAGE_URL_MAX, codes.IMAGES_FORMAT_INVALID)
    for value in out:
        if not _web_host(value) or any(ch.isspace() for ch in value):
            raise FieldError(codes.IMAGES_FORMAT_INVALID,
                             "images must be http:// or https:// URLs")
    return out


def tags(values: list[str] | None) -> list[str]:
    return _string_list(values, "tags", TAGS_MAX, TAG_MAX, codes.TAGS_FORMAT_INVALID)


def csv_list(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    return [piece.strip() for piece in raw.split(",") if piece.strip()]


def scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def metadata(raw: Mapping[str, Any] | None) -> dict[str, Scalar]:
    """Flat scalar map: key trimmed, 1..64 bytes; value a non-blank string, number or bool whose
    text is ≤16 KiB. Keys come out sorted."""
    if not raw:
        return {}
    out: dict[str, Scalar] = {}
    for key_raw, value in raw.items():
        key = key_raw.strip()
        if not key:
            raise FieldError(codes.METADATA_KEY_REQUIRED, "metadata key must not be empty")
        if key in out:
            raise FieldError(codes.METADATA_KEY_DUPLICATE, f"metadata key {key!r} is duplicated")
        if len(key.encode()) > METADATA_KEY_MAX:
            raise FieldError(codes.METADATA_KEY_TOO_LONG, "metadata key is too long (max 64 bytes)")
        if not isinstance(value, str | int | float | bool) or value is None:
            raise FieldError(codes.METADATA_VALUE_SCALAR_REQUIRED, f"metadata.{key} must be a scalar")
        if isinstance(value, float) and value != value:  # NaN never arrives from JSON; guard
            raise FieldError(codes.METADATA_VALUE_SCALAR_REQUIRED, f"metadata.{key} must be a scalar")
        if isinstance(value, str) and not value.strip():
            raise FieldError(codes.METADATA_VALUE_REQUIRED, f"metadata.{key} must not be empty")
        if len(scalar_text(value).encode()) > METADATA_VALUE_MAX:
            raise FieldError(codes.METADATA_VALUE_TOO_LONG,
                             f"metadata value is too long (max {METADATA_VALUE_MAX} bytes)")
        out[key] = value
    return dict(sorted(out.items()))


def metadata_from_query(raw: str | None) -> dict[str, Scalar]:
    if raw is None or not raw.strip():
        return {}
    try:
        parsed = jsondepth.loads(raw)
    except jsondepth.TooDeep as exc:
        raise FieldError(codes.JSON_TOO_DEEP, f"metadata: {exc}") from None
    except ValueError:
        raise FieldError(codes.METADATA_OBJECT_REQUIRED, "metadata must be a JSON object") from None
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise FieldError(codes.METADATA_OBJECT_REQUIRED, "metadata must be a JSON object")
    return metadata(parsed)


def attrs(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Patch object: values are null (delete), scalars, or one-level objects of scalars/null."""
    if not raw:
        return {}
    out: dict[str, Any] = {}
    for key_raw, value in raw.items():
        key = key_raw.strip()
        if not key:
            raise FieldError(codes.EXTENSION_OBJECT_KEY_REQUIRED, "attrs contains empty key")
        if isinstance(value, list):
            raise FieldError(codes.EXTENSION_OBJECT_ARRAYS_UNSUPPORTED, "attrs does not support arrays")
        if isinstance(value, dict):
            for inner in value.values():
                if isinstance(inner, dict | list):
                    raise FieldError(codes.EXTENSION_OBJECT_NESTED_OBJECT_UNSUPPORTED,
                                     "attrs only supports one-level objects")
        out[key] = value
    return dict(sorted(out.items()))


def severity_lenient(raw: str | None) -> str:
    value = (raw or "").strip().lower()
    return value if value in SEVERITIES else "normal"


def severity_strict(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip().lower()
    if value not in SEVERITIES:
        raise FieldError(codes.INVALID_SEVERITY, "severity must be one of critical/high/normal/low")
    return value


def bounded_text(raw: str | None, field: str, max_chars: int) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    if not value:
        raise FieldError(_invalid(field), f"{field} must not be empty")
    if len(value) > max_chars:
        raise FieldError(_invalid(field), f"{field} is too long (max {max_chars})")
    return value


def image_url(raw: str | None, field: str) -> str | None:
    value = blank_to_none(raw)
    if value is not None and len(value.encode()) > IMAGE_URL_MAX:
        raise FieldError(codes.IMAGES_FORMAT_INVALID, f"{field} is longer than 2048 bytes")
    return value


_EXT_KEY = re.compile(r"[A-Za-z0-9_:.\-]+")
_LOC_TOKEN = re.compile(r"[A-Za-z0-9_.\-]+")


def external_ids(raw: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Patch of external ids: key lowercased; value a string (set) or null (remove)."""
    if not raw:
        return {}
    out: dict[str, str | None] = {}
    for key_raw, value in raw.items():
        key = key_raw.strip().lower()
        if not key:
            raise FieldError(codes.EXTERNAL_IDS_KEY_INVALID, "external_ids contains empty key")
        if len(key.encode()) > EXTERNAL_ID_KEY_MAX or not _EXT_KEY.fullmatch(key):
            raise FieldError(codes.EXTERNAL_IDS_KEY_INVALID, "external_ids key format is invalid")
        if value is None:
            out[key] = None
            continue
        if not isinstance(value, str):
            raise FieldError(codes.EXTERNAL_IDS_VALUE_INVALID,
                             "external_ids only supports string or null values")
        text = value.strip()
        if not text:
            raise FieldError(codes.EXTERNAL_IDS_VALUE_REQUIRED, "external_ids contains empty value")
        if len(text.encode()) > EXTERNAL_ID_VALUE_MAX:
            raise FieldError(codes.EXTERNAL_IDS_VALUE_TOO_LONG, "external_ids value is too long")
        out[key] = text
    return dict(sorted(out.items()))


def _loc_tokens(value: str, sep: str, lo: int, hi: int, kind: str) -> str:
    parts = [p.strip().lower() for p in value.split(sep)]
    if not lo <= len(parts) <= hi:
        raise FieldError(codes.INVALID_LOCATION, f"{kind} location_value has the wrong number of parts")
    for p in parts:
        if not p or len(p) > LOCATION_TOKEN_MAX or not _LOC_TOKEN.fullmatch(p):
            raise FieldError(codes.INVALID_LOCATION, "location_value token format is invalid")
    return sep.join(parts)


def location(type_raw: str | None, value_raw: str | None) -> tuple[str, str] | None:
    ltype, lvalue = blank_to_none(type_raw), blank_to_none(value_raw)
    if ltype is None and lvalue is None:
        return None
    if ltype is None or lvalue is None:
        raise FieldError(codes.INVALID_LOCATION,
                         "location_type and location_value must be provided together")
    ltype = ltype.lower()
    if ltype not in LOCATION_TYPES:
        raise FieldError(codes.INVALID_LOCATION, "location_type must be one of " + "|".join(LOCATION_TYPES))
    if ltype == "physical":
        if len(lvalue.encode()) > LOCATION_TEXT_MAX:
            raise FieldError(codes.INVALID_LOCATION, "physical location_value is too long")
        return ltype, lvalue
    if ltype == "geo":
        lat_s, sep, lng_s = lvalue.partition(",")
        if not sep:
            raise FieldError(codes.INVALID_LOCATION, "geo location_value must be <lat>,<lng>")
        try:
            lat, lng = float(lat_s), float(lng_s)
        except ValueError:
            raise FieldError(codes.INVALID_LOCATION, "geo location_value must be numbers") from None
        if not (-90 <= lat <= 90) or not (-180 <= lng <= 180):
            raise FieldError(codes.INVALID_LOCATION, "geo location_value out of range")
        return ltype, f"{round(lat, 6):.6f},{round(lng, 6):.6f}"
    if ltype == "cloud":
        return ltype, _loc_tokens(lvalue, ":", 2, 3, "cloud")
    if ltype == "datacenter":
        return ltype, _loc_tokens(lvalue, ":", 1, 3, "datacenter")
    return ltype, _loc_tokens(lvalue, "/", 1, 64, "logical")


def channel_name(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise FieldError(codes.INVALID_CHANNEL_NAME, "channel name must not be empty")
    if len(value) > 128:
        raise FieldError(codes.INVALID_CHANNEL_NAME, "channel name too long (max 128)")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise FieldError(codes.INVALID_CHANNEL_NAME, "channel name contains invalid characters")
    return value


PLATFORMS = {"ios": "ios", "ipados": "ios", "macos": "macos", "watchos": "watchos",
             "android": "android", "windows": "windows", "win": "windows", "web": "web",
             "browser": "web"}
CHANNEL_TYPES = ("apns", "fcm", "wns", "webpush", "private")
APPLE = ("ios", "macos", "watchos")


def platform(raw: str) -> str:
    value = PLATFORMS.get(raw.strip().lower())
    if value is None:
        raise FieldError(codes.INVALID_PLATFORM, "invalid platform")
    return value


def channel_type(raw: str) -> str:
    value = raw.strip().lower()
    if value not in CHANNEL_TYPES:
        raise FieldError(codes.INVALID_CHANNEL_TYPE, "invalid channel_type")
    return value


_HEX = re.compile(r"[0-9A-Fa-f]+")


def provider_token(raw: str, plat: str) -> str:
    value = raw.strip()
    if plat in APPLE:
        ok = len(value) % 2 == 0 and 64 <= len(value) <= 256 and _HEX.fullmatch(value) is not None
    else:
        # Control characters are never part of a real FCM/WNS token.
        ok = 16 <= len(value.encode()) <= 4096 and value.isprintable()
    if not ok:
        raise FieldError(codes.INVALID_PROVIDER_TOKEN, "invalid provider_token")
    return value
