"""JSON-RPC 2.0 envelopes as MCP uses them: decoding one message off the wire, encoding
results, errors and notifications, and the error codes as named constants.

Pure: stdlib and msgspec only. Must not import anyio, starlette or anything with I/O.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from pushgo.protocol import jsondepth

JSONRPC_VERSION: Final = "2.0"

# Standard JSON-RPC codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# MCP 2025-06-18 / 2025-11-25: resource not found (2026-07-28 uses INVALID_PARAMS instead).
RESOURCE_NOT_FOUND_LEGACY: Final = -32002
# MCP 2026-07-28 (spec-reserved range -32020..-32099).
HEADER_MISMATCH: Final = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

RequestId = int | str


class RpcError(Exception):
    """A protocol error to answer as a JSON-RPC error response (never a tool result)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r})"


class Incoming(msgspec.Struct, kw_only=True):
    """Any one JSON-RPC message as received. Members absent from the body stay UNSET, so a
    notification (no ``id``) is told apart from a request whose id is ``null``."""

    jsonrpc: Any = msgspec.UNSET
    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class Request(msgspec.Struct, frozen=True):
    id: RequestId
    method: str
    params: msgspec.Raw | None


class Notification(msgspec.Struct, frozen=True):
    method: str
    params: msgspec.Raw | None


class ClientReply(msgspec.Struct, frozen=True):
    """A response or error the client posted to a request the server sent it (the
    initialize era's ``elicitation/create``): ``result`` or ``error`` as decoded JSON."""

    id: RequestId | None
    result: Any = None
    error: Any = None


Message = Request | Notification | ClientReply

#: The one decoder for message envelopes; bodies are a single JSON object (no batches:
#: batching was removed in 2025-06-18).
_decoder = msgspec.json.Decoder(Incoming)
_encoder = msgspec.json.Encoder()


def _valid_id(value: Any) -> bool:
    # bool is an int subclass in Python; JSON-RPC ids are strings or integers only.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _params(raw: msgspec.Raw | msgspec.UnsetType) -> msgspec.Raw | None:
    if raw is msgspec.UNSET:
        return None
    assert isinstance(raw, msgspec.Raw)
    first = bytes(memoryview(raw)[:1])
    if first == b"n":  # null
        return None
    if first != b"{":
        raise RpcError(INVALID_REQUEST, "params must be an object")
    return raw


def parse_message(body: bytes) -> Message:
    """One JSON-RPC message from a request body, or RpcError (PARSE_ERROR / INVALID_REQUEST).

    ``RpcError.data`` is left None; the id of a malformed request is recoverable with
    :func:`salvage_id` for the error response.
    """
    try:
        jsondepth.check(body)
    except jsondepth.TooDeep:
        raise RpcError(PARSE_ERROR, "Parse error: JSON nested too deeply") from None
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        try:
            msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):
            raise RpcError(PARSE_ERROR, "Parse error") from None
        raise RpcError(INVALID_REQUEST, "Batch requests are not supported") from None
    try:
        msg = _decoder.decode(body)
    except msgspec.ValidationError:
        # Valid JSON that is not an object (a number, a string, null).
        raise RpcError(INVALID_REQUEST, "The body must be a single JSON-RPC object") from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise RpcError(PARSE_ERROR, "Parse error") from None
    if msg.jsonrpc != JSONRPC_VERSION:
        raise RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"')
    if msg.method is not msgspec.UNSET:
        if not isinstance(msg.method, str) or not msg.method:
            raise RpcError(INVALID_REQUEST, "method must be a non-empty string")
        if msg.result is not msgspec.UNSET or msg.error is not msgspec.UNSET:
            raise RpcError(INVALID_REQUEST, "a request carries no result or error")
        params = _params(msg.params)
        if msg.id is msgspec.UNSET:
            return Notification(msg.method, params)
        if not _valid_id(msg.id):
            raise RpcError(INVALID_REQUEST, "id must be a string or an integer")
        return Request(msg.id, msg.method, params)
    if (msg.result is msgspec.UNSET) == (msg.error is msgspec.UNSET):
        raise RpcError(INVALID_REQUEST, "not a request, notification or response")
    if msg.id is msgspec.UNSET or not (msg.id is None or _valid_id(msg.id)):
        raise RpcError(INVALID_REQUEST, "a response needs a string or integer id")
    return ClientReply(msg.id, _decoded(msg.result), _decoded(msg.error))


def _decoded(raw: msgspec.Raw | msgspec.UnsetType) -> Any:
    if raw is msgspec.UNSET:
        return None
    assert isinstance(raw, msgspec.Raw)
    return msgspec.json.decode(raw)


def salvage_id(body: bytes) -> RequestId | None:
    """The id of a body that failed :func:`parse_message`, when it has a usable one."""
    try:
        msg = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    return msg.id if _valid_id(msg.id) else None


# --- encoding ---------------------------------------------------------------------------------


class ErrorObject(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class _ErrorResponse(msgspec.Struct):
    jsonrpc: Literal["2.0"]
    id: RequestId | None  # always present; null when the request id could not be read
    error: ErrorObject


class _ResultResponse(msgspec.Struct):
    jsonrpc: Literal["2.0"]
    id: RequestId
    result: Any


class _Notification(msgspec.Struct, omit_defaults=True):
    jsonrpc: Literal["2.0"]
    method: str
    params: Any = None


def encode_result(request_id: RequestId, result: Any) -> bytes:
    return _encoder.encode(_ResultResponse(JSONRPC_VERSION, request_id, result))


def encode_error(request_id: RequestId | None, code: int, message: str, data: Any = None) -> bytes:
    return _encoder.encode(_ErrorResponse(JSONRPC_VERSION, request_id,
                                          ErrorObject(code, message, data)))


def encode_rpc_error(request_id: RequestId | None, exc: RpcError) -> bytes:
    return encode_error(request_id, exc.code, exc.message, exc.data)


class _Request(msgspec.Struct, omit_defaults=True):
    jsonrpc: Literal["2.0"]
    id: RequestId
    method: str
    params: Any = None


def encode_request(request_id: RequestId, method: str, params: Any = None) -> bytes:
    """A request the server sends the client (initialize era: ``elicitation/create``)."""
    return _encoder.encode(_Request(JSONRPC_VERSION, request_id, method, params))


def encode_notification(method: str, params: Any = None) -> bytes:
    return _encoder.encode(_Notification(JSONRPC_VERSION, method, params))


def encode(value: Any) -> bytes:
    return _encoder.encode(value)
