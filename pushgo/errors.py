"""The gateway's one error root.

Every layer below the HTTP/MCP boundary raises :class:`GatewayError` (or a subclass) for a
failure a caller should see; the API error handler and the MCP dispatcher translate it to the
wire at exactly one place each. Each error carries an :class:`ErrorCode` from the registry
(:mod:`pushgo.protocol.errors`, re-exported here as ``codes``), which fixes its ``error_code``,
HTTP status, category and retryability. Imports nothing from pushgo outside pushgo.protocol.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pushgo.protocol import errors as codes
from pushgo.protocol.errors import ErrorCode, by_code

__all__ = ["AuthenticationFailed", "Conflict", "ErrorCode", "Forbidden", "GatewayError", "InvalidInput",
           "NotFound", "PasswordMismatch", "PayloadTooLarge", "QuotaExceeded", "RateLimited",
           "ServerBusy",
           "StoreUnavailable", "by_code", "codes"]


class GatewayError(Exception):
    """A failure with a registered :class:`ErrorCode` (``error_code`` and HTTP status).

    ``GatewayError(codes.X, "message")``; a subclass brings its own default code and, for the
    fixed ones, a default message. ``status`` overrides the registered status only for an
    HTTP error passed through from the web framework (``codes.HTTP_ERROR``).
    """

    default: ClassVar[ErrorCode] = codes.INVALID_REQUEST
    default_message: ClassVar[str | None] = None
    #: Seconds a client should wait before trying again (a ``Retry-After`` header), or None.
    retry_after: int | None = None
    #: More response headers of an HTTP answer (lowercase names), e.g. ``RateLimit-*``.
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, error: ErrorCode | None = None, message: str | None = None, *,
                 status: int | None = None):
        error = error if error is not None else self.default
        message = message if message is not None else (self.default_message or error.code)
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = error.status if status is None else status

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def category(self) -> str:
        if self.status == self.error.status:
            return self.error.category
        return codes.category_of(self.status)

    @property
    def retryable(self) -> bool:
        if self.status == self.error.status:
            return self.error.retryable
        return codes.retryable_status(self.status)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class InvalidInput(GatewayError):
    """A request that failed validation (400)."""

    default = codes.INVALID_REQUEST


class AuthenticationFailed(GatewayError):
    default = codes.AUTHENTICATION_FAILED
    default_message = "authentication failed"


class PasswordMismatch(GatewayError):
    default = codes.PASSWORD_MISMATCH
    default_message = "invalid channel password"


class NotFound(GatewayError):
    default = codes.NOT_FOUND


class Forbidden(GatewayError):
    """A credential that may not do this (403): an API key without the route's scope, or
    outside its channels or apps."""

    default = codes.SCOPE_REQUIRED


class Conflict(GatewayError):
    default = codes.CONFLICT


class PayloadTooLarge(GatewayError):
    default = codes.PAYLOAD_TOO_LARGE


class ServerBusy(GatewayError):
    default = codes.SERVER_BUSY


class RateLimited(GatewayError):
    """Too many failed password checks from this client (429 with ``Retry-After``)."""

    default = codes.RATE_LIMITED

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        wait = max(1, math.ceil(round(retry_after, 3)))  # 1.0000000001 s is 1 s
        super().__init__(None, message or f"too many failed password attempts; retry in "
                                          f"{wait} s")
        self.retry_after = wait


class QuotaExceeded(GatewayError):
    """An API key's or a channel's request rate or daily notifications are used up (429 with
    ``Retry-After`` and the ``RateLimit-*`` headers of the limit that refused)."""

    default = codes.QUOTA_EXCEEDED

    def __init__(self, message: str, retry_after: float,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(None, message)
        self.retry_after = max(1, math.ceil(round(retry_after, 3)))
        self.headers = headers


class StoreUnavailable(GatewayError):
    default = codes.STORE_UNAVAILABLE
    default_message = "store unavailable"
