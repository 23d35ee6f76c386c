"""FCM HTTP v1: request building (data-only messages) and error mapping.

Pure: the access token and time are passed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pushgo.protocol.h2headers import encode_header, encode_headers
from pushgo.protocol.outcomes import Delivered, Kind, ProviderOutcome, Rejected, retry_after

PAYLOAD_LIMIT = 4096
HOST = "fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
#: FCM keeps a message at most 4 weeks.
MAX_TTL_S = 28 * 24 * 3600

#: FCM errorCode / status → what to do
ERRORS: dict[str, Kind] = {
    "UNREGISTERED": "dead_token",
    "SENDER_ID_MISMATCH": "dead_token",
    "INVALID_ARGUMENT": "permanent",
    "THIRD_PARTY_AUTH_ERROR": "permanent",
    "QUOTA_EXCEEDED": "retry",
    "UNAVAILABLE": "retry",
    "INTERNAL": "retry",
    "UNAUTHENTICATED": "provider_token",
    "NOT_FOUND": "dead_token",
    "RESOURCE_EXHAUSTED": "retry",
    "PERMISSION_DENIED": "permanent",
}


def interpret(status: int, headers: dict[bytes, bytes], body: bytes) -> ProviderOutcome:
    if status == 200:
        try:
            name = str(json.loads(body).get("name", ""))
        except (ValueError, AttributeError):
            name = ""
        return Delivered(name)
    code = ""
    try:
        err = json.loads(body).get("error", {})
        code = str(err.get("status") or "")
        for detail in err.get("details") or []:
            if isinstance(detail, dict) and detail.get("errorCode"):
                code = str(detail["errorCode"])
                break
    except (ValueError, AttributeError):
        pass
    by_status: dict[int, Kind] = {401: "provider_token", 404: "dead_token", 429: "retry"}
    kind: Kind = ERRORS.get(code) or by_status.get(status) or (
        "retry" if status >= 500 else "permanent")
    return Rejected(code or f"HTTP {status}", status, kind, None,
                    retry_after(headers.get(b"retry-after")))


class HeaderBuilder:
    """The header block for one (authority, project, access token), encoded once per token."""

    def __init__(self, authority: str, project_id: str, access_token: str) -> None:
        self.access_token = access_token
        path = f"/v1/projects/{project_id}/messages:send".encode()
        self.block = encode_headers([
            (b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority.encode()),
            (b":path", path), (b"authorization", b"Bearer " + access_token.encode()),
            (b"content-type", b"application/json"),
        ])

    def with_length(self, n: int) -> bytes:
        return self.block + encode_header(b"content-length", str(n).encode())


def data_json(data: dict[str, str]) -> str:
    return json.dumps({k: v for k, v in data.items() if k != "delivery_id"},
                      separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """Data (without delivery_id) pre-encoded once per operation; per device only the token,
    delivery id and remaining TTL change."""

    data_json: str  # '{"k":"v",...}'
    priority: str  # HIGH | NORMAL
    wakeup: bool

    def render(self, token: str, delivery_id: str, ttl_s: int | None,
               device_key: str | None = None) -> bytes:
        """One device's request; a direct (not wake-up) message names the device
        (``provider_device_key``) for the v1.3 apps' acknowledgement."""
        rest = self.data_json[1:]
        ident = '{"delivery_id":"' + delivery_id + '"'
        if device_key is not None and not self.wakeup:
            ident += ',"provider_device_key":' + json.dumps(device_key, ensure_ascii=False)
        data = ident + ("," + rest if rest != "}" else "}")
        android = '{"priority":"' + self.priority + '"'
        if ttl_s is not None:
            android += ',"ttl":"' + str(max(0, min(ttl_s, MAX_TTL_S))) + 's"'
        android += "}"
        return ('{"message":{"token":' + json.dumps(token) + ',"data":' + data
                + ',"android":' + android + "}}").encode()
