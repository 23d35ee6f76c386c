"""What a provider answered about one notification, as values shared by the APNs and FCM
answer tables (``apns.interpret``, ``fcm.interpret``), the provider senders and the outbox
pump: a rejection is a value, never an exception.

Pure: imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: What a rejection asks of the caller: forget the device token, try again later, renew the
#: provider credential, or give up on this delivery.
Kind = Literal["dead_token", "retry", "provider_token", "permanent"]


@dataclass(frozen=True, slots=True)
class Delivered:
    """The provider took the notification. ``provider_id`` is its name for it (the APNs
    ``apns-id``, the FCM message name)."""

    provider_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    status: int
    kind: Kind
    timestamp_ms: int | None = None
    retry_after_s: float | None = None


ProviderOutcome = Delivered | Rejected


def retry_after(raw: bytes | None) -> float | None:
    """A ``retry-after`` header in seconds (0 to an hour), or None when absent or odd."""
    if not raw:
        return None
    try:
        value = float(raw.decode().strip())
    except (ValueError, UnicodeDecodeError):
        return None
    return value if 0 <= value <= 3600 else None
