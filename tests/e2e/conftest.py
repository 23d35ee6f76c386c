"""The push-service mocks the Web Push and WNS end-to-end tests run against (helpers in
tests/e2e/push_services.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pushgo.testing.mock_webpush import MockWebPush
from pushgo.testing.mock_wns import MockWNS


@pytest.fixture
async def push() -> AsyncIterator[MockWebPush]:
    """MockWebPush, serving."""
    mock = MockWebPush()
    async with mock.serving():
        yield mock


@pytest.fixture
async def wns() -> AsyncIterator[MockWNS]:
    """MockWNS, serving."""
    mock = MockWNS()
    async with mock.serving():
        yield mock
