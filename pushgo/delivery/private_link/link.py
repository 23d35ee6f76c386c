"""What a warp-link session needs of its transport: whole frames in and out.

A transport adapter (WSS binary messages, length-prefixed TCP, a QUIC stream) implements
:class:`Link`; the session owns every deadline, so ``send`` and ``receive`` may block (the
session cancels its read whenever it has something to send).
"""

from __future__ import annotations

from typing import Protocol


class LinkClosed(Exception):
    """The peer went away or the transport broke: the session ends without a reply."""


class FrameRefused(Exception):
    """The transport cannot take the peer's frame (too large, a text message): the session
    ends with an Error frame naming ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Link(Protocol):
    #: The transport's name in metrics and logs: ``wss``, ``tcp`` or ``quic``.
    transport: str
    #: The transport already carried an accepted gateway token (WSS's Bearer header).
    token_accepted: bool

    async def send(self, frame: bytes) -> None:
        """Write one frame; raises :class:`LinkClosed` when the peer is gone."""
        ...

    async def receive(self) -> bytes:
        """The next frame; raises :class:`LinkClosed` at the end, :class:`FrameRefused`
        for a frame the transport cannot take. Safe to cancel: a read cancelled part-way
        through a frame loses nothing, the next call goes on with it."""
        ...
