"""MockWNS: a real HTTP/1.1-over-TLS peer for Windows Push Notification Services — the OAuth
token endpoint (`POST /accesstoken.srf`, client-credentials grant with the app's package SID
and secret) and the notification endpoint (a `POST` to a channel URI's path and query).

The gateway reaches it through `PUSHGO_WNS_ENDPOINT` (every channel URI's scheme, host and
port replaced by this origin), so tests register real-looking channel URIs
(`mock.channel_uri()`, `https://<region>.notify.windows.com/w/?token=…`) and the mock knows a
channel by the URI's path and query.

Owns: the token endpoint (its tokens an `AccessTokens` table), the request rules of a raw
notification (Bearer token issued here, `X-WNS-Type: wns/raw`, `application/octet-stream`,
`X-WNS-Priority` 1-4, `X-WNS-TTL` seconds, a body under 5 KB), its own reading of the body's
binary map (entry count, then length-prefixed UTF-8 keys and values, LEB128 varints), scripted
answers per channel (410 expired, 404 unknown, any status) and for the next N requests (406
throttled with `Retry-After`, 5xx), the records and a CLI:

    python -m pushgo.testing.mock_wns --port 0

Imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio

from pushgo.protocol.ids import is_digits
from pushgo.testing.access_tokens import AccessTokens
from pushgo.testing.exchange import H2Settings, Outcome, Request, ResetStream, Response, json_response
from pushgo.testing.records import Recorder
from pushgo.testing.scripted import Reject, ScriptedAnswers, ScriptedMock
from pushgo.testing.tls import LocalCA

LOGIN_PATH = "/accesstoken.srf"
SCOPES = frozenset({"notify.windows.com", "https://wns.notify.windows.com/.default"})
MAX_BODY = 5120  # a raw notification's body must be shorter
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 406: "Not Acceptable", 410: "Gone",
           413: "Request Entity Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}


def channel_key(uri: str) -> str:
    """How the mock names a channel: the URI's path and query."""
    parts = urlsplit(uri)
    return (parts.path or "/") + ("?" + parts.query if parts.query else "")


