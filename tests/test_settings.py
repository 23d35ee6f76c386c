"""Settings: defaults, every variable, one-line errors that name the variable and
never echo a secret, and the ``pushgo`` command's handling of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trustme

import pushgo
from pushgo import cli
from pushgo.settings import OPTIONS, OPTIONS_BY_ENV, Settings, SettingsError, load

APNS_VARS = ("PUSHGO_APNS_KEY_FILE", "PUSHGO_APNS_KEY_ID", "PUSHGO_APNS_TEAM_ID",
             "PUSHGO_APNS_TOPIC")


def settings_error(env: dict[str, str], overrides: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        load(env, overrides)
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message
    return message


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name in ("key.p8", "fcm.json", "ca.pem"):
        path = tmp_path / name
        path.write_text("x")
        out[name] = str(path)
    return out


# --- defaults and every variable ---------------------------------------------------------------


def test_an_empty_environment_gives_the_documented_defaults():
    s = load({})
    assert s == Settings()
    assert (s.http_host, s.http_port, s.http_addr) == ("127.0.0.1", 6666, "127.0.0.1:6666")
    assert s.db_url == "sqlite:///./pushgo-data/pushgo.db"
    assert s.token is None
    assert s.runtime_profile == "small"
    assert (s.mcp_enabled, s.mcp_dcr_enabled, s.sandbox_mode) == (False, True, False)
    assert s.public_base_url is None and s.mcp_predefined_clients is None
    assert (s.apns_configured, s.fcm_configured) == (False, False)
    assert s.apns_endpoint is None and s.fcm_endpoint is None and s.provider_ca_file is None
    assert s.token_service_url == "https://token.pushgo.dev"  # v1.2.9's default
    assert (s.wns_client_id, s.wns_client_secret, s.wns_token_url, s.wns_endpoint) == (None,) * 4
    assert not s.wns_configured
    assert s.instance_id is None  # the host name names this machine in delivery leases
    assert s.channel_subscriber_limit == 10000
    assert (s.log_level, s.async_backend) == ("info", "trio")
    assert s.private_ttl_s == 7 * 86400
    assert s.provider_connections == 2
    assert (s.provider_response_timeout_s, s.provider_ping_timeout_s,
            s.provider_write_timeout_s) == (30.0, 10.0, 10.0)
    assert s.trusted_proxies == ()  # X-Forwarded-For ignored unless a proxy is named
    assert (s.http_header_timeout_s, s.http_body_timeout_s) == (10.0, 30.0)
    assert s.http_max_connections == 1000
    assert (s.db_request_timeout_ms, s.db_statement_timeout_ms, s.db_connect_timeout_s,
            s.db_busy_timeout_ms) == (5000, 30_000, 10, 30_000)
    assert s.private_transports == ("wss",)  # /private/ws on the HTTP port, nothing to open
    assert (s.private_tcp_bind, s.private_tcp_port) == (("127.0.0.1", 5223), 5223)
    assert (s.private_tls_cert, s.private_tls_key) == (None, None)
    assert (s.private_tcp_tls_offload, s.private_tcp_proxy_protocol) == (False, False)
    assert (s.private_quic_bind, s.private_quic_port) == (("127.0.0.1", 5223), 5223)
    assert s.private_max_sessions == 8192


def test_the_public_profile_keeps_deliveries_30_days_unless_a_ttl_is_set():
    assert load({"PUSHGO_RUNTIME_PROFILE": "public"}).private_ttl_s == 30 * 86400
    both = {"PUSHGO_RUNTIME_PROFILE": "public", "PUSHGO_PRIVATE_TTL_SECONDS": "3600"}
    assert load(both).private_ttl_s == 3600


def test_every_variable_is_parsed_into_its_field(files):
    env = {
        "PUSHGO_HTTP_ADDR": "0.0.0.0:8080",
        "PUSHGO_DB_URL": "postgresql://u:pw@db:5432/pushgo",
        "PUSHGO_TOKEN": " gateway-token ",
        "PUSHGO_RUNTIME_PROFILE": "Public",
        "PUSHGO_MCP_ENABLED": "true",
        "PUSHGO_PUBLIC_BASE_URL": "https://push.example.com/base/",
        "PUSHGO_MCP_DCR_ENABLED": "off",
        "PUSHGO_MCP_PREDEFINED_CLIENTS": "a:b;c:d",
        "PUSHGO_MCP_AUTH_MODE": "Legacy",
        "PUSHGO_MCP_CIMD_ALLOW_LOOPBACK": "true",
        "PUSHGO_APNS_KEY_FILE": files["key.p8"],
        "PUSHGO_APNS_KEY_ID": "KEY123",
        "PUSHGO_APNS_TEAM_ID": "TEAM45",
        "PUSHGO_APNS_TOPIC": "com.example.app",
        "PUSHGO_SANDBOX_MODE": "yes",
        "PUSHGO_FCM_CREDENTIALS_FILE": files["fcm.json"],
        "PUSHGO_APNS_ENDPOINT": "https://127.0.0.1:8443/",
        "PUSHGO_FCM_ENDPOINT": "https://fcm.test",
        "PUSHGO_PROVIDER_CA_FILE": files["ca.pem"],
        "PUSHGO_TOKEN_SERVICE_URL": "http://tokens.internal:9000/v1/",
        "PUSHGO_WNS_CLIENT_ID": " ms-app://s-1-15-2-42 ",
        "PUSHGO_WNS_CLIENT_SECRET": "wns-secret",
        "PUSHGO_WNS_TOKEN_URL": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
        "PUSHGO_WNS_ENDPOINT": "https://127.0.0.1:9443/",
        "PUSHGO_APPS_FILE": files["fcm.json"],
        "PUSHGO_WEBPUSH_ENABLED": "off",
        "PUSHGO_VAPID_SUBJECT": " mailto:ops@example.com ",
        "PUSHGO_WEBPUSH_ALLOW_LOOPBACK": "on",
        "PUSHGO_CHANNEL_SUBSCRIBER_LIMIT": "250000",
        "PUSHGO_CHANNEL_RATE_PER_S": " 2.5 ",
        "PUSHGO_CHANNEL_DAILY_NOTIFICATIONS": "1000",
        "PUSHGO_LOG_LEVEL": "DEBUG",
        "PUSHGO_ASYNC_BACKEND": "asyncio",
        "PUSHGO_PRIVATE_TTL_SECONDS": "86400",
        "PUSHGO_PROVIDER_CONNECTIONS": "8",
        "PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S": "45",
        "PUSHGO_PROVIDER_PING_TIMEOUT_S": " 2.5 ",
        "PUSHGO_PROVIDER_WRITE_TIMEOUT_S": "0.5",
        "PUSHGO_DELIVERY_LEASE_SECONDS": "5",
        "PUSHGO_INSTANCE_ID": " edge-1.eu ",
        "PUSHGO_WORKERS": "4",
        "PUSHGO_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16,fd00::/8",
        "PUSHGO_HTTP_HEADER_TIMEOUT_S": "2.5",
        "PUSHGO_HTTP_BODY_TIMEOUT_S": " 0.5 ",
        "PUSHGO_HTTP_MAX_CONNECTIONS": "20000",
        "PUSHGO_DB_REQUEST_TIMEOUT_MS": "1500",
        "PUSHGO_DB_STATEMENT_TIMEOUT_MS": "20000",
        "PUSHGO_DB_CONNECT_TIMEOUT_S": "3",
        "PUSHGO_DB_BUSY_TIMEOUT_MS": "0",
        "PUSHGO_PRIVATE_TRANSPORTS": " WSS,tcp,wss ",
        "PUSHGO_PRIVATE_QUIC_BIND": "[::]:4433",
        "PUSHGO_PRIVATE_QUIC_PORT": "443",
        "PUSHGO_PRIVATE_MAX_SESSIONS": "20000",
        "PUSHGO_PRIVATE_TCP_BIND": "0.0.0.0:15223",
        "PUSHGO_PRIVATE_TCP_PORT": "443",
        "PUSHGO_PRIVATE_TLS_CERT": files["ca.pem"],
        "PUSHGO_PRIVATE_TLS_KEY": files["key.p8"],
        "PUSHGO_PRIVATE_TCP_TLS_OFFLOAD": "true",
        "PUSHGO_PRIVATE_TCP_PROXY_PROTOCOL": "yes",
    }
    assert set(env) == set(OPTIONS_BY_ENV), "a PUSHGO_* variable is not covered here"
    s = load(env)
    assert msgspec.structs.asdict(s) == {
        "http_host": "0.0.0.0", "http_port": 8080,
        "db_url": "postgresql://u:pw@db:5432/pushgo",
        "token": "gateway-token",
        "runtime_profile": "public",
        "mcp_enabled": True,
        "public_base_url": "https://push.example.com/base",
        "mcp_dcr_enabled": False,
        "mcp_predefined_clients": "a:b;c:d",
        "mcp_auth_mode": "legacy",
        "mcp_cimd_allow_loopback": True,
        "apns_key_file": files["key.p8"], "apns_key_id": "KEY123", "apns_team_id": "TEAM45",
        "apns_topic": "com.example.app",
        "sandbox_mode": True,
        "fcm_credentials_file": files["fcm.json"],
        "apns_endpoint": "https://127.0.0.1:8443",
        "fcm_endpoint": "https://fcm.test",
        "provider_ca_file": files["ca.pem"],
        "token_service_url": "http://tokens.internal:9000/v1",
        "wns_client_id": "ms-app://s-1-15-2-42",
        "wns_client_secret": "wns-secret",
        "wns_token_url": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
        "wns_endpoint": "https://127.0.0.1:9443",
        "apps_file": files["fcm.json"],
        "webpush_enabled": False,
        "vapid_subject": "mailto:ops@example.com",
        "webpush_allow_loopback": True,
        "channel_subscriber_limit": 250000,
        "channel_rate_per_s": 2.5,
        "channel_daily_notifications": 1000,
        "log_level": "debug",
        "async_backend": "asyncio",
        "private_ttl_seconds": 86400,
        "provider_connections": 8,
        "provider_response_timeout_s": 45.0,
        "provider_ping_timeout_s": 2.5,
        "provider_write_timeout_s": 0.5,
        "delivery_lease_seconds": 5,
        "instance_id": "edge-1.eu",
        "workers": 4,
        "trusted_proxies": ("10.0.0.1/32", "192.168.0.0/16", "fd00::/8"),
        "http_header_timeout_s": 2.5,
        "http_body_timeout_s": 0.5,
        "http_max_connections": 20000,
        "db_request_timeout_ms": 1500,
        "db_statement_timeout_ms": 20000,
        "db_connect_timeout_s": 3,
        "db_busy_timeout_ms": 0,
        "private_transports": ("tcp", "wss"),
        "private_tcp_bind": ("0.0.0.0", 15223),
        "private_tcp_port": 443,
        "private_tls_cert": files["ca.pem"],
        "private_tls_key": files["key.p8"],
        "private_tcp_tls_offload": True,
        "private_tcp_proxy_protocol": True,
        "private_quic_bind": ("::", 4433),
        "private_quic_port": 443,
        "private_max_sessions": 20000,
    }
    assert (s.apns_configured, s.fcm_configured, s.wns_configured) == (True, True, True)


def test_empty_values_count_as_unset_and_foreign_variables_are_ignored():
    env = {"PUSHGO_LOG_LEVEL": "", "PUSHGO_TOKEN": "", "PATH": "/bin", "PUSHGO_NOT_A_SETTING": "x"}
    assert load(env) == Settings()


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        load({}).http_port = 1  # type: ignore[misc]


def test_every_option_has_a_flag_named_after_its_variable():
    for opt in OPTIONS:
        assert opt.env.startswith("PUSHGO_")
        assert opt.flag == "--" + opt.env[len("PUSHGO_"):].lower().replace("_", "-")
    assert OPTIONS_BY_ENV["PUSHGO_HTTP_ADDR"].flag == "--http-addr"


# --- bad values --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("PUSHGO_HTTP_ADDR", "8080"),
    ("PUSHGO_HTTP_ADDR", "localhost"),
    ("PUSHGO_HTTP_ADDR", ":8080"),
    ("PUSHGO_HTTP_ADDR", "::1:8080"),
    ("PUSHGO_HTTP_ADDR", "[::1]"),
    ("PUSHGO_HTTP_ADDR", "host:65536"),
    ("PUSHGO_HTTP_ADDR", "host:-1"),
    ("PUSHGO_HTTP_ADDR", "host:123456"),
    ("PUSHGO_RUNTIME_PROFILE", "huge"),
    ("PUSHGO_MCP_ENABLED", "maybe"),
    ("PUSHGO_MCP_DCR_ENABLED", "2"),
    ("PUSHGO_SANDBOX_MODE", "yes please"),
    ("PUSHGO_PUBLIC_BASE_URL", "push.example.com"),
    ("PUSHGO_PUBLIC_BASE_URL", "ftp://push.example.com"),
    ("PUSHGO_PUBLIC_BASE_URL", "https://push.example.com/?q=1"),
    ("PUSHGO_PUBLIC_BASE_URL", "https://push.example.com/#top"),
    ("PUSHGO_APNS_ENDPOINT", "http://api.push.apple.com"),
    ("PUSHGO_APNS_ENDPOINT", "https://api.push.apple.com/3/device"),
    ("PUSHGO_FCM_ENDPOINT", "https://fcm.test:99999"),
    ("PUSHGO_FCM_ENDPOINT", "https://"),
    ("PUSHGO_TOKEN_SERVICE_URL", "tokens.internal"),
    ("PUSHGO_WNS_TOKEN_URL", "http://login.live.com/accesstoken.srf"),
    ("PUSHGO_WNS_TOKEN_URL", "login.live.com/accesstoken.srf"),
    ("PUSHGO_WNS_TOKEN_URL", "https://login.live.com:99999/accesstoken.srf"),
    ("PUSHGO_WNS_ENDPOINT", "https://127.0.0.1:9443/w/"),
    ("PUSHGO_WNS_ENDPOINT", "http://127.0.0.1:9443"),
    ("PUSHGO_APNS_KEY_FILE", "/no/such/key.p8"),
    ("PUSHGO_FCM_CREDENTIALS_FILE", "/no/such/fcm.json"),
    ("PUSHGO_PROVIDER_CA_FILE", "/no/such/ca.pem"),
    ("PUSHGO_CHANNEL_SUBSCRIBER_LIMIT", "0"),
    ("PUSHGO_CHANNEL_SUBSCRIBER_LIMIT", "many"),
    ("PUSHGO_CHANNEL_SUBSCRIBER_LIMIT", "100000001"),
    ("PUSHGO_CHANNEL_SUBSCRIBER_LIMIT", "1.5"),
    ("PUSHGO_LOG_LEVEL", "loud"),
    ("PUSHGO_LOG_LEVEL", "lo\nud"),
    ("PUSHGO_ASYNC_BACKEND", "curio"),
    ("PUSHGO_PRIVATE_TTL_SECONDS", "59"),
    ("PUSHGO_PRIVATE_TTL_SECONDS", str(30 * 86400 + 1)),
    ("PUSHGO_PROVIDER_CONNECTIONS", "0"),
    ("PUSHGO_PROVIDER_CONNECTIONS", "65"),
    ("PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S", "0"),
    ("PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S", "3601"),
    ("PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S", "30s"),
    ("PUSHGO_PROVIDER_PING_TIMEOUT_S", "-1"),
    ("PUSHGO_PROVIDER_PING_TIMEOUT_S", "inf"),
    ("PUSHGO_PROVIDER_WRITE_TIMEOUT_S", "nan"),
    ("PUSHGO_PROVIDER_WRITE_TIMEOUT_S", "601"),
    ("PUSHGO_HTTP_HEADER_TIMEOUT_S", "0"),
    ("PUSHGO_HTTP_HEADER_TIMEOUT_S", "nan"),
    ("PUSHGO_HTTP_BODY_TIMEOUT_S", "soon"),
    ("PUSHGO_HTTP_BODY_TIMEOUT_S", "3601"),
    ("PUSHGO_HTTP_MAX_CONNECTIONS", "0"),
    ("PUSHGO_INSTANCE_ID", "edge 1"),
    ("PUSHGO_INSTANCE_ID", "e" * 65),
    ("PUSHGO_INSTANCE_ID", "edge/1"),
    ("PUSHGO_HTTP_MAX_CONNECTIONS", "1.5"),
    ("PUSHGO_DB_URL", "mysql://root@db/pushgo"),
    ("PUSHGO_DB_REQUEST_TIMEOUT_MS", "99"),
    ("PUSHGO_DB_REQUEST_TIMEOUT_MS", "5s"),
    ("PUSHGO_DB_STATEMENT_TIMEOUT_MS", "0"),
    ("PUSHGO_DB_CONNECT_TIMEOUT_S", "1"),
    ("PUSHGO_DB_CONNECT_TIMEOUT_S", "601"),
    ("PUSHGO_DB_BUSY_TIMEOUT_MS", "-1"),
    ("PUSHGO_TRUSTED_PROXIES", "proxy.internal"),
    ("PUSHGO_TRUSTED_PROXIES", "10.0.0.0/33"),
    ("PUSHGO_TRUSTED_PROXIES", " , "),
    ("PUSHGO_TOKEN", "   "),
    ("PUSHGO_MCP_PREDEFINED_CLIENTS", " \t "),
    ("PUSHGO_PRIVATE_TRANSPORTS", "http3"),
    ("PUSHGO_PRIVATE_QUIC_BIND", "localhost"),
    ("PUSHGO_PRIVATE_QUIC_PORT", "0"),
    ("PUSHGO_PRIVATE_MAX_SESSIONS", "0"),
    ("PUSHGO_PRIVATE_TRANSPORTS", "wss,smtp"),
    ("PUSHGO_PRIVATE_TCP_BIND", "5223"),
    ("PUSHGO_PRIVATE_TCP_PORT", "0"),
    ("PUSHGO_PRIVATE_TCP_PORT", "65536"),
    ("PUSHGO_PRIVATE_TLS_CERT", "/no/such/cert.pem"),
    ("PUSHGO_PRIVATE_TLS_KEY", "/no/such/key.pem"),
    ("PUSHGO_PRIVATE_TCP_TLS_OFFLOAD", "maybe"),
    ("PUSHGO_PRIVATE_TCP_PROXY_PROTOCOL", "2"),
    ("PUSHGO_VAPID_SUBJECT", "ops@example.com"),
    ("PUSHGO_VAPID_SUBJECT", "http://example.com"),
    ("PUSHGO_WEBPUSH_ENABLED", "maybe"),
    ("PUSHGO_CHANNEL_RATE_PER_S", "0"),
    ("PUSHGO_CHANNEL_RATE_PER_S", "nan"),
    ("PUSHGO_CHANNEL_DAILY_NOTIFICATIONS", "0"),
])
def test_a_bad_value_is_one_line_naming_its_variable(name, value):
    message = settings_error({name: value})
    assert name in message
    assert message.startswith(f"invalid {name}")


def test_a_file_path_with_a_newline_still_gives_one_line():
    message = settings_error({"PUSHGO_APNS_KEY_FILE": "/no/such\nkey.p8"})
    assert "PUSHGO_APNS_KEY_FILE" in message


@pytest.mark.parametrize("value", ["mysql://admin:hunter2-s3cret@db.internal/pushgo",
                                   "hunter2-s3cret", "sqlite:hunter2-s3cret"])
def test_a_bad_database_url_is_named_but_never_echoed(value):
    message = settings_error({"PUSHGO_DB_URL": value})
    assert message.startswith("invalid PUSHGO_DB_URL:")
    assert "hunter2" not in message and "s3cret" not in message


def test_secret_variables_never_echo_their_value():
    secret = {opt.env for opt in OPTIONS if opt.secret}
    assert secret == {"PUSHGO_DB_URL", "PUSHGO_TOKEN", "PUSHGO_MCP_PREDEFINED_CLIENTS",
                      "PUSHGO_WNS_CLIENT_SECRET"}
    for name in secret:
        # A flag can give a blank value (the environment's blanks count as unset).
        assert settings_error({}, {name: " \t "}).startswith(f"invalid {name}: ")


def test_non_secret_values_are_echoed_shortened_and_quoted():
    message = settings_error({"PUSHGO_LOG_LEVEL": "loud"})
    assert message == ("invalid PUSHGO_LOG_LEVEL='loud': expected one of debug, info, warning, "
                       "error")
    long = settings_error({"PUSHGO_RUNTIME_PROFILE": "x" * 500})
    assert "x" * 80 in long and "x" * 81 not in long


@pytest.mark.parametrize("given", [
    ("PUSHGO_APNS_KEY_FILE",),
    ("PUSHGO_APNS_KEY_FILE", "PUSHGO_APNS_KEY_ID"),
    ("PUSHGO_APNS_KEY_ID", "PUSHGO_APNS_TEAM_ID", "PUSHGO_APNS_TOPIC"),
    ("PUSHGO_APNS_TOPIC",),
])
def test_a_partial_apns_configuration_is_rejected_naming_a_missing_variable(files, given):
    values = {"PUSHGO_APNS_KEY_FILE": files["key.p8"], "PUSHGO_APNS_KEY_ID": "K",
              "PUSHGO_APNS_TEAM_ID": "T", "PUSHGO_APNS_TOPIC": "com.example"}
    # (a topic alone is fine with a token service, the default: here there is none)
    message = settings_error({"PUSHGO_TOKEN_SERVICE_URL": "off",
                              **{name: values[name] for name in given}})
    missing = [name for name in APNS_VARS if name not in given]
    assert message.startswith(f"missing {missing[0]}")
    assert all(name in message for name in APNS_VARS)


@pytest.mark.parametrize(("given", "missing"), [
    ({"PUSHGO_WNS_CLIENT_ID": "ms-app://s-1"}, "PUSHGO_WNS_CLIENT_SECRET"),
    ({"PUSHGO_WNS_CLIENT_SECRET": "hunter2"}, "PUSHGO_WNS_CLIENT_ID"),
])
def test_wns_needs_its_client_id_and_secret_together(given, missing):
    message = settings_error(given)
    assert message.startswith(f"missing {missing}") and "hunter2" not in message
    both = load({"PUSHGO_WNS_CLIENT_ID": "ms-app://s-1", "PUSHGO_WNS_CLIENT_SECRET": "x"})
    assert both.wns_configured and both.wns_token_url is None


def test_the_private_tcp_transport_needs_a_certificate_and_key_that_load(tmp_path: Path,
                                                                          files):
    assert settings_error({"PUSHGO_PRIVATE_TRANSPORTS": "tcp"}).startswith(
        "missing PUSHGO_PRIVATE_TLS_CERT")
    assert settings_error({"PUSHGO_PRIVATE_TLS_CERT": files["ca.pem"]}).startswith(
        "missing PUSHGO_PRIVATE_TLS_KEY")
    bad = settings_error({"PUSHGO_PRIVATE_TRANSPORTS": "tcp",
                          "PUSHGO_PRIVATE_TLS_CERT": files["ca.pem"],
                          "PUSHGO_PRIVATE_TLS_KEY": files["key.p8"]})
    assert bad.startswith("invalid PUSHGO_PRIVATE_TLS_CERT/PUSHGO_PRIVATE_TLS_KEY")
    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    good = load({"PUSHGO_PRIVATE_TRANSPORTS": "tcp", "PUSHGO_PRIVATE_TLS_CERT": str(cert),
                 "PUSHGO_PRIVATE_TLS_KEY": str(key)})
    assert good.private_transports == ("tcp",)
    offload = load({"PUSHGO_PRIVATE_TRANSPORTS": "tcp", "PUSHGO_PRIVATE_TCP_TLS_OFFLOAD": "1"})
    assert offload.private_tcp_tls_offload and offload.private_tls_cert is None
    assert settings_error({"PUSHGO_PRIVATE_TRANSPORTS": "quic",
                           "PUSHGO_PRIVATE_TCP_TLS_OFFLOAD": "1"}).startswith(
        "missing PUSHGO_PRIVATE_TLS_CERT: the quic private transport")  # QUIC is always TLS
    every = load({"PUSHGO_PRIVATE_TRANSPORTS": "true", "PUSHGO_PRIVATE_TLS_CERT": str(cert),
                  "PUSHGO_PRIVATE_TLS_KEY": str(key)})
    assert every.private_transports == ("quic", "tcp", "wss")


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("On", True),
    ("0", False), ("false", False), ("False", False), ("no", False), (" OFF ", False),
])
def test_booleans_accept_the_usual_spellings(raw, expected):
    s = load({"PUSHGO_MCP_ENABLED": raw, "PUSHGO_SANDBOX_MODE": raw,
              "PUSHGO_MCP_DCR_ENABLED": raw})
    assert (s.mcp_enabled, s.sandbox_mode, s.mcp_dcr_enabled) == (expected,) * 3


@pytest.mark.parametrize(("raw", "host", "port", "addr"), [
    ("0.0.0.0:80", "0.0.0.0", 80, "0.0.0.0:80"),
    ("localhost:6666", "localhost", 6666, "localhost:6666"),
    (" push.example.com:443 ", "push.example.com", 443, "push.example.com:443"),
    ("[::1]:7000", "::1", 7000, "[::1]:7000"),
    ("[::]:0", "::", 0, "[::]:0"),
    ("[2001:db8::1]:65535", "2001:db8::1", 65535, "[2001:db8::1]:65535"),
])
def test_the_listen_address_is_host_and_port_with_bracketed_ipv6(raw, host, port, addr):
    s = load({"PUSHGO_HTTP_ADDR": raw})
    assert (s.http_host, s.http_port, s.http_addr) == (host, port, addr)


@pytest.mark.parametrize(("name", "raw", "field", "value"), [
    ("PUSHGO_CHANNEL_SUBSCRIBER_LIMIT", "1", "channel_subscriber_limit", 1),
    ("PUSHGO_CHANNEL_SUBSCRIBER_LIMIT", "100000000", "channel_subscriber_limit", 100_000_000),
    ("PUSHGO_PRIVATE_TTL_SECONDS", "60", "private_ttl_seconds", 60),
    ("PUSHGO_PRIVATE_TTL_SECONDS", " 2592000 ", "private_ttl_seconds", 2_592_000),
    ("PUSHGO_DB_REQUEST_TIMEOUT_MS", "100", "db_request_timeout_ms", 100),
    ("PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S", "0.1", "provider_response_timeout_s", 0.1),
    ("PUSHGO_PROVIDER_RESPONSE_TIMEOUT_S", "3600", "provider_response_timeout_s", 3600.0),
    ("PUSHGO_PROVIDER_PING_TIMEOUT_S", "600", "provider_ping_timeout_s", 600.0),
    ("PUSHGO_PROVIDER_WRITE_TIMEOUT_S", "0.1", "provider_write_timeout_s", 0.1),
    ("PUSHGO_DB_CONNECT_TIMEOUT_S", "2", "db_connect_timeout_s", 2),
    ("PUSHGO_DB_BUSY_TIMEOUT_MS", "600000", "db_busy_timeout_ms", 600_000),
    ("PUSHGO_INSTANCE_ID", "e" * 64, "instance_id", "e" * 64),
    ("PUSHGO_INSTANCE_ID", "node-7.eu_west:2", "instance_id", "node-7.eu_west:2"),
    ("PUSHGO_DB_URL", "sqlite:////var/lib/pushgo.db", "db_url", "sqlite:////var/lib/pushgo.db"),
    ("PUSHGO_DB_URL", "postgres://h/db", "db_url", "postgres://h/db"),
    ("PUSHGO_DB_URL", "postgresql+psycopg://h/db", "db_url", "postgresql+psycopg://h/db"),
    ("PUSHGO_APNS_ENDPOINT", "https://[::1]:8443", "apns_endpoint", "https://[::1]:8443"),
    ("PUSHGO_PRIVATE_TRANSPORTS", "none", "private_transports", ()),
    ("PUSHGO_PRIVATE_TRANSPORTS", "false", "private_transports", ()),
    ("PUSHGO_PRIVATE_TCP_BIND", "[::]:5223", "private_tcp_bind", ("::", 5223)),
])
def test_range_edges_and_url_forms_are_accepted(name, raw, field, value):
    assert getattr(load({name: raw}), field) == value


def test_overrides_win_over_the_environment():
    s = load({"PUSHGO_LOG_LEVEL": "loud", "PUSHGO_HTTP_ADDR": "0.0.0.0:1"},
             {"PUSHGO_LOG_LEVEL": "error"})
    assert (s.log_level, s.http_port) == ("error", 1)


def test_cli_flags_become_overrides_of_their_variables():
    args = cli._parser().parse_args(["serve", "--log-level", "warning", "--http-addr",
                                     "[::1]:9000", "--sandbox-mode", "on"])
    s = cli.settings_from(args, {"PUSHGO_LOG_LEVEL": "loud", "PUSHGO_ASYNC_BACKEND": "asyncio"})
    assert (s.log_level, s.http_addr, s.sandbox_mode, s.async_backend) == (
        "warning", "[::1]:9000", True, "asyncio")


# --- the pushgo command ------------------------------------------------------------------------

ROOT = Path(pushgo.__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGO_")}
    clean["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), clean.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "pushgo.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd=ROOT,
                          env={**clean, **(env or {})})


def test_pushgo_version_prints_the_version():
    proc = run_cli("version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, pushgo.__version__ + "\n", "")


def test_serve_with_a_bad_setting_exits_2_with_one_line_naming_the_variable():
    proc = run_cli("serve", env={"PUSHGO_LOG_LEVEL": "loud"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "PUSHGO_LOG_LEVEL" in lines[0]


def test_serve_with_a_bad_database_url_names_it_without_the_password():
    proc = run_cli("serve", env={"PUSHGO_DB_URL": "mysql://root:hunter2@db/pushgo"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "PUSHGO_DB_URL" in lines[0]
    assert "hunter2" not in proc.stderr


def test_serve_flags_override_the_environment():
    # The flag repairs the bad PUSHGO_LOG_LEVEL; the next bad setting is the one reported.
    proc = run_cli("serve", "--log-level", "info", "--channel-subscriber-limit", "0",
                   env={"PUSHGO_LOG_LEVEL": "loud"})
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "PUSHGO_CHANNEL_SUBSCRIBER_LIMIT" in lines[0]
    assert "PUSHGO_LOG_LEVEL" not in proc.stderr


def test_a_bad_flag_value_is_reported_like_the_variable():
    proc = run_cli("serve", "--async-backend", "curio")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "PUSHGO_ASYNC_BACKEND" in lines[0]


def test_the_console_script_entry_point_is_pushgo_cli_main():
    import tomllib

    doc: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert doc["project"]["scripts"]["pushgo"] == "pushgo.cli:main"


# --- the token service's default ---------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    (None, "https://token.pushgo.dev"),  # unset: PushGo's public service, as v1.2.9
    ("", None), ("off", None), (" OFF ", None), ("none", None), ("false", None),
    ("http://127.0.0.1:8787/", "http://127.0.0.1:8787"),
])
def test_the_token_service_defaults_to_pushgos_and_can_be_turned_off(raw, expected):
    env = {} if raw is None else {"PUSHGO_TOKEN_SERVICE_URL": raw}
    assert load(env).token_service_url == expected
    if raw is not None:
        assert load({}, {"PUSHGO_TOKEN_SERVICE_URL": raw}).token_service_url == expected


def test_a_topic_alone_needs_the_token_service():
    assert load({"PUSHGO_APNS_TOPIC": "com.example"}).apns_topic == "com.example"
    message = settings_error({"PUSHGO_APNS_TOPIC": "com.example", "PUSHGO_TOKEN_SERVICE_URL": ""})
    assert message.startswith("missing PUSHGO_APNS_KEY_FILE")


def test_test_gateways_never_default_to_the_public_token_service():
    from tests.conftest import make_settings

    assert make_settings("sqlite://").token_service_url is None
    assert os.environ["PUSHGO_TOKEN_SERVICE_URL"] == "off"  # what a `pushgo serve` child gets


def test_the_vapid_subject_defaults_to_an_https_base_url_else_a_mailto_placeholder():
    assert load({}).webpush_subject == "mailto:postmaster@localhost"
    assert load({"PUSHGO_PUBLIC_BASE_URL": "http://push.lan"}).webpush_subject == \
        "mailto:postmaster@localhost"
    assert load({"PUSHGO_PUBLIC_BASE_URL": "https://push.example.com/"}).webpush_subject == \
        "https://push.example.com"
    assert load({"PUSHGO_PUBLIC_BASE_URL": "https://push.example.com",
                 "PUSHGO_VAPID_SUBJECT": "https://example.com/contact"}).webpush_subject == \
        "https://example.com/contact"
