"""URL-mode elicitation for ``pushgo.channel.bind.start``: when the client can open a URL for
its user (it declared the ``elicitation.url`` capability), the gateway asks it to open the
bind page itself instead of handing the assistant a ``bind_url`` to relay, and answers once
the user has finished there, with the channels then bound.

Each protocol era as its revision defines it:

- initialize era (2025-11-25): an ``elicitation/create`` request (``mode: "url"``, the bind
  URL, an ``elicitationId``: the bind session id) on the tool call's stream; once the client
  accepts, the call waits for the bind session to complete, sends
  ``notifications/elicitation/complete`` and answers.
- 2026-07-28 (stateless, no server-to-client requests): the first call answers an
  ``input_required`` result whose ``inputRequests`` carry the same ``elicitation/create``
  (no ``elicitationId`` at that revision) and whose ``requestState`` names the bind session;
  the client retries with ``inputResponses``, and that call waits for the bind to complete.

A client without the capability gets ``bind_url`` as before. Waits are bounded by
``WAIT_S`` (and the bind session's own expiry, which ends them as ``expired``).

Must not import starlette.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from pushgo.mcp.auth import ChannelBinding
from pushgo.protocol import jsonrpc

if TYPE_CHECKING:
    from pushgo.mcp.tools import ToolContext

#: The key of the one input request of a 2026-07-28 ``input_required`` bind result.
KEY = "bind"
#: Longest a tool call waits for the user to answer and finish the page.
WAIT_S = 600.0
#: How often a waiting call re-reads its bind session (any process may complete it).
POLL_S = 1.0
COMPLETE = "notifications/elicitation/complete"
MESSAGES = {
    "bind": "Open this page to let the assistant use a pushgo channel: enter the channel id "
            "and its password there (they never pass through the assistant).",
    "revoke": "Open this page to take a pushgo channel away from the assistant: enter the "
              "channel id and its password there.",
}


@dataclass(frozen=True)
class InputRequired:
    """2026-07-28: the tool needs the client's input first (``inputRequests``, keyed by the
    server); the client retries the call with ``inputResponses`` and ``requestState``."""

    requests: dict[str, Any]
    state: str

    def wire(self) -> dict[str, Any]:
        return {"resultType": "input_required", "inputRequests": self.requests,
                "requestState": self.state}


def wants_url(capabilities: dict[str, Any]) -> bool:
    """The client declared URL-mode elicitation (``elicitation: {url: {}}``; an empty
    ``elicitation`` object means form mode only)."""
    elicitation = capabilities.get("elicitation")
    return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)


def _state(started: dict[str, Any]) -> str:
    raw = json.dumps({"s": started["bind_session_id"], "u": started["bind_url"],
                      "e": started["expires_at"]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unstate(state: str) -> dict[str, Any]:
    """The bind session a ``requestState`` names; only the caller's own sessions are found
    with it (binding.status checks), so an edited state finds nothing."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4)))
        sid, url, expires = doc["s"], doc["u"], doc["e"]
        if isinstance(sid, str) and isinstance(url, str) and isinstance(expires, int) \
                and f"bind_session_id={sid}" in url and len(state) <= 2048:
            return {"bind_session_id": sid, "bind_url": url, "expires_at": expires}
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        pass
    raise jsonrpc.RpcError(jsonrpc.INVALID_PARAMS, "requestState is not one this tool issued")


async def bind_start(binding: ChannelBinding, ctx: ToolContext, *, action: str,
                     requested_channel_id: str | None, redirect_uri: str | None,
                     lang: str | None) -> dict[str, Any] | InputRequired:
    if ctx.modern and ctx.request_state is not None:
        started = _unstate(ctx.request_state)
        response = (ctx.input_responses or {}).get(KEY)
        return await _finish(binding, ctx, started, _action(response))
    started = await binding.start(ctx.principal, action=action,
                                  requested_channel_id=requested_channel_id,
                                  redirect_uri=redirect_uri, lang=lang)
    if not wants_url(ctx.client_capabilities):
        return started
    params: dict[str, Any] = {"mode": "url", "message": MESSAGES.get(action, MESSAGES["bind"]),
                              "url": started["bind_url"]}
    if ctx.modern:
        return InputRequired({KEY: {"method": "elicitation/create", "params": params}},
                             _state(started))
    if ctx.ask is None:
        return started
    params["elicitationId"] = started["bind_session_id"]
    answer: Any = None
    with anyio.move_on_after(WAIT_S):
        try:
            answer = await ctx.ask("elicitation/create", params)
        except jsonrpc.RpcError:
            answer = None  # the client refused the request: the user has bind_url
    return await _finish(binding, ctx, started, _action(answer))


def _action(answer: Any) -> str:
    action = answer.get("action") if isinstance(answer, dict) else None
    return action if action in ("accept", "decline", "cancel") else "unanswered"


async def _finish(binding: ChannelBinding, ctx: ToolContext, started: dict[str, Any],
                  action: str) -> dict[str, Any]:
    """The bind result after the client's answer: when the user went to the page, wait for
    the bind session to end and say what it did."""
    sid = started["bind_session_id"]
    status = await binding.status(ctx.principal, sid)
    if action == "accept":
        with anyio.move_on_after(WAIT_S):
            while status["status"] == "pending":
                await anyio.sleep(POLL_S)
                status = await binding.status(ctx.principal, sid)
        if status["status"] == "completed" and not ctx.modern:
            await ctx.notify(jsonrpc.encode_notification(COMPLETE, {"elicitationId": sid}))
    out = {**started, "poll_after_ms": started.get("poll_after_ms", int(POLL_S * 1000)),
           **status, "elicitation": action}
    if status["status"] == "completed":
        out["channels"] = await binding.list_channels(ctx.principal)
    return out
