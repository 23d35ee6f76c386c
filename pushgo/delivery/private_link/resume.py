"""Session continuity across reconnects, as PushGo Gateway v1.2.9 keeps it: per device a resume
token and the Deliver frames sent but not yet acknowledged (by seq). An app that comes back
with its token and ``last_acked_seq`` had acknowledged every one of those up to that seq, even
if the Ack frames were lost with the old connection: they are acknowledged then. A wrong or
missing token, or a seq never sent, starts afresh (nothing is acknowledged on its word).

In memory, per process, bounded: ``max_devices`` books (least recently used go first), each at
most ``max_sent`` entries (the oldest go first: they are simply sent again). Pure: no I/O."""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class _Book:
    token: str
    sent: dict[str, int] = field(default_factory=dict)  # delivery_id → seq, oldest first
    high: int = 0  # the highest seq handed out under this token


class ResumeBooks:
    def __init__(self, max_devices: int = 16384, max_sent: int = 200) -> None:
        self.max_devices = max_devices
        self.max_sent = max_sent
        self._books: OrderedDict[str, _Book] = OrderedDict()

    def begin(self, device_key: str, token: str | None,
              last_acked_seq: int | None) -> tuple[str, list[str]]:
        """A new session of the device: the resume token to hand out and the delivery ids the
        app's ``last_acked_seq`` acknowledges."""
        book = self._books.get(device_key)
        given = (token or "").strip()
        if (book is None or not given
                or not hmac.compare_digest(given.encode(), book.token.encode())
                or (last_acked_seq or 0) > book.high):
            book = _Book(secrets.token_urlsafe(18))
            acked: list[str] = []
        else:
            limit = last_acked_seq or 0
            acked = [d for d, seq in book.sent.items() if seq <= limit]
            for delivery_id in acked:
                del book.sent[delivery_id]
        self._books[device_key] = book
        self._books.move_to_end(device_key)
        while len(self._books) > self.max_devices:
            self._books.popitem(last=False)
        return book.token, acked

    def sent(self, device_key: str, delivery_id: str, seq: int) -> None:
        book = self._books.get(device_key)
        if book is None:
            return
        book.sent.pop(delivery_id, None)
        book.sent[delivery_id] = seq
        book.high = max(book.high, seq)
        while len(book.sent) > self.max_sent:
            del book.sent[next(iter(book.sent))]

    def acked(self, device_key: str, delivery_id: str) -> None:
        book = self._books.get(device_key)
        if book is not None:
            book.sent.pop(delivery_id, None)
