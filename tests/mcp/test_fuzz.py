"""Hypothesis-generated garbage on /mcp: random bytes, random JSON, and JSON-RPC messages with
real and random methods, params and tool arguments, under random header sets of both eras.
Every answer is below 500 and nothing is an internal error (JSON-RPC -32603 or a tool
result with ``internal_error``). Generation follows tests/api/test_fuzz.py: collect, then send.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from pushgo.mcp import schemas
from tests.api.test_fuzz import collect
from tests.mcp_helpers import (  # noqa: F401
    AUTH,
    MODERN,
    http_fixture,
    mcp_settings,
    meta,
    open_session,
    sqlite_db_url,
)

METHODS = ["initialize", "ping", "tools/list", "tools/call", "resources/list",
           "resources/templates/list", "resources/read", "server/discover",
           "subscriptions/listen", "notifications/initialized", "notifications/cancelled",
           "prompts/list", "logging/setLevel"]
TOOLS = ["pushgo.message.send", "pushgo.event.create", "pushgo.event.update",
         "pushgo.event.close", "pushgo.thing.create", "pushgo.thing.update",
         "pushgo.thing.archive", "pushgo.thing.delete", "pushgo.channel.bind.start",
         "pushgo.channel.bind.status", "pushgo.channel.list", "pushgo.channel.unbind",
         "pushgo.operation.cancel"]
FIELDS = sorted({*schemas.MESSAGE, *schemas.EVENT["close"], *schemas.EVENT["create"],
                 *schemas.THING["delete"], *schemas.THING["create"], "event_id", "thing_id",
                 "bind_session_id", "action", "requested_channel_id", "redirect_uri", "lang"})

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
ids = st.one_of(st.integers(), st.text(max_size=8), st.none(), st.booleans(), st.floats())
arguments = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
params = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(TOOLS), json_values),
    "arguments": st.one_of(arguments, json_values),
    "uri": st.one_of(st.sampled_from(["pushgo://channels", "pushgo://channels/" + "0" * 26,
                                      "pushgo://channels/x"]), json_values),
    "cursor": st.one_of(st.text(max_size=12), json_values),
    "protocolVersion": st.sampled_from(["2025-11-25", "2025-06-18", "x"]),
    "capabilities": json_values,
    "requestId": ids,
    "notifications": json_values,
    "_meta": st.one_of(st.just(meta()), json_values,
                       st.builds(lambda extra: {**meta(), **extra},
                                 st.dictionaries(st.sampled_from(
                                     ["progressToken", "io.modelcontextprotocol/protocolVersion",
                                      "io.modelcontextprotocol/clientCapabilities"]),
                                     json_values, max_size=2))),
})
messages = st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"])}, optional={
    "id": ids, "method": st.one_of(st.sampled_from(METHODS), st.text(max_size=12)),
    "params": st.one_of(params, json_values), "result": json_values, "error": json_values})
bodies = st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                   messages.map(lambda m: json.dumps(m).encode()))
header_sets = st.fixed_dictionaries({}, optional={
    "mcp-protocol-version": st.sampled_from([MODERN, "2025-11-25", "2025-06-18", "zzz", ""]),
    "mcp-method": st.one_of(st.sampled_from(METHODS), st.text(alphabet="abc/", max_size=8)),
    "mcp-name": st.one_of(st.sampled_from(TOOLS), st.just("=?base64?!!?=")),
    "session": st.sampled_from(["valid", "unknown"]),
    "accept": st.sampled_from(["application/json", "text/event-stream", "*/*", "text/html"]),
    "content-type": st.sampled_from(["application/json", "text/plain"]),
})
cases = st.tuples(bodies, header_sets, st.sampled_from(["POST", "POST", "GET", "DELETE"]))

#: Well-formed requests of either era whose params and tool arguments are garbage: these reach
#: the dispatcher and the tools, where a 500 would hide.
tool_calls = st.fixed_dictionaries({"name": st.sampled_from(TOOLS), "arguments": arguments})
well_formed = st.tuples(
    st.sampled_from(["legacy", "modern"]),
    st.one_of(st.tuples(st.just("tools/call"), tool_calls),
              st.tuples(st.sampled_from(METHODS), params)),
    st.integers(min_value=1, max_value=10**6))


def consistent(era: str, method: str, p: dict[str, Any], rid: int,
               sid: str) -> tuple[bytes, dict[str, str]]:
    headers = {**AUTH, "content-type": "application/json", "accept": "application/json"}
    p = dict(p)
    if era == "legacy":
        p.pop("_meta", None)
        headers.update({"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"})
    else:
        p["_meta"] = meta()
        headers.update({"mcp-protocol-version": MODERN, "mcp-method": method})
        for key in ("name", "uri"):
            if isinstance(p.get(key), str) and p[key].isascii() and p[key].isprintable():
                headers["mcp-name"] = p[key].strip() or "x"
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": p}
    return json.dumps(body).encode(), headers


async def test_garbage_never_gets_a_500_or_an_internal_error(http):
    sid = await open_session(http)
    wrong: list[str] = []
    seen: dict[int, int] = {}
    for body, hs, verb in collect(cases, 300):
        headers = {**AUTH, "content-type": "application/json",
                   "accept": "application/json, text/event-stream"}
        for key, value in hs.items():
            if key == "session":
                headers["mcp-session-id"] = sid if value == "valid" else "unknown"
            else:
                headers[key] = value
        if verb == "GET" and headers.get("mcp-session-id") == sid:
            # A valid GET opens a stream that stays open: only its refusals are in scope.
            headers["mcp-session-id"] = "unknown"
        if b"subscriptions/listen" in body:
            headers["accept"] = "application/json"  # a valid listen would stream forever
        resp = await http.request(verb, "/mcp", content=body, headers=headers)
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        text = resp.text
        if resp.status_code >= 500 or "-32603" in text or "internal_error" in text:
            wrong.append(f"{verb} {headers} {body!r} -> {resp.status_code} {text[:300]}")
    sid = await open_session(http)  # a garbage DELETE may have ended the first one
    for era, (method, p), rid in collect(well_formed, 300):
        body, headers = consistent(era, method, p, rid, sid)
        resp = await http.post("/mcp", content=body, headers=headers)
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        text = resp.text
        if resp.status_code >= 500 or "-32603" in text or "internal_error" in text:
            wrong.append(f"{headers} {body!r} -> {resp.status_code} {text[:300]}")
    assert not wrong, "\n".join(wrong[:10])
    assert {200, 400, 404, 406} <= set(seen), seen
    assert seen[200] > 100, seen
