"""The payload devices receive: one flat string→string map per operation (as v1.2.9), the
same for the private stream, /messages/pull, FCM ``data`` and the keys flattened beside APNs
``aps``; plus the notification texts (alert title/body, thread id).

Built once per operation; ``delivery_id`` is the only per-device key, spliced in by
:func:`with_delivery_id`. Pure: ids and times come from the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pushgo.protocol.fields import MAX_TTL_MS, scalar_text
from pushgo.protocol.operations import OpSpec

SCHEMA_VERSION = "1"
PAYLOAD_VERSION = "1"
WAKEUP_BODY_CHARS = 180
WAKEUP_KEYS = ("title", "delivery_id", "channel_id", "entity_type", "entity_id", "message_id",
               "event_id", "thing_id", "op_id", "sent_at", "ttl", "schema_version",
               "payload_version", "base_url", "receipt")
#: ``receipt`` of a repeating send: the path a notification action posts its acknowledgement
#: to (with its device_key and this op_id or delivery_id), which stops the repeats.
RECEIPT_PATH = "/receipts/ack"

_THING_PREFIX = {"create": "创建: ", "update": "更新: ", "archive": "存档: ", "delete": "删除: "}
_NAME_KEYS = ("name", "thing_name", "名称")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _json_list(value: list[str]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Rendered:
    data: dict[str, str]
    alert_title: str
    alert_body: str
    thread_id: str
    expires_at: int

    def payload_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)

    def alert_json(self) -> str:
        return json.dumps({"title": self.alert_title, "body": self.alert_body,
                           "thread": self.thread_id}, separators=(",", ":"), ensure_ascii=False)


def with_delivery_id(payload_json: str, delivery_id: str) -> str:
    """Splice ``delivery_id`` into a stored payload object (which never carries that key)."""
    if payload_json == "{}":
        return '{"delivery_id":"' + delivery_id + '"}'
    return '{"delivery_id":"' + delivery_id + '",' + payload_json[1:]


def effective_expiry(spec: OpSpec, now_ms: int, default_ttl_ms: int) -> int:
    """Absolute expiry: the asked ttl capped at now+30 d, else now + the default TTL."""
    if spec.ttl_ms is not None:
        return min(spec.ttl_ms, now_ms + MAX_TTL_MS)
    return now_ms + min(default_ttl_ms, MAX_TTL_MS)


def render(spec: OpSpec, *, op_id: str, entity_id: str, now_ms: int, default_ttl_ms: int,
           base_url: str | None = None) -> Rendered:
    f = spec.fields
    data: dict[str, str] = {}
    # 1. route custom fields
    if spec.entity_type == "message":
        if f["url"]:
            data["url"] = f["url"]
        if f["images"]:
            data["images"] = _json_list(f["images"])
    if f.get("ciphertext"):
        data["ciphertext"] = f["ciphertext"]
    if f.get("metadata"):
        data["metadata"] = _json(f["metadata"])
    # 2. standard fields (a scheduled send is sent, and its TTL counts, from deliver_at)
    sent = spec.deliver_at if spec.deliver_at is not None else now_ms
    occurred = spec.occurred_at if spec.occurred_at is not None else sent
    expires = effective_expiry(spec, sent, default_ttl_ms)
    data["channel_id"] = spec.channel_id
    data["schema_version"] = SCHEMA_VERSION
    data["payload_version"] = PAYLOAD_VERSION
    data["op_id"] = op_id
    data["ingested_at"] = str(now_ms)
    data["occurred_at"] = str(occurred)
    data["sent_at"] = str(sent)
    data["entity_type"] = spec.entity_type
    data["entity_id"] = entity_id
    action = spec.route.partition(".")[2]
    if spec.entity_type == "message":
        title, body = _message_fields(spec, data, entity_id, expires)
        thread = f"message|channel={spec.channel_id}"
    elif spec.entity_type == "event":
        title, body = _event_fields(spec, data, entity_id, action)
        thread = f"event|channel={spec.channel_id}|event={entity_id}"
    else:
        title, body = _thing_fields(spec, data, entity_id, action)
        thread = f"thing|channel={spec.channel_id}|thing={entity_id}"
    if base_url:
        data["base_url"] = base_url.rstrip("/")
    if spec.repeat is not None:
        data["receipt"] = RECEIPT_PATH
    return Rendered(data, title, body, thread, expires)


def _message_fields(spec: OpSpec, data: dict[str, str], message_id: str,
                    expires: int) -> tuple[str, str]:
    f = spec.fields
    data["title"] = f["title"]
    if f["body"]:
        data["body"] = f["body"]
    data["severity"] = spec.severity
    if spec.ttl_ms is not None:
        data["ttl"] = str(expires)  # the asked expiry, capped as effective_expiry does
    data["message_id"] = message_id
    if f["tags"]:
        data["tags"] = _json_list(f["tags"])
    if spec.thing_id:
        data["thing_id"] = spec.thing_id
    return f["title"], f["body"] or ""


def _event_fields(spec: OpSpec, data: dict[str, str], event_id: str,
                  action: str) -> tuple[str, str]:
    f = spec.fields
    body = f["message"] or f["description"]
    if body:
        data["body"] = body
    data["event_id"] = event_id
    data["event_state"] = "CLOSED" if action == "close" else "ONGOING"
    data["event_time"] = str(f["event_time"])
    if spec.thing_id:
        data["thing_id"] = spec.thing_id
    for key in ("description", "status", "message"):
        if f[key]:
            data[key] = f[key]
    if f["event_severity"]:
        data["severity"] = f["event_severity"]
    if f["tags"]:
        data["tags"] = _json_list(f["tags"])
    if f["images"]:
        data["images"] = _json_list(f["images"])
    for key in ("started_at", "ended_at"):
        if f[key] is not None:
            data[key] = str(f[key])
    if f["attrs"]:
        data["attrs"] = _json(f["attrs"])
    title = f["title"] if f["title"] else f"Event {event_id}"
    data["title"] = f["title"] if f["title"] is not None else title
    return title.strip() or f"Event {event_id}", body or ""


def _thing_fields(spec: OpSpec, data: dict[str, str], thing_id: str,
                  action: str) -> tuple[str, str]:
    f = spec.fields
    attrs_raw: dict[str, Any] = f["attrs"]
    attrs = {k: v for k, v in attrs_raw.items() if v is not None}
    data["thing_id"] = thing_id
    data["attrs"] = _json(attrs)
    data["state"] = {"archive": "archived", "delete": "deleted"}.get(action, "active")
    if f["description"]:
        data["description"] = f["description"]
    if f["tags"]:
        data["tags"] = _json_list(f["tags"])
    if f["primary_image"]:
        data["primary_image"] = f["primary_image"]
    if f["images"]:
        data["images"] = _json_list(f["images"])
    if f["created_at"] is not None:
        data["created_at"] = str(f["created_at"])
    if f["deleted_at"] is not None:
        data["deleted_at"] = str(f["deleted_at"])
    ext = {k: v for k, v in f["external_ids"].items() if v is not None}
    if ext:
        data["external_ids"] = _json(ext)
    if f["location"]:
        ltype, lvalue = f["location"]
        data["location_type"] = ltype
        data["location_value"] = lvalue
        data["location"] = _json({"type": ltype, "value": lvalue})
    # Notification title: explicit, else a name-like attribute, else a generic label.
    name = (f["title"] or "").strip()
    if not name:
        for key in _NAME_KEYS:
            value = attrs.get(key)
            if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
                name = str(value).strip()
                break
    if not name:
        name = f"Object {thing_id}"
    data["title"] = f["title"] if f["title"] is not None else name
    body = f["description"] or ""
    if not body and action != "create" and attrs_raw:
        body = "\n".join(f"{k}={_attr_text(v)}" for k, v in sorted(attrs_raw.items()))
    if not body:
        pairs = [(k, v) for k, v in attrs.items() if not isinstance(v, dict)]
        pairs.sort(key=lambda kv: (kv[0] not in _NAME_KEYS, kv[0].lower()))
        if pairs:
            body = "Attribute update || " + ", ".join(
                f"{k}: {scalar_text(v)}" for k, v in pairs[:6])
        else:
            body = "Updated"
    data["body"] = body
    return _THING_PREFIX.get(action, "") + name, body


def _attr_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return _json(value)
    return scalar_text(value)


def wakeup_data(data: dict[str, str]) -> dict[str, str]:
    """The small map sent when the full payload exceeds a provider's limit; the device then
    fetches the full payload from /messages/pull."""
    out = {k: data[k] for k in WAKEUP_KEYS if k in data}
    lines = [ln.strip() for ln in data.get("body", "").splitlines() if ln.strip()]
    preview = "\n".join(lines)[:WAKEUP_BODY_CHARS].strip()
    if preview:
        out["body"] = preview
    out["provider_mode"] = "wakeup"
    out["provider_wakeup"] = "1"
    out["_skip_persist"] = "1"
    return out
