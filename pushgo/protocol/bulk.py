"""POST /messages/bulk on the wire: the body's framing (NDJSON lines or the elements of one
JSON array, split incrementally with a bounded item size), one operation per item, and the
NDJSON result lines.

An item is a JSON object. ``type`` picks the operation (``message`` when absent, or
``event.create|update|close``, ``thing.create|update|archive|delete``) and the rest are the
fields of the matching HTTP route, ``channel_id`` and ``password`` included. A direct send is
a message with ``route`` (``apns`` or ``fcm``) and ``tokens`` instead of a channel, or with
``route`` ``webpush`` and ``subscriptions`` (browser subscriptions, each the
``{"endpoint", "keys": {"p256dh", "auth"}}`` object of ``PushSubscription.toJSON()``).

Pure: bytes in, frames and values out; no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from pushgo.protocol import errors as codes
from pushgo.protocol import fields as field_rules
from pushgo.protocol import jsondepth
from pushgo.protocol import operations as OPS
from pushgo.protocol import webpush as WEB
from pushgo.protocol.ids import is_token_id

#: Longest item (line or array element) accepted, in bytes.
MAX_ITEM_BYTES = 512 * 1024
#: Most tokens in one direct send.
MAX_TOKENS = 1000
DIRECT_ROUTES = ("apns", "fcm", "webpush")
DIRECT_PREFIX = "@"

#: ``type`` → (route of the operation, request Struct)
KINDS: dict[str, type[Any]] = {
    "message": OPS.MessageIn,
    **{f"event.{a}": k for a, k in OPS.EVENT_ACTIONS.items()},
    **{f"thing.{a}": k for a, k in OPS.THING_ACTIONS.items()},
}


# --------------------------------------------------------------------------- framing


@dataclass(frozen=True, slots=True)
class TooLong:
    """An item longer than the limit; its bytes were skipped, not kept."""

    size: int


@dataclass(frozen=True, slots=True)
class Broken:
    """The array itself is malformed: nothing after this point can be split reliably."""

    message: str


Frame = bytes | TooLong | Broken


class LineSplitter:
    """NDJSON: one item per line (``\\n``, optional ``\\r``); blank lines are skipped."""

    def __init__(self, max_item: int = MAX_ITEM_BYTES) -> None:
        self.max_item = max_item
        self._buf = bytearray()
        self._skipped = -1  # bytes of an over-long line skipped so far, -1: not skipping

    def feed(self, chunk: bytes) -> Iterator[Frame]:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            piece = chunk[start:nl]
            start = nl + 1
            if self._skipped >= 0:
                size = self._skipped + len(piece)
                self._skipped = -1
                yield TooLong(size)
                continue
            if self._buf:
                self._buf += piece
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = piece
            frame = self._finish(line)
            if frame is not None:
                yield frame
        rest = chunk[start:]
        if self._skipped >= 0:
            self._skipped += len(rest)
        elif len(self._buf) + len(rest) > self.max_item + 1:  # +1: a trailing \r
            self._skipped = len(self._buf) + len(rest)
            self._buf.clear()
        else:
            self._buf += rest

    def end(self) -> Iterator[Frame]:
        if self._skipped >= 0:
            yield TooLong(self._skipped)
        elif self._buf:
            frame = self._finish(bytes(self._buf))
            self._buf.clear()
            if frame is not None:
                yield frame

    def _finish(self, line: bytes) -> Frame | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return None
        if len(line) > self.max_item:
            return TooLong(len(line))
        return line


_STRUCTURAL = re.compile(rb'["{}\[\],]')
_IN_STRING = re.compile(rb'["\\]')
_WS = b" \t\r\n"


class ArraySplitter:
    """The elements of one top-level JSON array, each as its own bytes, without holding the
    array: only the element being read is buffered (up to the limit; past it the element is
    scanned and dropped). Element syntax is left to the decoder; a broken array structure
    ends the split with :class:`Broken`."""

    def __init__(self, max_item: int = MAX_ITEM_BYTES) -> None:
        self.max_item = max_item
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = -1  # start of the element being read, -1 between elements
        self._state = "open"  # open → items → closed; "broken" after an error
        self._expect = True  # after "[" or ",": an element must come next
        self._count = 0
        self._depth = 0
        self._in_string = False
        self._dropped = 0  # bytes of the current element already dropped (too long)

    def feed(self, chunk: bytes) -> Iterator[Frame]:
        if self._state == "broken":
            return
        self._buf += chunk
        yield from self._scan()
        self._compact()

    def end(self) -> Iterator[Frame]:
        if self._state == "broken":
            return
        if self._state == "open" and not bytes(self._buf[self._pos:]).strip(_WS):
            return  # an empty body: no items
        if self._state != "closed":
            self._state = "broken"
            yield Broken("the JSON array ends before its closing ]")

    def _fail(self, message: str) -> Broken:
        self._state = "broken"
        return Broken(message)

    def _skip_ws(self) -> bool:
        buf, pos = self._buf, self._pos
        while pos < len(buf) and buf[pos] in _WS:
            pos += 1
        self._pos = pos
        return pos < len(buf)

    def _scan(self) -> Iterator[Frame]:
        buf = self._buf
        while True:
            if self._state == "open":
                if not self._skip_ws():
                    return
                if buf[self._pos] != 0x5B:  # [
                    yield self._fail("the body must be a JSON array of operations (or NDJSON "
                                     "with content-type application/x-ndjson)")
                    return
                self._pos += 1
                self._state = "items"
                continue
            if self._state == "closed":
                if self._skip_ws():
                    yield self._fail("unexpected data after the JSON array")
                return
            if self._state == "broken":
                return
            if self._start < 0:
                if not self._skip_ws():
                    return
                ch = buf[self._pos]
                if ch == 0x5D:  # ]
                    if self._expect and self._count:
                        yield self._fail("expected an operation after ','")
                        return
                    self._pos += 1
                    self._state = "closed"
                    continue
                if ch == 0x2C:  # ,
                    if self._expect:
                        yield self._fail("expected an operation, found ','")
                        return
                    self._expect = True
                    self._pos += 1
                    continue
                if not self._expect:
                    yield self._fail("expected ',' or ']' between operations")
                    return
                self._start, self._depth, self._in_string = self._pos, 0, False
                self._expect = False
                self._dropped = 0
            frame = self._scan_element()
            if frame is None:
                return
            if isinstance(frame, Broken):
                yield frame
                return
            self._count += 1
            yield frame

    def _scan_element(self) -> Frame | None:
        """Scan on from ``_pos``; the element's frame once it ends, None for more input."""
        buf = self._buf
        while True:
            if self._in_string:
                m = _IN_STRING.search(buf, self._pos)
                if m is None:
                    self._pos = len(buf)
                    return None
                if m.group() == b"\\":
                    if m.end() >= len(buf):
                        self._pos = m.start()
                        return None
                    self._pos = m.end() + 1
                    continue
                self._in_string = False
                self._pos = m.end()
                continue
            m = _STRUCTURAL.search(buf, self._pos)
            if m is None:
                self._pos = len(buf)
                return None
            ch = m.group()
            if ch == b'"':
                self._in_string = True
                self._pos = m.end()
            elif ch in (b"{", b"["):
                self._depth += 1
                self._pos = m.end()
            elif ch in (b"}", b"]"):
                if self._depth == 0:
                    if ch == b"}":
                        return self._fail("unbalanced '}' in the JSON array")
                    return self._element(m.start())  # a scalar element, then the array's ]
                self._depth -= 1
                self._pos = m.end()
                if self._depth == 0:
                    return self._element(m.end())
            else:  # ,
                if self._depth == 0:
                    return self._element(m.start())
                self._pos = m.end()

    def _element(self, stop: int) -> Frame:
        raw = bytes(self._buf[self._start:stop])
        size = self._dropped + len(raw)
        self._pos = stop
        self._start = -1
        if self._dropped or size > self.max_item:
            return TooLong(size)
        return raw.strip(_WS)

    def _compact(self) -> None:
        buf = self._buf
        if self._start >= 0:
            keep_from = self._start
            if self._pos - self._start > self.max_item:
                # Too long already: drop what was scanned, keep only the scanner's state.
                self._dropped += self._pos - self._start
                keep_from = self._pos
                self._start = self._pos
        else:
            keep_from = self._pos
        if keep_from:
            del buf[:keep_from]
            self._pos -= keep_from
            if self._start >= 0:
                self._start -= keep_from


