"""What the provider mocks share: the server plumbing (TLS, `serving()`, origin, CA file), a
response delay, and the provider-independent faults — refuse the next K streams, GOAWAY, a
dropped or a silent connection after N requests, GOAWAY now, the whole provider down (its
connections cut, new ones closed before TLS) and up again; and for the HTTP/1.1 push-service
mocks (MockWebPush, MockWNS) their scripted answers and the refusal they raise.

"The next K requests" are the next K the handler decides on (the count is exact; which of
several concurrent requests get hit follows handler order, which Trio shuffles). Connection
rules (GOAWAY/drop/silence after N) are decided at dispatch instead, in arrival order. Imports nothing
from pushgo outside pushgo.testing.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from h2.errors import ErrorCodes

from pushgo.testing.exchange import H2Settings, Handler
from pushgo.testing.h2server import H2Server
from pushgo.testing.tls import LocalCA

T = TypeVar("T")


class Countdown(Generic[T]):
    """Queued (count, value) scripts: `take()` returns the value of the first script with
    uses left and spends one use, or None when none is left."""

    def __init__(self) -> None:
        self._scripts: list[list[Any]] = []

    def add(self, count: int, value: T) -> None:
        if count > 0:
            self._scripts.append([count, value])

    def take(self) -> T | None:
        while self._scripts:
            script = self._scripts[0]
            script[0] -= 1
            if script[0] <= 0:
                self._scripts.pop(0)
            value: T = script[1]
            return value
        return None

    def clear(self) -> None:
        self._scripts.clear()

    def __len__(self) -> int:
        return sum(count for count, _ in self._scripts)


class Reject(Exception):
    """A request the mock refuses: the status, a description and an optional Retry-After."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after


@dataclass
class _Answer:
    status: int
    retry_after: int | None
    times: int | None


class ScriptedAnswers:
    """The scripted answers of an HTTP/1.1 push-service mock (MockWebPush, MockWNS): per key
    (a subscription, a channel) for good or the next `times` requests, and for the next N
    requests whatever their key. The description of each is its status's reason phrase."""

    def __init__(self, reasons: Mapping[int, str]) -> None:
        self.reasons = reasons
        self._answers: dict[str, _Answer] = {}
        self._fail: Countdown[tuple[int, int | None]] = Countdown()

    def answer(self, key: str, status: int, *, retry_after: int | None = None,
               times: int | None = None) -> None:
        self._answers[key] = _Answer(status, retry_after, times)

    def fail_next(self, count: int, status: int, retry_after: int | None) -> None:
        self._fail.add(count, (status, retry_after))

    def check_next(self) -> None:
        """Reject when a "next N requests" failure is left (and spend it)."""
        failure = self._fail.take()
        if failure is not None:
            raise Reject(failure[0], self.reasons.get(failure[0], "Scripted failure."), failure[1])

    def check_key(self, key: str) -> None:
        """Reject when `key` has an answer scripted with uses left (and spend one)."""
        scripted = self._answers.get(key)
        if scripted is not None and scripted.times != 0:
            if scripted.times is not None:
                scripted.times -= 1
            raise Reject(scripted.status, self.reasons.get(scripted.status, "Scripted answer."),
                         scripted.retry_after)

    def clear(self) -> None:
        self._answers.clear()
        self._fail.clear()


class ScriptedMock:
    """Base of the provider mocks. Subclasses pass their request handler."""

    def __init__(self, handler: Handler, *, tls: LocalCA | None, host: str, port: int,
                 settings: H2Settings, alpn: tuple[str, ...]) -> None:
        self.tls = tls or LocalCA()
        self.server = H2Server(handler, ssl_context=self.tls.server_context(alpn), host=host, port=port,
                               settings=settings)
        #: seconds to wait before answering each request (slow provider)
        self.delay = 0.0
        self._refuse: Countdown[bool] = Countdown()

    def serving(self) -> AbstractAsyncContextManager[tuple[str, int]]:
        """`async with mock.serving() as (host, port):` — listen until the block exits."""
        return self.server.serving()

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def origin(self) -> str:
        """`https://127.0.0.1:<port>` — the endpoint setting for the gateway."""
        return self.server.origin

    @property
    def ca_file(self) -> Path:
        """The CA PEM the gateway must trust (PUSHGO_PROVIDER_CA_FILE)."""
        return self.tls.ca_file

    # -- provider-independent faults

    def refuse_next(self, count: int = 1) -> None:
        """The next `count` provider requests get RST_STREAM(REFUSED_STREAM) (HTTP/1.1: the
        connection is closed)."""
        self._refuse.add(count, True)

    def goaway_after(self, requests: int, *, debug_data: bytes = b"", error_code: int = ErrorCodes.NO_ERROR,
                     close: bool = True, send_first: bool = False, every_connection: bool = False) -> None:
        """GOAWAY when a connection receives its `requests`-th request (see H2Server.goaway_after)."""
        self.server.goaway_after(requests, error_code=error_code, debug_data=debug_data, close=close,
                                 send_first=send_first, every_connection=every_connection)

    def drop_after(self, requests: int, *, reset: bool = False, every_connection: bool = False) -> None:
        """Close a connection without GOAWAY on its `requests`+1-th request (see H2Server.drop_after)."""
        self.server.drop_after(requests, reset=reset, every_connection=every_connection)

    def silent_after(self, requests: int, *, every_connection: bool = False) -> None:
        """A connection goes silent on its `requests`+1-th request: it reads nothing more and
        never writes again, PING ACKs included (a half-open connection); later connections
        are served normally (see H2Server.silent_after)."""
        self.server.silent_after(requests, every_connection=every_connection)

    def go_down(self) -> None:
        """The provider is down: live connections are cut and new ones closed before TLS (the
        gateway sees its connects fail) until `come_up()`."""
        self.server.go_down()

    def come_up(self) -> None:
        """The provider is back: connections are served again."""
        self.server.come_up()

    def goaway_now(self, *, debug_data: bytes = b"", error_code: int = ErrorCodes.NO_ERROR,
                   close: bool = True, send_first: bool = False) -> None:
        """GOAWAY on every live connection; streams already received are still answered."""
        self.server.goaway_all(error_code=error_code, debug_data=debug_data, close=close,
                               send_first=send_first)

    def reset_faults(self) -> None:
        """Forget delay, refusals and connection rules."""
        self.delay = 0.0
        self._refuse.clear()
        self.server.clear_rules()

    def _refused(self) -> bool:
        return self._refuse.take() is not None
