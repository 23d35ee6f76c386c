"""What every service shares: settings, the store, the password verifier, the clock, and the
listener told about accepted work (the private-stream hub, later the dispatcher).

Must not import pushgo.api, pushgo.mcp or starlette.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pushgo.protocol.ids import hex_id
from pushgo.service.passwords import PasswordVerifier
from pushgo.settings import Settings
from pushgo.store import Store


class DeliveryListener(Protocol):
    """Told, after commit, that work is waiting. Must not block."""

    def operation_accepted(self, channel_id: str) -> None: ...

    def subscriptions_changed(self, device_key: str) -> None: ...


class NullListener:
    def operation_accepted(self, channel_id: str) -> None:
        pass

    def subscriptions_changed(self, device_key: str) -> None:
        pass


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def new_hex_id() -> str:
    return hex_id(secrets.token_bytes(16))


@dataclass
class Context:
    settings: Settings
    store: Store
    verifier: PasswordVerifier = field(default_factory=PasswordVerifier)
    listeners: list[DeliveryListener] = field(default_factory=list)
    clock: Callable[[], int] = wall_ms

    def now(self) -> int:
        return self.clock()

    def accepted(self, channel_id: str) -> None:
        for listener in self.listeners:
            listener.operation_accepted(channel_id)

    def subscriptions_changed(self, device_key: str) -> None:
        for listener in self.listeners:
            listener.subscriptions_changed(device_key)

    @property
    def default_ttl_ms(self) -> int:
        return self.settings.private_ttl_s * 1000
