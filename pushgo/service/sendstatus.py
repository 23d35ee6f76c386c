"""``GET /send_status/{op_id}``: the sender-facing status of one operation, in the words of
PushGo Gateway v1.3 (``provider_queued``, ``sent``/``provider_success``,
``partially_failed``/``provider_failed``), mapped from the delivery status document of
:mod:`pushgo.service.status` (``GET /deliveries/{op_id}``).

The v1.3 release notes name these states and say that ``provider_queued`` means handed to the
provider queue, not delivered, and that ``sent``/``partially_failed`` are written only once the
providers answered; the rest of the answer's shape is not published, so pushgo chooses it:

``{"op_id", "status", "reason", "total", "sent", "failed", "expired", "queued",
"created_at"}`` (and ``channel_id`` when the operation has one), where

- ``status: "accepted"``, ``reason: "no_recipients"`` — nobody was subscribed;
- ``"provider_queued"`` — provider deliveries still wait; ``reason`` is ``provider_queued``,
  or ``provider_unavailable`` / ``retrying`` when the status document says why they wait;
- ``"accepted"``, ``reason: "private_pending"`` — only private-route devices still have to
  fetch it (they may stay offline for the whole TTL: not a provider failure);
- ``"sent"``, ``"provider_success"`` — every delivery went out;
- ``"partially_failed"``, ``"provider_failed"`` — some went out, some failed or expired;
- ``"failed"``, ``"provider_failed"`` (or ``"expired"`` when none was rejected) — none went
  out;
- ``"scheduled"``, ``reason: "deliver_at"`` — a scheduled send whose time has not come
  (``deliver_at`` and ``scheduled`` say when and how many);
- ``"cancelled"``, ``reason: "cancelled"`` — cancelled before any delivery went out
  (``cancelled`` counts them; a partly cancelled send keeps the status of the rest).

Pure: takes the document, returns the answer. Must not import pushgo.api or starlette.
"""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]


def _pending(doc: Doc) -> tuple[str, str] | None:
    states = doc["states"]
    private_queued = doc["routes"].get("private", {}).get("queued", 0)
    if states["queued"] - private_queued > 0:
        reasons = {w.get("state") for w in (doc.get("waiting") or {}).values()}
        for why in ("provider_unavailable", "retrying"):
            if why in reasons:
                return "provider_queued", why
        return "provider_queued", "provider_queued"
    if private_queued:
        return "accepted", "private_pending"
    return None


def send_status(doc: Doc) -> Doc:
    """The v1.3 send status of a delivery status document."""
    states = doc["states"]
    sent, failed, expired = states["sent"], states["failed"], states.get("expired", 0)
    scheduled, cancelled = states.get("scheduled", 0), states.get("cancelled", 0)
    if doc["total"] == 0:
        status, reason = "accepted", "no_recipients"
    elif scheduled:
        status, reason = "scheduled", "deliver_at"
    elif cancelled == doc["total"]:
        status, reason = "cancelled", "cancelled"
    elif (pending := _pending(doc)) is not None:
        status, reason = pending
    elif failed == 0 and expired == 0 and sent:
        status, reason = "sent", "provider_success"
    elif sent:
        status, reason = "partially_failed", "provider_failed"
    else:
        status, reason = "failed", "provider_failed" if failed else "expired"
    out: Doc = {"op_id": doc["op_id"], "status": status, "reason": reason,
                "total": doc["total"], "sent": sent, "failed": failed, "expired": expired,
                "queued": states["queued"], "created_at": doc["created_at"]}
    if "channel_id" in doc:
        out["channel_id"] = doc["channel_id"]
    if "deliver_at" in doc:
        out["deliver_at"] = doc["deliver_at"]
    if scheduled:
        out["scheduled"] = scheduled
    if cancelled:
        out["cancelled"] = cancelled
    return out
