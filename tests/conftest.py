"""Shared fixtures: every async test runs on Trio and asyncio; store-backed tests run on SQLite
and on a real PostgreSQL (each test in its own schema). Under CI=true an unreachable
PostgreSQL fails the run instead of skipping."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pushgo.app import Gateway
from pushgo.settings import Settings

pytest_plugins = ["tests.providers"]

PG_URL = os.environ.get("PUSHGO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# A `pushgo serve` a test starts inherits this: no test ever reaches PushGo's public token
# service, the default PUSHGO_TOKEN_SERVICE_URL (Settings built in a test have none either).
os.environ.setdefault("PUSHGO_TOKEN_SERVICE_URL", "off")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_pg_ok: bool | None = None


def pg_available() -> bool:
    global _pg_ok
    if _pg_ok is None:
        try:
            engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            engine.dispose()
            _pg_ok = True
        except Exception:
            _pg_ok = False
    return _pg_ok


def _require_pg() -> None:
    if not pg_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections live in a fresh schema, dropped afterwards."""
    _require_pg()
    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pushgo.db"
    return str(request.getfixturevalue("pg_schema_url"))


def make_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings for a test's gateway: no token service unless the test names one (the
    default, PushGo's public one, is never reached from a test)."""
    return Settings(db_url=db_url, **{"token_service_url": None, **overrides})


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to run its gateway with other settings."""
    return {}


@pytest.fixture
async def gateway(db_url: str, settings_overrides: dict[str, Any]) -> AsyncIterator[Gateway]:
    gw = Gateway(make_settings(db_url, **settings_overrides))
    async with gw.running():
        yield gw


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