def read_map(body: bytes) -> dict[str, str]:
    """The body's map; ValueError when it is not exactly one well-formed map."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(body) or shift > 63:
                raise ValueError("bad varint")
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def text() -> str:
        nonlocal pos
        n = varint()
        if pos + n > len(body):
            raise ValueError("truncated string")
        pos += n
        return body[pos - n:pos].decode("utf-8")

    out: dict[str, str] = {}
    for _ in range(varint()):
        key = text()
        out[key] = text()
    if pos != len(body):
        raise ValueError("trailing bytes")
    return out


@dataclass(frozen=True)
class TokenGrant:
    """One request to the token endpoint; `access_token` is None when it was refused."""

    status: int
    error: str | None
    access_token: str | None
    scope: str


@dataclass(frozen=True)
class WNSNotification:
    """One notification request as MockWNS saw and answered it (`status` None: the connection
    was closed instead)."""

    channel: str  # the channel URI's path and query
    headers: dict[str, str]
    body: bytes
    connection_id: int
    status: int | None
    error: str | None

    @property
    def accepted(self) -> bool:
        return self.status == 200

    @property
    def data(self) -> dict[str, str]:
        """The map the body carries ({} when it is not one)."""
        try:
            return read_map(self.body)
        except (ValueError, UnicodeDecodeError):
            return {}


class MockWNS(ScriptedMock):
    """Mock WNS + its token endpoint. `async with mock.serving():`, then `mock.settings()` are
    the gateway's settings (field names) and `mock.env()` the same as variables."""

    def __init__(self, *, client_id: str = "ms-app://s-1-15-2-1234567890-pushgo-test",
                 client_secret: str | None = None, tls: LocalCA | None = None,
                 host: str = "127.0.0.1", port: int = 0, access_token_lifetime: int = 86400,
                 clock: Callable[[], float] = time.time, check_auth: bool = True,
                 on_notification: Callable[[WNSNotification], None] | None = None) -> None:
        super().__init__(self._handle, tls=tls, host=host, port=port, settings=H2Settings(),
                         alpn=("http/1.1",))
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.access_token_lifetime = access_token_lifetime
        self.clock = clock
        #: False: any Bearer token is accepted on notifications
        self.check_auth = check_auth
        self.on_notification = on_notification
        self.notifications: Recorder[WNSNotification] = Recorder()
        self.token_grants: Recorder[TokenGrant] = Recorder()
        self._access_tokens = AccessTokens("EgAcAQMAAAAALYAAY/mock", lambda: self.clock())
        self._answers = ScriptedAnswers(REASONS)

    @property
    def token_url(self) -> str:
        return self.origin + LOGIN_PATH

    def settings(self, ca_file: str | Path | None = None) -> dict[str, str]:
        """Gateway settings (Settings field names) pointing at this mock."""
        return {"wns_endpoint": self.origin, "wns_token_url": self.token_url,
                "wns_client_id": self.client_id, "wns_client_secret": self.client_secret,
                "provider_ca_file": str(ca_file or self.ca_file)}

    def env(self, ca_file: str | Path | None = None) -> dict[str, str]:
        """The same as PUSHGO_* variables."""
        return {"PUSHGO_" + k.upper(): v for k, v in self.settings(ca_file).items()}

    @staticmethod
    def channel_uri(region: str = "wns2-db5p") -> str:
        """A fresh channel URI as Windows hands one to an app."""
        token = secrets.token_urlsafe(64)
        return f"https://{region}.notify.windows.com/w/?token=AwYAAAB{token}%2bQ%3d%3d"

    # -- configuration at runtime

    def issue_access_token(self, lifetime: float | None = None) -> str:
        return self._access_tokens.issue(self.access_token_lifetime if lifetime is None
                                         else lifetime)

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401)."""
        self._access_tokens.revoke()

    def answer(self, channel_uri: str, status: int, *, retry_after: int | None = None,
               times: int | None = None) -> None:
        """Answer notifications to this channel (all, or the next `times`) with `status`."""
        self._answers.answer(channel_key(channel_uri), status, retry_after=retry_after, times=times)

    def expire(self, channel_uri: str) -> None:
        """The channel expired: 410 Gone."""
        self.answer(channel_uri, 410)

    def forget(self, channel_uri: str) -> None:
        """WNS does not know the channel: 404 Not Found."""
        self.answer(channel_uri, 404)

    def fail_next(self, count: int = 1, status: int = 503, *,
                  retry_after: int | None = None) -> None:
        """The next `count` notifications get `status` (503, 500, 406, 429…)."""
        self._answers.fail_next(count, status, retry_after)

    def throttle_next(self, count: int = 1, retry_after: int | None = 1) -> None:
        """The next `count` notifications get 406 Not Acceptable (throttled)."""
        self.fail_next(count, 406, retry_after=retry_after)

    def reset_behaviours(self) -> None:
        self._answers.clear()
        self.reset_faults()

    @property
    def accepted(self) -> list[WNSNotification]:
        return self.notifications.matching(lambda n: n.accepted)

    async def wait_for(self, count: int = 1,
                       predicate: Callable[[WNSNotification], bool] | None = None, *,
                       within: float = 5.0) -> list[WNSNotification]:
        return await self.notifications.wait_for(count, predicate, within=within)

    # -- dispatch

    async def _handle(self, req: Request) -> Outcome:
        if req.path.split("?", 1)[0] == LOGIN_PATH:
            return self._token_endpoint(req)
        headers = {k: v for k, v in reversed(req.headers)}
        if self._refused():
            self._keep(WNSNotification(req.path, headers, req.body, req.connection_id, None, None))
            return ResetStream()
        try:
            self._check(req)
        except Reject as rej:
            response = _error(rej)
            note = WNSNotification(req.path, headers, req.body, req.connection_id, rej.status,
                                   rej.description)
        else:
            response = Response(200, [("x-wns-status", "received"),
                                      ("x-wns-msg-id", secrets.token_hex(8)),
                                      ("x-wns-debug-trace", "MOCK")])
            note = WNSNotification(req.path, headers, req.body, req.connection_id, 200, None)
        if self.delay > 0:
            await anyio.sleep(self.delay)
        self._keep(note)
        return response

    def _keep(self, note: WNSNotification) -> None:
        self.notifications.append(note)
        if self.on_notification is not None:
            self.on_notification(note)

    def _check(self, req: Request) -> None:
        if req.method != "POST":
            raise Reject(405, "Only POST is allowed.")
        self._answers.check_next()
        self._check_bearer(req.header("authorization"))
        if req.header("x-wns-type") != "wns/raw":
            raise Reject(400, "X-WNS-Type must be wns/raw here.")
        if req.header("content-type") != "application/octet-stream":
            raise Reject(400, "A raw notification must be application/octet-stream.")
        priority = req.header("x-wns-priority")
        if priority is not None and priority not in ("1", "2", "3", "4"):
            raise Reject(400, "X-WNS-Priority must be 1 to 4.")
        ttl = req.header("x-wns-ttl")
        if ttl is not None and not is_digits(ttl):
            raise Reject(400, "X-WNS-TTL must be a number of seconds.")
        if len(req.body) >= MAX_BODY:
            raise Reject(413, "The notification payload exceeds the size limit.")
        self._answers.check_key(req.path)

    def _check_bearer(self, authorization: str | None) -> None:
        if self._access_tokens.accepts(authorization, check=self.check_auth):
            return
        raise Reject(401, "The access token is missing, invalid or expired.")

    # -- the OAuth token endpoint

    def _token_endpoint(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        scope = form.get("scope", "")
        error: str | None = None
        if req.method != "POST":
            error = "invalid_request"
        elif form.get("grant_type") != "client_credentials":
            error = "unsupported_grant_type"
        elif (form.get("client_id") != self.client_id
              or not hmac.compare_digest(form.get("client_secret", "").encode(),
                                         self.client_secret.encode())):
            error = "invalid_client"
        elif scope not in SCOPES:
            error = "invalid_scope"
        if error is not None:
            self.token_grants.append(TokenGrant(400, error, None, scope))
            return json_response(400, {"error": error, "error_description": "Refused."})
        token = self.issue_access_token()
        self.token_grants.append(TokenGrant(200, None, token, scope))
        return json_response(200, {"access_token": token, "token_type": "bearer",
                                   "expires_in": self.access_token_lifetime},
                             [("cache-control", "no-store")])


def _error(rej: Reject) -> Response:
    headers = [("x-wns-error-description", rej.description), ("x-wns-debug-trace", "MOCK")]
    if rej.retry_after is not None:
        headers.append(("retry-after", str(rej.retry_after)))
    return Response(rej.status, headers)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Run a MockWNS until Ctrl-C or SIGTERM (exit 0); print the gateway settings that point
    at it, one `export` line each (register channel URIs as
    https://<x>.notify.windows.com/…: PUSHGO_WNS_ENDPOINT sends them here)."""
    import argparse
    import sys

    from pushgo.testing import mockcli

    parser = argparse.ArgumentParser(prog="python -m pushgo.testing.mock_wns",
                                     description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="do not log each notification")
    mockcli.add_common_arguments(parser)
    args = parser.parse_args(argv)

    def log(note: WNSNotification) -> None:
        print(f"{note.status or 'CLOSED'} channel={note.channel[:32]}… "
              f"{json.dumps(note.data, ensure_ascii=False)[:120]}", file=sys.stderr, flush=True)

    mock = MockWNS(host=args.host, port=args.port, tls=mockcli.shared_ca(args),
                   on_notification=None if args.quiet else log)

    async def run() -> None:
        async with mock.serving():
            print(f"# a channel URI to register: {mock.channel_uri()}")
            mockcli.print_settings(mock.env())
            await mockcli.until_signal()

    return mockcli.run(run, args.backend)


if __name__ == "__main__":
    raise SystemExit(main())
