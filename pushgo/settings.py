"""Settings: the PUSHGO_* environment variables (each also a ``pushgo serve`` flag) decoded into one
typed, frozen msgspec Struct.

A bad value raises :class:`SettingsError` whose message is one line naming the variable; the CLI
prints it and exits 2, so nothing half-starts. Secret values are never echoed back.
Imports nothing from pushgo but the version.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

RuntimeProfile = Literal["small", "public"]
McpAuthMode = Literal["oauth", "legacy"]
LogLevel = Literal["debug", "info", "warning", "error"]
Backend = Literal["trio", "asyncio"]


class SettingsError(ValueError):
    """One line naming the variable that is wrong and why."""


#: PushGo's public token service, as PushGo Gateway v1.2.9's default: with it the official
#: apps' devices get APNs and FCM without credentials of one's own.
DEFAULT_TOKEN_SERVICE_URL = "https://token.pushgo.dev"  # noqa: S105 - a URL, not a secret
#: The VAPID contact when neither PUSHGO_VAPID_SUBJECT nor an https public base URL is set.
DEFAULT_VAPID_SUBJECT = "mailto:postmaster@localhost"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    http_host: str = "127.0.0.1"
    http_port: int = 6666
    db_url: str = "sqlite:///./pushgo-data/pushgo.db"
    token: str | None = None
    runtime_profile: RuntimeProfile = "small"
    mcp_enabled: bool = False
    public_base_url: str | None = None
    mcp_dcr_enabled: bool = True
    mcp_predefined_clients: str | None = None
    mcp_auth_mode: McpAuthMode = "oauth"
    mcp_cimd_allow_loopback: bool = False
    apns_key_file: str | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    sandbox_mode: bool = False
    fcm_credentials_file: str | None = None
    apns_endpoint: str | None = None
    fcm_endpoint: str | None = None
    provider_ca_file: str | None = None
    #: PushGo's public token service unless set otherwise (PUSHGO_TOKEN_SERVICE_URL).
    token_service_url: str | None = DEFAULT_TOKEN_SERVICE_URL
    wns_client_id: str | None = None
    wns_client_secret: str | None = None
    wns_token_url: str | None = None
    wns_endpoint: str | None = None
    #: TOML file of further apps ([apps.NAME] tables), beside the ``default`` app.
    apps_file: str | None = None
    webpush_enabled: bool = True
    vapid_subject: str | None = None
    webpush_allow_loopback: bool = False
    channel_subscriber_limit: int = 10000
    #: Operations a second each channel accepts (None: unlimited; pushgo.service.quotas).
    channel_rate_per_s: float | None = None
    #: Notifications a UTC day each channel accepts (None: unlimited).
    channel_daily_notifications: int | None = None
    provider_connections: int = 2
    provider_response_timeout_s: float = 30.0
    provider_ping_timeout_s: float = 10.0
    provider_write_timeout_s: float = 10.0
    log_level: LogLevel = "info"
    async_backend: Backend = "trio"
    private_ttl_seconds: int | None = None
    delivery_lease_seconds: int = 60
    #: This machine's name in the outbox's leases (default: the host name).
    instance_id: str | None = None
    workers: int = 1
    #: Reverse proxies whose ``X-Forwarded-For`` names the client (networks, normalized).
    trusted_proxies: tuple[str, ...] = ()
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    http_max_connections: int = 1000
    db_request_timeout_ms: int = 5000
    db_statement_timeout_ms: int = 30_000
    db_connect_timeout_s: int = 10
    db_busy_timeout_ms: int = 30_000
    #: warp-link transports served to the PushGo apps' private mode (PUSHGO_PRIVATE_TRANSPORTS).
    private_transports: tuple[str, ...] = ("wss",)
    #: Where the warp-link TCP listener binds, and the port the apps are told to dial.
    private_tcp_bind: tuple[str, int] = ("127.0.0.1", 5223)
    private_tcp_port: int = 5223
    private_tls_cert: str | None = None
    private_tls_key: str | None = None
    #: Plain TCP: a proxy in front terminates TLS.
    private_tcp_tls_offload: bool = False
    private_tcp_proxy_protocol: bool = False
    #: Where the warp-link QUIC listener binds (UDP), and the port the apps are told to dial.
    private_quic_bind: tuple[str, int] = ("127.0.0.1", 5223)
    private_quic_port: int = 5223
    #: Live warp-link sessions per process (all transports); past it a hello gets too_busy.
    private_max_sessions: int = 8192

    @property
    def private_ttl_s(self) -> int:
        """Unacknowledged deliveries wait this long: set explicitly, else by profile."""
        if self.private_ttl_seconds is not None:
            return self.private_ttl_seconds
        return 30 * 86400 if self.runtime_profile == "public" else 7 * 86400

    @property
    def http_addr(self) -> str:
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"{host}:{self.http_port}"

    @property
    def apns_configured(self) -> bool:
        return self.apns_key_file is not None

    @property
    def fcm_configured(self) -> bool:
        return self.fcm_credentials_file is not None

    @property
    def wns_configured(self) -> bool:
        return self.wns_client_id is not None

    @property
    def webpush_subject(self) -> str:
        """The VAPID ``sub``: set explicitly, else the public base URL when it is https, else a
        mailto: placeholder."""
        if self.vapid_subject:
            return self.vapid_subject
        base = self.public_base_url or ""
        if base.startswith("https://"):
            return base.rstrip("/")
        return DEFAULT_VAPID_SUBJECT


# --- parsers: each takes the raw text and returns the value or raises ValueError(reason) ---

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true or false")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        low = raw.strip().lower()
        if low not in allowed:
            raise ValueError("expected one of " + ", ".join(allowed))
        return low

    return parse


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return value

    return parse


def _seconds(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("expected a number of seconds") from None
        if not lo <= value <= hi:  # NaN fails both comparisons
            raise ValueError(f"expected seconds from {lo:g} to {hi:g}")
        return value

    return parse


def _rate(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of requests a second") from None
    if not 0.001 <= value <= 1_000_000:  # NaN fails both comparisons
        raise ValueError("expected requests a second from 0.001 to 1000000")
    return value


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _file(raw: str) -> str:
    path = _text(raw)
    if not os.path.isfile(path):
        raise ValueError("no readable file at that path")  # the path is shown quoted already
    return path


def _origin(raw: str) -> str:
    value = _text(raw).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.path or parts.query:
        raise ValueError("expected an origin like https://host:port")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError("invalid port") from None
    return value


def _vapid_subject(raw: str) -> str:
    value = _text(raw)
    parts = urlsplit(value)
    if parts.scheme == "mailto" and "@" in parts.path and " " not in value:
        return value
    if parts.scheme == "https" and parts.hostname:
        return value
    raise ValueError("expected mailto:address or an https URL")


def _https_url(raw: str) -> str:
    value = _text(raw)
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("expected an https URL")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError("invalid port") from None
    if parts.fragment or parts.username is not None:
        raise ValueError("must not carry a fragment or user info")
    return value


def _http_url(raw: str) -> str:
    value = _text(raw).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return value


_OFF = ("", "off", "none", "false", "0", "no")


def _token_service_url(raw: str) -> str | None:
    """An http(s) URL, or ``off`` (also none/false/0/no): no token service."""
    if raw.strip().lower() in _OFF:
        return None
    return _http_url(raw)


def _db_url(raw: str) -> str:
    value = _text(raw)
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme.split("+", 1)[0] not in ("sqlite", "postgresql", "postgres"):
        raise ValueError("expected sqlite:///path or postgresql://…")
    return value


def _addr(raw: str) -> tuple[str, int]:
    value = raw.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", value)
    if not m:
        raise ValueError("expected host:port")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError("port out of range")
    return host, port


def _instance_id(raw: str) -> str:
    value = _text(raw)
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", value):
        raise ValueError("expected 1 to 64 letters, digits, '.', '_', ':' or '-'")
    return value


def _networks(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in raw.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item[:60]!r} is not an IP address or CIDR network") from None
        if str(net) not in out:
            out.append(str(net))
    if not out:
        raise ValueError("expected IP addresses or CIDR networks, comma-separated")
    return tuple(out)


#: The warp-link transports pushgo serves (QUIC is not among them yet).
PRIVATE_TRANSPORTS = ("quic", "tcp", "wss")


def _private_transports(raw: str) -> tuple[str, ...]:
    """As PushGo Gateway v1.2.9: true (every transport), false or none, or a comma list."""
    low = raw.strip().lower()
    if low in _TRUE or low == "all":
        return PRIVATE_TRANSPORTS
    if low in _FALSE or low == "none":
        return ()
    out: list[str] = []
    for part in low.split(","):
        item = part.strip()
        if item not in PRIVATE_TRANSPORTS:
            raise ValueError(f"{item[:20]!r} is not a private transport (quic, tcp, wss)")
        if item not in out:
            out.append(item)
    return tuple(sorted(out))


@dataclass(frozen=True)
class Option:
    env: str
    field: str | None  # None: special handling (http addr)
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.env.removeprefix("PUSHGO_").lower().replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("PUSHGO_HTTP_ADDR", None, _addr, "listen address host:port (default 127.0.0.1:6666)"),
    Option("PUSHGO_DB_URL", "db_url", _db_url, "sqlite:///path or postgresql://… "
           "(default: SQLite file under ./pushgo-data/)", secret=True),
    Option("PUSHGO_TOKEN", "token", _text, "gateway token (Bearer) for every API route",
           secret=True),
    Option("PUSHGO_RUNTIME_PROFILE", "runtime_profile", _choice("small", "public"),
           "small or public: queue sizes, lifetimes, retention"),
    Option("PUSHGO_MCP_ENABLED", "mcp_enabled", _bool, "serve /mcp and OAuth"),
    Option("PUSHGO_PUBLIC_BASE_URL", "public_base_url", _http_url,
           "external root URL (issuer, bind links)"),
    Option("PUSHGO_MCP_DCR_ENABLED", "mcp_dcr_enabled", _bool, "dynamic client registration"),
    Option("PUSHGO_MCP_PREDEFINED_CLIENTS", "mcp_predefined_clients", _text,
           "id:secret list, newline or ; separated", secret=True),
    Option("PUSHGO_MCP_AUTH_MODE", "mcp_auth_mode", _choice("oauth", "legacy"),
           "oauth (default: OAuth 2.1 authorization server, channels bound in a browser) or "
           "legacy (gateway token only, channel password in every tool call)"),
    Option("PUSHGO_MCP_CIMD_ALLOW_LOOPBACK", "mcp_cimd_allow_loopback", _bool,
           "tests only: let Client ID Metadata Document URLs point at loopback, over http too"),
    Option("PUSHGO_APNS_KEY_FILE", "apns_key_file", _file, "APNs .p8 key file"),
    Option("PUSHGO_APNS_KEY_ID", "apns_key_id", _text, "APNs key id"),
    Option("PUSHGO_APNS_TEAM_ID", "apns_team_id", _text, "APNs team id"),
    Option("PUSHGO_APNS_TOPIC", "apns_topic", _text, "APNs topic (bundle id)"),
    Option("PUSHGO_SANDBOX_MODE", "sandbox_mode", _bool, "use the APNs sandbox host"),
    Option("PUSHGO_FCM_CREDENTIALS_FILE", "fcm_credentials_file", _file,
           "FCM service-account JSON"),
    Option("PUSHGO_APNS_ENDPOINT", "apns_endpoint", _origin, "override the APNs origin"),
    Option("PUSHGO_FCM_ENDPOINT", "fcm_endpoint", _origin, "override the FCM origin"),
    Option("PUSHGO_PROVIDER_CA_FILE", "provider_ca_file", _file,
           "extra CA bundle for provider TLS"),
    Option("PUSHGO_TOKEN_SERVICE_URL", "token_service_url", _token_service_url,
           "remote provider-token service for APNs/FCM when no local credentials are set "
           f"(default {DEFAULT_TOKEN_SERVICE_URL}; empty or off: none)"),
    Option("PUSHGO_WNS_CLIENT_ID", "wns_client_id", _text,
           "WNS package SID (OAuth client id) of the Windows app"),
    Option("PUSHGO_WNS_CLIENT_SECRET", "wns_client_secret", _text,
           "WNS client secret of the Windows app", secret=True),
    Option("PUSHGO_WNS_TOKEN_URL", "wns_token_url", _https_url,
           "WNS OAuth token endpoint (default https://login.live.com/accesstoken.srf)"),
    Option("PUSHGO_WNS_ENDPOINT", "wns_endpoint", _origin,
           "tests: send every WNS notification to this origin instead of the channel URI's "
           "host (path and query kept)"),
    Option("PUSHGO_APPS_FILE", "apps_file", _file,
           "TOML file of further apps, each with its own APNs/FCM/WNS credentials "
           "([apps.NAME] tables; see Several apps on one gateway)"),
    Option("PUSHGO_WEBPUSH_ENABLED", "webpush_enabled", _bool,
           "Web Push to browser subscriptions (the webpush route; default on)"),
    Option("PUSHGO_VAPID_SUBJECT", "vapid_subject", _vapid_subject,
           "VAPID contact (mailto: or https:) push services may use to reach the operator"),
    Option("PUSHGO_WEBPUSH_ALLOW_LOOPBACK", "webpush_allow_loopback", _bool,
           "tests only: Web Push endpoints may be on loopback or private hosts"),
    Option("PUSHGO_CHANNEL_SUBSCRIBER_LIMIT", "channel_subscriber_limit",
           _int_range(1, 100_000_000), "subscribers per channel (default 10000)"),
    Option("PUSHGO_CHANNEL_RATE_PER_S", "channel_rate_per_s", _rate,
           "operations a second each channel accepts, from anyone; past it 429 "
           "quota_exceeded (default unlimited)"),
    Option("PUSHGO_CHANNEL_DAILY_NOTIFICATIONS", "channel_daily_notifications",
           _int_range(1, 10**12), "notifications (deliveries written) a UTC day each channel "
           "accepts; past it 429 quota_exceeded until midnight UTC (default unlimited)"),
    Option("PUSHGO_PROVIDER_CONNECTIONS", "provider_connections", _int_range(1, 64),
           "HTTP/2 connections per provider (default 2)"),
    Option("PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S", "provider_response_timeout_s",
           _seconds(0.1, 3600), "seconds a provider has to answer a request; past it the "
           "connection is closed and its requests sent again on a new one (default 30)"),
    Option("PUSHGO_PROVIDER_PING_TIMEOUT_S", "provider_ping_timeout_s", _seconds(0.1, 600),
           "with requests in flight and nothing heard from a provider this long, PING it; no "
           "answer this long after: the connection is closed, its requests sent again "
           "(default 10)"),
    Option("PUSHGO_PROVIDER_WRITE_TIMEOUT_S", "provider_write_timeout_s", _seconds(0.1, 600),
           "seconds a write to a provider connection may take (the provider not reading); "
           "past it the connection is closed, its requests sent again (default 10)"),
    Option("PUSHGO_LOG_LEVEL", "log_level", _choice("debug", "info", "warning", "error"),
           "log level (JSON logs on stdout)"),
    Option("PUSHGO_ASYNC_BACKEND", "async_backend", _choice("trio", "asyncio"),
           "trio (default) or asyncio"),
    Option("PUSHGO_PRIVATE_TTL_SECONDS", "private_ttl_seconds", _int_range(60, 30 * 86400),
           "how long an unacknowledged delivery is kept (7 days small, 30 days public)"),
    Option("PUSHGO_DELIVERY_LEASE_SECONDS", "delivery_lease_seconds", _int_range(2, 3600),
           "how long a claimed delivery stays with its process before another may take it "
           "(default 60)"),
    Option("PUSHGO_INSTANCE_ID", "instance_id", _instance_id,
           "this machine's name in delivery leases: a restarted process takes back its own "
           "claims at once; must differ between machines sharing one PostgreSQL "
           "(default: the host name)"),
    Option("PUSHGO_WORKERS", "workers", _int_range(1, 64),
           "gateway processes sharing the listening socket (default 1; >1 needs PostgreSQL)"),
    Option("PUSHGO_TRUSTED_PROXIES", "trusted_proxies", _networks,
           "reverse proxies (IPs/CIDRs, comma-separated) whose X-Forwarded-For names the "
           "client for the rate limits (default none: the peer address)"),
    Option("PUSHGO_HTTP_HEADER_TIMEOUT_S", "http_header_timeout_s", _seconds(0.1, 3600),
           "seconds a client has to send a request's headers; slower connections are closed "
           "(default 10)"),
    Option("PUSHGO_HTTP_BODY_TIMEOUT_S", "http_body_timeout_s", _seconds(0.1, 3600),
           "seconds a request body may take to arrive, plus one per 64 KiB received; "
           "slower bodies get 408 request_timeout (default 30)"),
    Option("PUSHGO_HTTP_MAX_CONNECTIONS", "http_max_connections", _int_range(1, 1_000_000),
           "open HTTP connections per process; past it a new connection gets 503 with "
           "Retry-After (default 1000)"),
    Option("PUSHGO_DB_REQUEST_TIMEOUT_MS", "db_request_timeout_ms", _int_range(100, 600_000),
           "deadline of each store call, the wait for a store thread included: past it the "
           "request answers 503 store_unavailable (default 5000)"),
    Option("PUSHGO_DB_STATEMENT_TIMEOUT_MS", "db_statement_timeout_ms",
           _int_range(100, 86_400_000), "PostgreSQL statement_timeout (default 30000)"),
    Option("PUSHGO_DB_CONNECT_TIMEOUT_S", "db_connect_timeout_s", _int_range(2, 600),
           "PostgreSQL connect_timeout in seconds (default 10)"),
    Option("PUSHGO_DB_BUSY_TIMEOUT_MS", "db_busy_timeout_ms", _int_range(0, 600_000),
           "SQLite busy_timeout: how long a write waits for another process's lock "
           "(default 30000)"),
    Option("PUSHGO_PRIVATE_TRANSPORTS", "private_transports", _private_transports,
           "warp-link transports for the PushGo apps' private mode: wss (default, /private/ws "
           "on the HTTP port), tcp, quic, a comma list, true (all) or none"),
    Option("PUSHGO_PRIVATE_TCP_BIND", "private_tcp_bind", _addr,
           "listen address of the warp-link TCP transport (default 127.0.0.1:5223)"),
    Option("PUSHGO_PRIVATE_TCP_PORT", "private_tcp_port", _int_range(1, 65535),
           "the TCP port the apps are told to dial (default 5223; another when a proxy or "
           "NAT forwards it)"),
    Option("PUSHGO_PRIVATE_TLS_CERT", "private_tls_cert", _file,
           "PEM certificate chain of the warp-link TCP transport"),
    Option("PUSHGO_PRIVATE_TLS_KEY", "private_tls_key", _file,
           "PEM private key of the warp-link TCP transport"),
    Option("PUSHGO_PRIVATE_TCP_TLS_OFFLOAD", "private_tcp_tls_offload", _bool,
           "plain TCP on the warp-link listener: a proxy in front terminates TLS"),
    Option("PUSHGO_PRIVATE_TCP_PROXY_PROTOCOL", "private_tcp_proxy_protocol", _bool,
           "expect a PROXY protocol v1 header on each warp-link TCP connection"),
    Option("PUSHGO_PRIVATE_QUIC_BIND", "private_quic_bind", _addr,
           "UDP listen address of the warp-link QUIC transport (default 127.0.0.1:5223)"),
    Option("PUSHGO_PRIVATE_QUIC_PORT", "private_quic_port", _int_range(1, 65535),
           "the QUIC port the apps are told to dial (default 5223)"),
    Option("PUSHGO_PRIVATE_MAX_SESSIONS", "private_max_sessions", _int_range(1, 1_000_000),
           "live warp-link sessions per process, all transports (default 8192)"),
)

OPTIONS_BY_ENV = {opt.env: opt for opt in OPTIONS}


def _check_private_tcp(s: Settings) -> None:
    """TLS TCP and QUIC need a certificate and key that load together (checked at
    start-up)."""
    if (s.private_tls_cert is None) != (s.private_tls_key is None):
        missing = "PUSHGO_PRIVATE_TLS_KEY" if s.private_tls_key is None \
            else "PUSHGO_PRIVATE_TLS_CERT"
        raise SettingsError(f"missing {missing}: TLS needs PUSHGO_PRIVATE_TLS_CERT and "
                            "PUSHGO_PRIVATE_TLS_KEY")
    tls = [t for t in s.private_transports
           if t == "quic" or (t == "tcp" and not s.private_tcp_tls_offload)]
    if not tls:
        return
    if s.private_tls_cert is None or s.private_tls_key is None:
        raise SettingsError(f"missing PUSHGO_PRIVATE_TLS_CERT: the {tls[0]} private transport "
                            "needs a certificate and key"
                            + (" (or PUSHGO_PRIVATE_TCP_TLS_OFFLOAD=true)"
                               if tls[0] == "tcp" else ""))
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            s.private_tls_cert, s.private_tls_key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise SettingsError("invalid PUSHGO_PRIVATE_TLS_CERT/PUSHGO_PRIVATE_TLS_KEY: "
                            f"they do not load as a PEM chain and its key ({reason})") from None


def load(env: Mapping[str, str], overrides: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an environment mapping, then ``overrides`` (flags, keyed by env name).

    Empty environment values count as unset (as shells often export ``VAR=``).
    """
    values: dict[str, Any] = {}
    merged = {k: v for k, v in env.items() if k in OPTIONS_BY_ENV and v != ""}
    if overrides:
        merged.update(overrides)
    for name, raw in merged.items():
        opt = OPTIONS_BY_ENV[name]
        try:
            parsed = opt.parse(raw)
        except ValueError as exc:
            shown = "" if opt.secret else f"={raw.strip()[:80]!r}"
            raise SettingsError(f"invalid {name}{shown}: {exc}") from None
        if opt.field is None:
            values["http_host"], values["http_port"] = parsed
        else:
            values[opt.field] = parsed
    if "token_service_url" not in values and "PUSHGO_TOKEN_SERVICE_URL" in env:
        values["token_service_url"] = None  # set but empty: no token service
    settings = Settings(**values)
    _check_together(settings)
    return settings


def _check_together(s: Settings) -> None:
    _check_private_tcp(s)
    if (s.wns_client_id is None) != (s.wns_client_secret is None):
        missing = "PUSHGO_WNS_CLIENT_SECRET" if s.wns_client_secret is None \
            else "PUSHGO_WNS_CLIENT_ID"
        raise SettingsError(f"missing {missing}: WNS needs PUSHGO_WNS_CLIENT_ID and "
                            "PUSHGO_WNS_CLIENT_SECRET")
    apns = {
        "PUSHGO_APNS_KEY_FILE": s.apns_key_file,
        "PUSHGO_APNS_KEY_ID": s.apns_key_id,
        "PUSHGO_APNS_TEAM_ID": s.apns_team_id,
        "PUSHGO_APNS_TOPIC": s.apns_topic,
    }
    given = [k for k, v in apns.items() if v is not None]
    if given == ["PUSHGO_APNS_TOPIC"] and s.token_service_url:
        return  # a topic alone is fine with a token service
    if given and len(given) != len(apns):
        missing = next(k for k, v in apns.items() if v is None)
        raise SettingsError(f"missing {missing}: APNs needs " + ", ".join(apns))
