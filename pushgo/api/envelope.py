"""The response envelope ``{"success", "data"?, "error"?, "error_code"?, "problem"?}`` (null
fields omitted) and JSON body decoding with msgspec.

Owns: the one place where a GatewayError becomes an HTTP response.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pushgo.errors import GatewayError, InvalidInput, PayloadTooLarge, codes
from pushgo.protocol import jsondepth
from pushgo.protocol.ids import is_digits

T = TypeVar("T")

MAX_BODY = 32 * 1024
#: The gateway token's query-string fallback: checked by the front door, no parameter of a
#: route.
TOKEN_QUERY = "token"  # noqa: S105 - a parameter name, not a secret

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


class Problem(msgspec.Struct, omit_defaults=True):
    category: str
    status: int
    title: str
    detail: str
    localized_message: str
    locale: str
    retryable: bool
    code: str | None = None
    request_id: str | None = None


class Envelope(msgspec.Struct, omit_defaults=True):
    success: bool
    data: Any = None
    error: str | None = None
    error_code: str | None = None
    problem: Problem | None = None


_TEXT = {
    "en": {
        "validation": ("Validation failed", "The request is invalid. Please check the input and retry."),
        "auth": ("Authentication failed", "Gateway authentication failed. Please verify the server token."),
        "permission": ("Permission denied", "The channel password is incorrect."),
        "not_found": ("Resource not found", "The resource does not exist or is no longer available."),
        "conflict": ("Conflict", "The request conflicts with an earlier one."),
        "rate_limit": ("Too many requests", "Too many requests. Please retry later."),
        "upstream": ("Upstream error", "A push provider failed. Please retry later."),
        "too_busy": ("Server busy", "The server is busy. Please retry later."),
        "internal": ("Internal error", "Something went wrong on the gateway. Please retry later."),
    },
    "zh-CN": {
        "validation": ("请求参数有误", "请求无效，请检查输入后重试。"),
        "auth": ("认证失败", "网关认证失败，请检查服务端令牌。"),
        "permission": ("权限不足", "频道密码不正确。"),
        "not_found": ("资源不存在", "资源不存在或已不可用。"),
        "conflict": ("请求冲突", "请求与之前的请求冲突。"),
        "rate_limit": ("请求过多", "请求过于频繁，请稍后重试。"),
        "upstream": ("上游错误", "推送服务商出错，请稍后重试。"),
        "too_busy": ("服务繁忙", "服务繁忙，请稍后重试。"),
        "internal": ("内部错误", "网关出现错误，请稍后重试。"),
    },
}


def locale_of(accept_language: str | None) -> str:
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag == "zh" or tag.startswith(("zh-cn", "zh-sg", "zh-hans", "zh_cn")):
            return "zh-CN"
        if tag == "en" or tag.startswith(("en-", "en_")):
            return "en"
    return "en"


def ok(data: Any = None, status: int = 200) -> Response:
    # Every JSON answer ends with a newline, so `curl` output does not run into the next line.
    return Response(_encoder.encode(Envelope(True, data)) + b"\n", status_code=status,
                    media_type="application/json")


def error_body(exc: GatewayError, request_id: str | None, locale: str = "en") -> bytes:
    title, text = _TEXT[locale][exc.category]
    problem = Problem(category=exc.category, status=exc.status, title=title, detail=exc.message,
                      localized_message=text, locale=locale, retryable=exc.retryable,
                      code=exc.code, request_id=request_id)
    return _encoder.encode(Envelope(False, None, exc.message, exc.code, problem)) + b"\n"


def error_response(exc: GatewayError, request: Request | None = None) -> Response:
    rid = request.scope.get("state", {}).get("request_id") if request is not None else None
    locale = locale_of(request.headers.get("accept-language")) if request is not None else "en"
    headers = {"content-language": locale}
    if exc.status == 401:
        headers["www-authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    headers.update(exc.headers)
    return Response(error_body(exc, rid, locale), status_code=exc.status,
                    media_type="application/json", headers=headers)


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(kind)
    return dec


def decode(raw: bytes, kind: type[T]) -> T:
    """Decode a JSON body into ``kind``; every failure is an InvalidInput with a code."""
    try:
        jsondepth.check(raw)
        value = _decoder(kind).decode(raw)
    except jsondepth.TooDeep as exc:
        raise InvalidInput(codes.JSON_TOO_DEEP, f"invalid JSON: {exc}") from None
    except msgspec.ValidationError as exc:
        raise InvalidInput(codes.INVALID_JSON_DATA, f"invalid JSON data: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(codes.INVALID_JSON_SYNTAX, f"invalid JSON syntax: {exc}") from None
    except RecursionError:  # the depth check above keeps msgspec well short of this
        raise InvalidInput(codes.JSON_TOO_DEEP, "invalid JSON: nested too deeply") from None
    # PostgreSQL text cannot hold U+0000 and no field has a use for it: refused here, once,
    # on every store. JSON can only spell it \u0000, so most bodies skip the walk.
    if b"\\u0000" in raw and _has_nul(value):
        raise InvalidInput(codes.INVALID_JSON_DATA,
                           "invalid JSON data: strings must not contain U+0000")
    return value


def _has_nul(value: Any) -> bool:
    stack = [value]  # iterative: nesting depth is the client's choice
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, msgspec.Struct):
            stack.extend(getattr(item, name) for name in item.__struct_fields__)
    return False


def convert(obj: Any, kind: type[T]) -> T:
    """Like decode, for already-parsed values (query strings)."""
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(codes.INVALID_QUERY, f"invalid query: {exc}") from None


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes without buffering them."""
    length = request.headers.get("content-length")
    if length is not None and is_digits(length) and int(length) > limit:
        raise PayloadTooLarge(codes.PAYLOAD_TOO_LARGE, f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(codes.PAYLOAD_TOO_LARGE, f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def is_json_type(content_type: str | None) -> bool:
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


async def body_as(request: Request, kind: type[T]) -> T:
    if not is_json_type(request.headers.get("content-type")):
        raise InvalidInput(codes.MISSING_JSON_CONTENT_TYPE,
                           "missing Content-Type: application/json")
    return decode(await read_body(request), kind)


def query_params(request: Request, allowed: AbstractSet[str] = frozenset()) -> dict[str, str]:
    """The request's query parameters (the first of a repeated one), each in ``allowed``;
    anything else is 400 invalid_query. The gateway token's fallback is not a parameter."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key == TOKEN_QUERY:  # the gateway token's fallback, checked by the front door
            continue
        if key not in allowed:
            raise InvalidInput(codes.INVALID_QUERY, f"unknown query parameter {key!r}")
        if "\x00" in value:  # as JSON bodies (envelope.decode): PostgreSQL cannot store it
            raise InvalidInput(codes.INVALID_QUERY, f"query parameter {key!r} contains U+0000")
        out.setdefault(key, value)
    return out
