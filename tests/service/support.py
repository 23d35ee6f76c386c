"""What the service-layer tests share: a settable clock, a listener that records what it was
told, and short ways to make devices, channels and messages through the services."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from pushgo.errors import GatewayError
from pushgo.protocol import wire
from pushgo.protocol.operations import MessageIn, OpSpec, message_spec
from pushgo.service import Services

PASSWORD = "secret-pass-1"
#: 2023-11-14T22:13:20Z: any fixed instant; tests move it with ``Clock.advance``.
T0 = 1_700_000_000_000
APNS_TOKEN = "ab" * 32
FCM_TOKEN = "fcm-token-" + "x" * 20


class Clock:
    """The gateway clock (ms) as a test sets it."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclass
class Recorder:
    """A DeliveryListener that keeps what it was told."""

    accepted: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def operation_accepted(self, channel_id: str) -> None:
        self.accepted.append(channel_id)

    def subscriptions_changed(self, device_key: str) -> None:
        self.changed.append(device_key)


async def device(svc: Services, platform: str = "android", route: str = "private",
                 token: str | None = None) -> str:
    """A registered device on ``route`` (with ``token`` for a provider route)."""
    key = (await svc.devices.register(wire.DeviceRegisterIn(platform=platform))).device_key
    if route != "private" or token is not None:
        await svc.devices.set_route(wire.DeviceRouteIn(device_key=key, channel_type=route,
                                                    provider_token=token))
    return key


async def channel(svc: Services, *keys: str, name: str = "ops",
                  password: str = PASSWORD) -> str:
    """A channel made by its first device subscribing by name; the others join by id."""
    first, *rest = keys or (await device(svc),)
    out = await svc.channels.subscribe(wire.SubscribeIn(device_key=first, channel_name=name,
                                                     password=password))
    for key in rest:
        await svc.channels.subscribe(wire.SubscribeIn(device_key=key, channel_id=out.channel_id,
                                                   password=password))
    return out.channel_id


def message(channel_id: str, *, op_id: str | None = None, title: str = "hello",
            **fields: Any) -> OpSpec:
    return message_spec(MessageIn(channel_id=channel_id, op_id=op_id, title=title, **fields))


async def subscribed(svc: Services, device_key: str) -> set[str]:
    from pushgo.store import channels as channel_store

    return set(await svc.ctx.store.read(channel_store.subscribed_channels, device_key))


@contextmanager
def fails(code: str, status: int = 400) -> Iterator[pytest.ExceptionInfo[GatewayError]]:
    """The block raises a GatewayError with exactly this error_code and HTTP status."""
    with pytest.raises(GatewayError) as caught:
        yield caught
    assert (caught.value.code, caught.value.status) == (code, status), repr(caught.value)
