"""MCP messages pushgo receives and sends, for the revisions 2025-06-18, 2025-11-25 (the
``initialize`` era) and 2026-07-28 (stateless, per-request ``_meta``); protocol versions;
the 2026-07-28 request ladder (``_meta`` keys, ``MCP-Protocol-Version`` / ``Mcp-Method`` /
``Mcp-Name`` headers) and the header value encoding it uses.

Pure: stdlib and msgspec only. Must not import anyio, starlette or anything with I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import msgspec

from pushgo.protocol.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    UNSUPPORTED_PROTOCOL_VERSION,
    RpcError,
)

# --- versions ---------------------------------------------------------------------------------

LEGACY_VERSIONS: Final = ("2025-11-25", "2025-06-18")
"""Revisions served through ``initialize`` and a session, newest first."""
MODERN_VERSIONS: Final = ("2026-07-28",)
"""Revisions served statelessly with per-request ``_meta``."""
SUPPORTED_VERSIONS: Final = (*MODERN_VERSIONS, *LEGACY_VERSIONS)
LATEST_LEGACY: Final = LEGACY_VERSIONS[0]
#: Every revision ever published that used the initialize handshake; a request whose
#: MCP-Protocol-Version names one of these belongs to the legacy era.
HANDSHAKE_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")

# --- reserved _meta keys (2026-07-28) ---------------------------------------------------------

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"

# --- HTTP headers (lowercase: ASGI gives header names lowercased) -----------------------------

H_PROTOCOL_VERSION: Final = "mcp-protocol-version"
H_SESSION_ID: Final = "mcp-session-id"
H_METHOD: Final = "mcp-method"
H_NAME: Final = "mcp-name"
#: request method → the params member mirrored into Mcp-Name
NAME_BEARING: Final[Mapping[str, str]] = {"tools/call": "name", "resources/read": "uri",
                                          "prompts/get": "name"}

# --- params received --------------------------------------------------------------------------


class Implementation(msgspec.Struct, omit_defaults=True, kw_only=True):
    name: str
    version: str
    title: str | None = None
    description: str | None = None
    websiteUrl: str | None = None


class InitializeParams(msgspec.Struct, kw_only=True):
    protocolVersion: str
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    clientInfo: dict[str, Any] | None = None


class RequestMeta(msgspec.Struct, kw_only=True):
    progressToken: str | int | None = None


class _WithMeta(msgspec.Struct, kw_only=True):
    meta: RequestMeta | None = msgspec.field(default=None, name="_meta")


class PaginatedParams(_WithMeta, kw_only=True):
    cursor: str | None = None


class CallToolParams(_WithMeta, kw_only=True):
    name: str
    arguments: dict[str, Any] | None = None
    #: 2026-07-28 multi round-trip requests: the client's answers to the ``inputRequests``
    #: of an ``input_required`` result, and the ``requestState`` it echoes back.
    inputResponses: dict[str, Any] | None = None
    requestState: str | None = None


class ReadResourceParams(_WithMeta, kw_only=True):
    uri: str


class CancelledParams(msgspec.Struct, kw_only=True):
    requestId: str | int | None = None
    reason: str | None = None


class SubscriptionFilter(msgspec.Struct, omit_defaults=True, kw_only=True):
    toolsListChanged: bool | None = None
    promptsListChanged: bool | None = None
    resourcesListChanged: bool | None = None
    resourceSubscriptions: list[str] | None = None


class ListenParams(_WithMeta, kw_only=True):
    notifications: SubscriptionFilter = msgspec.field(default_factory=SubscriptionFilter)


class EnvelopeMeta(msgspec.Struct, kw_only=True):
    """The members of a 2026-07-28 request's ``params`` the ladder reads."""

    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")
    name: Any = None
    uri: Any = None


P = TypeVar("P")
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_params(raw: msgspec.Raw | None, kind: type[P]) -> P:
    """Typed params of a request; a mismatch is INVALID_PARAMS."""
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        return dec.decode(raw if raw is not None else b"{}")  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None
    except (msgspec.DecodeError, RecursionError):
        raise RpcError(INVALID_PARAMS, "Invalid params") from None