# --------------------------------------------------------------------------- items


class DirectIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A message straight to provider tokens: the message fields without a channel."""

    route: str
    tokens: list[str] | None = None
    #: route ``webpush``: the browsers' subscriptions (objects, not JSON strings)
    subscriptions: list[Any] | None = None
    #: The app whose credentials send it (pushgo.protocol.apps); absent: ``default``.
    app: str | None = None
    title: str
    op_id: str | None = None
    body: str | None = None
    occurred_at: OPS.Ts = None
    severity: str | None = None
    ttl: OPS.Ts = None
    url: str | None = None
    images: list[str] = msgspec.field(default_factory=list)
    ciphertext: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: OPS.Meta = None
    deliver_at: OPS.Ts = None


@dataclass(frozen=True)
class Item:
    """One decoded operation: what it is (``type``) and its validated spec. For a direct
    send, ``route`` and ``tokens`` (deduplicated, in order); for a channel send, the
    ``password`` given (None: the gateway token must authorise it)."""

    type: str
    spec: OPS.OpSpec
    password: str | None = None
    route: str | None = None
    tokens: tuple[str, ...] = ()
    app: str | None = None


class ItemError(field_rules.FieldError):
    """An item that cannot be an operation; ``op_id`` is kept when it could be read."""

    def __init__(self, code: codes.ErrorCode, message: str, op_id: str | None = None) -> None:
        super().__init__(code, message)
        self.op_id = op_id


_generic = msgspec.json.Decoder()


def decode_item(raw: bytes, *, allow_local: bool = False) -> Item:
    """Decode and validate one item; every failure is an :class:`ItemError` (a FieldError).
    ``allow_local``: Web Push endpoints on loopback or private hosts are accepted (the
    gateway's ``webpush_allow_loopback``, for tests against a local push service)."""
    try:
        jsondepth.check(raw)
        doc = _generic.decode(raw)
    except jsondepth.TooDeep as exc:
        raise ItemError(codes.JSON_TOO_DEEP, f"invalid JSON: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ItemError(codes.INVALID_JSON_SYNTAX, f"invalid JSON syntax: {exc}") from None
    except RecursionError:  # the depth check above keeps msgspec well short of this
        raise ItemError(codes.JSON_TOO_DEEP, "invalid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ItemError(codes.INVALID_JSON_DATA, "each operation must be a JSON object")
    raw_op = doc.get("op_id")
    op_id = raw_op if isinstance(raw_op, str) and is_token_id(raw_op, field_rules.OP_ID_MAX) else None
    try:
        if b"\\u0000" in raw and _has_nul(doc):
            raise ItemError(codes.INVALID_JSON_DATA, "strings must not contain U+0000")
        return _item(doc, allow_local)
    except ItemError as exc:
        exc.op_id = op_id
        raise
    except field_rules.FieldError as exc:
        raise ItemError(exc.error, exc.message, op_id) from None


def _item(doc: dict[str, Any], allow_local: bool) -> Item:
    kind = doc.pop("type", "message")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ItemError(codes.INVALID_OPERATION_TYPE,
                        "type must be one of " + ", ".join(KINDS))
    if "route" in doc or "tokens" in doc or "subscriptions" in doc:
        if kind != "message":
            raise ItemError(codes.INVALID_OPERATION_TYPE, "a direct send (route + tokens) can "
                            "only be a message")
        req = _convert(doc, DirectIn)
        route, tokens = direct_target(req.route, req.tokens, req.subscriptions,
                                      allow_local=allow_local)
        msg = OPS.MessageIn(
            channel_id="", title=req.title, op_id=req.op_id, body=req.body,
            occurred_at=req.occurred_at, severity=req.severity, ttl=req.ttl, url=req.url,
            images=req.images, ciphertext=req.ciphertext, tags=req.tags,
            metadata=req.metadata, deliver_at=req.deliver_at)
        app = req.app.strip() if req.app is not None and req.app.strip() else None
        spec = OPS.message_spec(msg, channel_key=direct_key(route, tokens, app))
        return Item(kind, spec, route=route, tokens=tokens, app=app)
    req = _convert(doc, KINDS[kind])
    if kind == "message":
        spec = OPS.message_spec(req)
    elif kind.startswith("event."):
        spec = OPS.event_spec(req, kind.partition(".")[2])
    else:
        spec = OPS.thing_spec(req, kind.partition(".")[2])
    password = req.password if req.password is not None and req.password.strip() else None
    return Item(kind, spec, password=password)


def _convert(doc: dict[str, Any], kind: type[Any]) -> Any:
    try:
        return msgspec.convert(doc, kind)
    except msgspec.ValidationError as exc:
        raise ItemError(codes.INVALID_JSON_DATA, f"invalid JSON data: {exc}") from None


def direct_target(route_raw: str, tokens_raw: list[str] | None,
                  subscriptions_raw: list[Any] | None = None, *, allow_local: bool = False,
                  ) -> tuple[str, tuple[str, ...]]:
    """The route and its deduplicated tokens, in order. Web Push subscriptions are checked as
    a device route's are and become their canonical JSON, the token their deliveries carry."""
    route = route_raw.strip().lower()
    if route not in DIRECT_ROUTES:
        raise ItemError(codes.INVALID_ROUTE, "route must be one of " + ", ".join(DIRECT_ROUTES))
    if route == "webpush":
        if tokens_raw is not None:
            raise ItemError(codes.INVALID_JSON_DATA, "route webpush takes subscriptions (the "
                            "browsers' {endpoint, keys} objects), not tokens")
        return route, _subscriptions(subscriptions_raw, allow_local)
    if subscriptions_raw is not None:
        raise ItemError(codes.INVALID_JSON_DATA,
                        f"route {route} takes tokens; subscriptions are for route webpush")
    if not tokens_raw:
        raise ItemError(codes.TOKENS_REQUIRED, "tokens must list at least one provider token")
    if len(tokens_raw) > MAX_TOKENS:
        raise ItemError(codes.TOO_MANY_TOKENS, f"at most {MAX_TOKENS} tokens per operation; split "
                        "larger sends over several lines")
    platform = "ios" if route == "apns" else "android"
    seen: dict[str, None] = {}
    for raw in tokens_raw:
        try:
            token = field_rules.provider_token(raw, platform)
            # APNs tokens are hex, whatever their case: one device, one delivery.
            seen.setdefault(token.lower() if route == "apns" else token, None)
        except field_rules.FieldError:
            raise ItemError(codes.INVALID_PROVIDER_TOKEN,
                            f"invalid {route} token at position {len(seen)}") from None
    return route, tuple(seen)


def _subscriptions(raw: list[Any] | None, allow_local: bool) -> tuple[str, ...]:
    if not raw:
        raise ItemError(codes.TOKENS_REQUIRED,
                        "subscriptions must list at least one web push subscription")
    if len(raw) > MAX_TOKENS:
        raise ItemError(codes.TOO_MANY_TOKENS, f"at most {MAX_TOKENS} subscriptions per "
                        "operation; split larger sends over several lines")
    seen: dict[str, None] = {}
    for position, doc in enumerate(raw):
        try:
            seen.setdefault(WEB.parse_subscription(doc, allow_local=allow_local).token(), None)
        except WEB.SubscriptionError as exc:
            raise ItemError(codes.INVALID_WEBPUSH_SUBSCRIPTION,
                            f"invalid web push subscription at position {position}: "
                            f"{exc}") from None
    return tuple(seen)


def direct_key(route: str, tokens: tuple[str, ...], app: str | None = None) -> str:
    """What stands in for the channel id of a direct send: one key per (route, token set),
    so an op_id is idempotent per token set, and one op_id may name many such sends (a large
    send split over lines) whose delivery status adds up."""
    head = route if app is None else f"{route}@{app}"
    digest = hashlib.sha256("\n".join((head, *sorted(tokens))).encode()).hexdigest()
    return DIRECT_PREFIX + digest[:25]


def is_direct_key(channel_id: str) -> bool:
    return channel_id.startswith(DIRECT_PREFIX)


#: The device_key a direct delivery carries (pushgo.store.dispatch.DIRECT_DEVICE): no device.
DIRECT_DEVICE_KEY = "direct"


def ack_device_key(device_key: str) -> str | None:
    """The ``provider_device_key`` a provider payload names, None for a direct send (no
    registered device to acknowledge for)."""
    return None if device_key == DIRECT_DEVICE_KEY else device_key


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# --------------------------------------------------------------------------- results


class Result(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One line of the response, for the item at ``index`` (0-based, blank lines not
    counted). ``status`` is the HTTP status the same failure has on the single routes."""

    index: int
    ok: bool
    op_id: str | None = None
    channel_id: str | None = None
    route: str | None = None
    message_id: str | None = None
    event_id: str | None = None
    thing_id: str | None = None
    recipients: int | None = None
    duplicate: bool = False
    deliver_at: int | None = None  # a scheduled send: when it goes out (epoch ms)
    error_code: str | None = None
    error: str | None = None
    status: int | None = None


_result_encoder = msgspec.json.Encoder()


def encode_result(result: Result) -> bytes:
    return _result_encoder.encode(result) + b"\n"
