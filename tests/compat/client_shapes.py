"""What every PushGo client reads from an answer: the envelope (``success``, ``data``; on
errors ``error``, ``error_code`` and a ``problem`` with ``code``, ``category``, ``status``)."""

from __future__ import annotations

from typing import Any

import httpx


def data_of(resp: httpx.Response) -> dict[str, Any]:
    """The ``data`` of a 2xx envelope, as the apps and senders take it."""
    assert 200 <= resp.status_code < 300, (resp.status_code, resp.text)
    doc = resp.json()
    assert doc["success"] is True, doc
    data: dict[str, Any] = doc.get("data") or {}
    return data


def problem_of(resp: httpx.Response) -> dict[str, Any]:
    """An error envelope as the apps decode it (``GatewayProblemPayload``, ``GatewayProblem``)."""
    doc = resp.json()
    assert doc["success"] is False
    assert isinstance(doc["error"], str) and doc["error_code"]
    problem: dict[str, Any] = doc["problem"]
    assert problem["code"] == doc["error_code"] and problem["status"] == resp.status_code
    assert isinstance(problem["category"], str) and isinstance(problem["retryable"], bool)
    return problem


def string_map(payload: Any) -> dict[str, str]:
    """The iOS app decodes a pulled payload as ``[String: String]``: every value a string."""
    assert isinstance(payload, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in payload.items()), payload
    return payload
