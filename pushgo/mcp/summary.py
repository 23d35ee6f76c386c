"""What a send did, in words an assistant can relay: the send tools' ``summary`` text and
their structured ``delivery`` field, both read from the delivery status document
(pushgo.service.status): how many devices on which routes, what was sent or failed and
why, and what is still pending and why (a provider unavailable, a private device offline, a
retry after a temporary failure).

Pure: a status document in, words and a dict out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

ROUTE_NAMES = {"apns": "APNs", "fcm": "FCM", "wns": "WNS", "webpush": "Web Push",
               "private": "a private connection"}
REASON_WORDS = {
    "provider_not_configured": "this gateway has no credentials for that provider",
    "expired": "the message expired before it could be delivered",
}


def _route(route: str) -> str:
    return ROUTE_NAMES.get(route, route)


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _when(since: Any) -> str | None:
    if not isinstance(since, (int, float)) or isinstance(since, bool) or since <= 0:
        return None
    seconds = since / 1000 if since > 1e11 else since
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pending(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each route's queued deliveries with why they wait: ``provider_unavailable`` (with the
    provider's last error and since when), ``retrying`` (after a temporary failure),
    ``device_offline`` (private devices not connected) or ``sending`` (on their way)."""
    out: list[dict[str, Any]] = []
    waiting = doc.get("waiting") or {}
    for route, states in sorted(doc["routes"].items()):
        queued = int(states.get("queued", 0))
        if not queued:
            continue
        if route == "private":
            out.append({"route": route, "deliveries": queued, "reason": "device_offline"})
            continue
        why = waiting.get(route)
        explained = 0
        if why is not None:
            item = {"route": route, "deliveries": min(queued, int(why.get("deliveries", queued))),
                    "reason": why.get("state", "retrying")}
            for key in ("last_error", "since", "breaker"):
                if why.get(key) is not None:
                    item[key] = why[key]
            out.append(item)
            explained = item["deliveries"]
        if queued > explained:
            out.append({"route": route, "deliveries": queued - explained, "reason": "sending"})
    return out


def explained(doc: dict[str, Any]) -> bool:
    """Every provider delivery is sent, failed, or waiting for a known reason."""
    return all(p["reason"] != "sending" for p in pending(doc))


def delivery(doc: dict[str, Any]) -> dict[str, Any]:
    """The structured ``delivery`` field of a send tool's result."""
    private_queued = doc["routes"].get("private", {}).get("queued", 0)
    out = {"devices": doc["total"], "routes": doc["routes"], "states": doc["states"],
           "failures": doc["failures"], "pending": pending(doc),
           "done": doc["states"]["queued"] - private_queued == 0
           and not doc["states"].get("scheduled")}
    if "deliver_at" in doc:
        out["deliver_at"] = doc["deliver_at"]
    return out


def _pending_words(item: dict[str, Any]) -> str:
    n, route, reason = item["deliveries"], _route(item["route"]), item["reason"]
    if reason == "device_offline":
        who = "a private device that is" if n == 1 else f"{n} private devices that are"
        return (f"{_n(n, 'delivery waits', 'deliveries wait')} for {who} offline right "
                "now; it gets them when it reconnects, until the message expires.")
    error = f"last error: {item['last_error']}" if item.get("last_error") else None
    if reason == "provider_unavailable":
        since = _when(item.get("since"))
        detail = "; ".join(x for x in (error, f"since {since}" if since else None) if x)
        return (f"{_n(n, 'delivery waits', 'deliveries wait')} because {route} is unavailable"
                f"{f' ({detail})' if detail else ''}; the gateway retries automatically "
                "until the message expires.")
    if reason == "retrying":
        return (f"{_n(n, 'delivery waits', 'deliveries wait')} to be retried on {route} after "
                f"a temporary failure{f' ({error})' if error else ''}.")
    return f"{_n(n, 'delivery is', 'deliveries are')} still on the way to {route}."


def describe(doc: dict[str, Any], channel_id: str) -> str:
    """The ``summary`` text of a send tool's result."""
    total = int(doc["total"])
    if total == 0:
        return (f"Accepted, but no device is subscribed to channel {channel_id}, so nothing "
                "was delivered.")
    per_route = ", ".join(f"{sum(states.values())} via {_route(route)}"
                          for route, states in sorted(doc["routes"].items()))
    parts = [f"Accepted for {_n(total, 'device', 'devices')} on channel {channel_id} "
             f"({per_route})."]
    states = doc["states"]
    if states.get("sent"):
        parts.append(f"{states['sent']} delivered.")
    if doc["failures"]:
        reasons = ", ".join(f"{REASON_WORDS.get(why, why)} ({count})"
                            for why, count in sorted(doc["failures"].items()))
        parts.append(f"{states.get('failed', 0)} failed: {reasons}.")
    if states.get("expired"):
        parts.append(f"{states['expired']} expired before delivery.")
    if states.get("scheduled"):
        when = _when(doc.get("deliver_at")) or "later"
        parts.append(f"{_n(states['scheduled'], 'delivery is', 'deliveries are')} scheduled "
                     f"for {when}; nothing goes out before then, and "
                     "pushgo.operation.cancel can still stop it.")
    if states.get("cancelled"):
        parts.append(f"{states['cancelled']} cancelled before they went out.")
    parts.extend(_pending_words(item) for item in pending(doc))
    return " ".join(parts)
