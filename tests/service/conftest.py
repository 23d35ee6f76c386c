"""The services driven directly (no HTTP) against a real store, on SQLite and PostgreSQL.
Channel passwords use a cheap scrypt cost here: the KDF's cost is not what these test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pushgo.service import Context, Services, passwords
from pushgo.store import Store
from tests.conftest import make_settings
from tests.service.support import Clock, Recorder


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "SCRYPT_N", 1 << 4)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module for other settings."""
    return {}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url, pool_size=2)
    s.migrate()
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def listener() -> Recorder:
    return Recorder()


@pytest.fixture
def ctx(store: Store, clock: Clock, listener: Recorder,
        settings_overrides: dict[str, Any]) -> Context:
    return Context(make_settings(store.url, **settings_overrides), store, listeners=[listener],
                   clock=clock)


@pytest.fixture
def svc(ctx: Context) -> Services:
    return Services.build(ctx)