# --- results sent -----------------------------------------------------------------------------


class ToolAnnotations(msgspec.Struct, omit_defaults=True, kw_only=True):
    title: str | None = None
    readOnlyHint: bool | None = None
    destructiveHint: bool | None = None
    idempotentHint: bool | None = None
    openWorldHint: bool | None = None


class Tool(msgspec.Struct, omit_defaults=True, kw_only=True):
    name: str
    title: str | None = None
    description: str | None = None
    inputSchema: dict[str, Any]
    outputSchema: dict[str, Any] | None = None
    annotations: ToolAnnotations | None = None


class TextContent(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ImageContent(msgspec.Struct, tag_field="type", tag="image"):
    data: str  # base64
    mimeType: str


class AudioContent(msgspec.Struct, tag_field="type", tag="audio"):
    data: str  # base64
    mimeType: str


class Resource(msgspec.Struct, omit_defaults=True, kw_only=True):
    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mimeType: str | None = None


class ResourceTemplate(msgspec.Struct, omit_defaults=True, kw_only=True):
    uriTemplate: str
    name: str
    title: str | None = None
    description: str | None = None
    mimeType: str | None = None


class TextResourceContents(msgspec.Struct, omit_defaults=True, kw_only=True):
    uri: str
    text: str
    mimeType: str | None = None


class BlobResourceContents(msgspec.Struct, omit_defaults=True, kw_only=True):
    uri: str
    blob: str  # base64
    mimeType: str | None = None


ResourceContents = TextResourceContents | BlobResourceContents


class EmbeddedResource(msgspec.Struct, tag_field="type", tag="resource"):
    resource: ResourceContents


Content = TextContent | ImageContent | AudioContent | EmbeddedResource


CacheScope = Literal["public", "private"]


@dataclass(frozen=True)
class CacheHint:
    ttl_ms: int
    scope: CacheScope


# --- 2026-07-28 request ladder ----------------------------------------------------------------

_SENTINEL = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)


def decode_header_value(value: str | None) -> str | None:
    """A header value as the body would carry it: ``=?base64?…?=`` decoded (canonical base64
    of UTF-8 only), anything else verbatim. A malformed sentinel gives None, which never
    equals a body value."""
    if value is None:
        return None
    m = _SENTINEL.fullmatch(value)
    if m is None:
        return value
    payload = m.group(1)
    try:
        raw = base64.b64decode(payload, validate=True)
        if base64.b64encode(raw).decode("ascii") != payload:
            return None
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


@dataclass(frozen=True)
class ModernEnvelope:
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: Any


_envelope_decoder = msgspec.json.Decoder(EnvelopeMeta)


def check_modern_request(method: str, params: msgspec.Raw | None,
                         headers: Mapping[str, str],
                         duplicated: frozenset[str] = frozenset()) -> ModernEnvelope:
    """Run the 2026-07-28 request ladder: first every missing piece at once (``_meta`` keys:
    INVALID_PARAMS; else routing headers: HEADER_MISMATCH; ``data.missing`` lists them all),
    then headers against the body (HEADER_MISMATCH), then the protocol version
    (UNSUPPORTED_PROTOCOL_VERSION). ``headers`` are lowercase-keyed with surrounding whitespace
    already stripped; ``duplicated`` names routing headers sent twice.
    """
    try:
        env = _envelope_decoder.decode(params if params is not None else b"{}")
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        env = EnvelopeMeta()
    meta = env.meta
    _check_missing(method, env, headers)
    assert meta is not None
    version = meta[META_PROTOCOL_VERSION]
    caps = meta[META_CLIENT_CAPABILITIES]
    for name in (H_PROTOCOL_VERSION, H_METHOD, H_NAME):
        if name in duplicated:
            raise RpcError(HEADER_MISMATCH, f"Header mismatch: {name} appears more than once")
    header_version = headers.get(H_PROTOCOL_VERSION)
    if header_version is None:
        raise RpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version header is missing")
    if header_version != version:
        raise RpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version header does not "
                       "match _meta protocol version")
    header_method = headers.get(H_METHOD)
    if header_method is None:
        raise RpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Method header is missing")
    if header_method != method:
        raise RpcError(HEADER_MISMATCH, f"Header mismatch: Mcp-Method header {header_method!r} "
                       f"does not match body method {method!r}")
    member = NAME_BEARING.get(method)
    if member is not None:
        body_value = env.name if member == "name" else env.uri
        if body_value is not None:
            raw_name = headers.get(H_NAME)
            if raw_name is None:
                raise RpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Name header is missing")
            if decode_header_value(raw_name) != body_value:
                raise RpcError(HEADER_MISMATCH, f"Header mismatch: Mcp-Name header does not "
                               f"match body params.{member}")
    if not isinstance(version, str):
        raise RpcError(INVALID_PARAMS, "the _meta protocol version must be a string")
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version)
    if not isinstance(caps, dict):
        raise RpcError(INVALID_PARAMS, "the _meta client capabilities must be an object")
    return ModernEnvelope(version, caps, meta.get(META_CLIENT_INFO))


