"""The gateway's one error root.

Every layer below the HTTP/MCP boundary raises :class:`GatewayError` (or a subclass) for a
failure a caller should see; the API error handler and the MCP dispatcher translate it to the
wire at exactly one place each. Imports nothing from pushgo.
"""

from __future__ import annotations


class GatewayError(Exception):
    """A failure with a stable ``error_code`` and the HTTP status it maps to."""

    status: int = 400
    code: str = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class InvalidInput(GatewayError):
    """A request that failed validation (400)."""

    status = 400
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    code = "authentication_failed"


class PasswordMismatch(GatewayError):
    status = 403
    code = "password_mismatch"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class ServerBusy(GatewayError):
    status = 503
    code = "server_busy"


class StoreUnavailable(GatewayError):
    status = 503
    code = "store_unavailable"