def _check_missing(method: str, env: EnvelopeMeta, headers: Mapping[str, str]) -> None:
    """One error naming every ``_meta`` key and routing header a modern request lacks."""
    meta = env.meta or {}
    missing = [f"params._meta[{k!r}]" for k in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES)
               if k not in meta]
    meta_missing = bool(missing)
    if H_PROTOCOL_VERSION not in headers:
        missing.append("MCP-Protocol-Version header")
    if H_METHOD not in headers:
        missing.append("Mcp-Method header")
    member = NAME_BEARING.get(method)
    if member is not None and (env.name if member == "name" else env.uri) is not None \
            and H_NAME not in headers:
        missing.append("Mcp-Name header")
    if not missing:
        return
    text = "missing " + ", ".join(missing)
    if meta_missing:
        raise RpcError(INVALID_PARAMS, f"params._meta must be an object carrying "
                       f"{META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r}; {text}",
                       {"missing": missing})
    raise RpcError(HEADER_MISMATCH, f"Header mismatch: {text}", {"missing": missing})


def unsupported_version(requested: str) -> RpcError:
    return RpcError(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                    {"supported": list(SUPPORTED_VERSIONS), "requested": requested})


def missing_capabilities(required: Mapping[str, Any], declared: Mapping[str, Any]
                         ) -> dict[str, Any]:
    """The part of ``required`` (a ClientCapabilities object, e.g. ``{"sampling": {}}`` or
    ``{"elicitation": {"url": {}}}``) that ``declared`` lacks; empty when nothing is."""
    missing: dict[str, Any] = {}
    for name, want in required.items():
        have = declared.get(name)
        if not isinstance(have, dict):
            missing[name] = want
        elif isinstance(want, dict) and want:
            sub = missing_capabilities(want, have)
            if sub:
                missing[name] = sub
    return missing


def missing_capability_error(missing: Mapping[str, Any]) -> RpcError:
    """-32021 (2026-07-28, and answered the same way in the initialize era): the request
    needs client capabilities the client did not declare; HTTP 400 in 2026-07-28."""
    names = ", ".join(sorted(missing))
    return RpcError(MISSING_REQUIRED_CLIENT_CAPABILITY,
                    f"Missing required client capability: {names}",
                    {"requiredCapabilities": dict(missing)})


def negotiate(requested: str) -> str:
    """The legacy revision answered to an ``initialize`` asking for ``requested``."""
    return requested if requested in LEGACY_VERSIONS else LATEST_LEGACY


def declares_version(params: msgspec.Raw | None) -> bool:
    """Whether request params carry a 2026-07-28 style ``_meta`` protocol version."""
    if params is None:
        return False
    try:
        env = _envelope_decoder.decode(params)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return False
    return env.meta is not None and META_PROTOCOL_VERSION in env.meta
