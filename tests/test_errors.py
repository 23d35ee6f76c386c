"""The error-code registry (pushgo.protocol.errors, re-exported as pushgo.errors.codes): each
code declared once with a 4xx/5xx status; every code the package emits comes from it (no
string literal left at a raising site); each code reaches the wire with its registered status
through the API envelope and the MCP tool errors; and a few statuses/codes end to end."""

from __future__ import annotations

import ast
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import pushgo
from pushgo.api.envelope import _TEXT, error_response
from pushgo.app import Gateway
from pushgo.errors import ErrorCode, GatewayError, PasswordMismatch, StoreUnavailable, by_code, codes
from pushgo.mcp.dispatcher import tool_error
from pushgo.protocol import errors as registry
from pushgo.protocol.ids import encode_channel_id
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_error, new_channel, register, send

PACKAGE = Path(pushgo.__file__).resolve().parent
#: Emulated providers (Google's OAuth, APNs) speak their own error vocabularies.
NOT_SCANNED = ("testing",)
ALL = {**registry.REGISTRY}
OAUTH = {**registry.OAUTH_REGISTRY}


def constants() -> dict[str, ErrorCode]:
    return {name: value for name, value in vars(registry).items() if isinstance(value, ErrorCode)}


# -- the registry -----------------------------------------------------------------------------


def test_every_code_is_declared_once_with_an_error_status():
    for table in (ALL, OAUTH):
        assert table, "empty registry"
        assert len({entry.code for entry in table.values()}) == len(table)
        for code, entry in table.items():
            assert entry.code == code
            assert 400 <= entry.status <= 599, entry
            assert entry.category == registry.category_of(entry.status), entry
            assert entry.retryable == (entry.status == 429 or entry.status >= 500), entry
    with pytest.raises(ValueError, match="declared twice"):
        registry._declare(dict(ALL), "password_mismatch", 403)


def test_every_constant_is_in_its_table_under_its_own_name():
    found = constants()
    assert {id(v) for v in found.values()} == {id(v) for v in (*ALL.values(), *OAUTH.values())}
    for name, entry in found.items():
        if OAUTH.get(entry.code) is entry:
            assert name == "OAUTH_" + entry.code.upper()
        else:
            assert ALL[entry.code] is entry and name == entry.code.upper()
            assert by_code(entry.code) is entry


def test_categories_are_the_envelope_s_and_known_codes_keep_their_wire_shape():
    for locale in _TEXT:
        assert {entry.category for entry in ALL.values()} <= set(_TEXT[locale])
    pinned = {"password_mismatch": (403, "permission", False),
              "authentication_failed": (401, "auth", False),
              "channel_not_found": (404, "not_found", False),
              "op_id_conflict": (409, "conflict", False),
              "payload_too_large": (413, "validation", False),
              "unsupported_media_type": (415, "validation", False),
              "invalid_json_syntax": (400, "validation", False),
              "internal_error": (500, "internal", True),
              "store_unavailable": (503, "too_busy", True),
              "not_ready": (503, "too_busy", True)}
    for code, shape in pinned.items():
        entry = by_code(code)
        assert (entry.status, entry.category, entry.retryable) == shape


def test_exceptions_carry_their_code_and_default_one():
    exc = GatewayError(codes.CHANNEL_NOT_FOUND, "channel not found")
    assert (exc.code, exc.status, exc.message, exc.error) == (
        "channel_not_found", 404, "channel not found", codes.CHANNEL_NOT_FOUND)
    assert (PasswordMismatch().code, PasswordMismatch().status) == ("password_mismatch", 403)
    assert PasswordMismatch().message == "invalid channel password"
    assert StoreUnavailable(message="down").status == 503
    passed_through = GatewayError(codes.HTTP_ERROR, "teapot", status=418)
    assert (passed_through.status, passed_through.category) == (418, "validation")


# -- every code round-trips to the wire ---------------------------------------------------------


@pytest.mark.parametrize("entry", list(ALL.values()), ids=list(ALL))
def test_each_code_reaches_the_api_envelope_and_mcp_with_its_registered_status(entry: ErrorCode):
    resp = error_response(GatewayError(entry, "what went wrong"))
    assert resp.status_code == entry.status
    doc = json.loads(bytes(resp.body))
    assert doc["success"] is False
    assert (doc["error_code"], doc["error"]) == (entry.code, "what went wrong")
    problem = doc["problem"]
    assert (problem["code"], problem["status"]) == (entry.code, entry.status)
    assert (problem["category"], problem["retryable"]) == (entry.category, entry.retryable)
    structured = tool_error(GatewayError(entry, "what went wrong"))["structuredContent"]
    assert structured == {"error_code": entry.code, "error": "what went wrong",
                          "status": entry.status}


# -- no literal left in the package -------------------------------------------------------------


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in NOT_SCANNED or rel == Path("protocol/errors.py"):
            continue
        yield rel, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")


def error_classes(trees: list[tuple[Path, ast.Module]]) -> set[str]:
    """GatewayError and every class deriving from it (by name), plus the OAuth errors."""
    bases: dict[str, set[str]] = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(_name(b) for b in node.bases)
    found = {"GatewayError"}
    while True:
        more = {cls for cls, parents in bases.items() if parents & found} - found
        if not more:
            break
        found |= more
    return found | {"OAuthError", "Unauthorized", "_Redirect"}


def _is_code_literal(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and (node.value in ALL or node.value in OAUTH))


def literal_sites(rel: Path, tree: ast.Module, classes: set[str]) -> Iterator[str]:
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and _name(node.func) in classes:
            if any(kw.arg == "code" for kw in node.keywords):
                yield f"{where}: code= keyword"
            if any(_is_code_literal(arg) for arg in node.args):
                yield f"{where}: code literal argument"
        elif isinstance(node, ast.Compare) and _name(node.left) in ("code", "error"):
            for right in node.comparators:
                items = right.elts if isinstance(right, ast.Tuple | ast.List | ast.Set) else [right]
                if any(_is_code_literal(item) for item in items):
                    yield f"{where}: compared with a literal code"
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (isinstance(key, ast.Constant) and key.value in ("error_code", "error")
                        and value is not None and _is_code_literal(value)):
                    yield f"{where}: literal {key.value} in a response"
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
            key, value = node.elts
            if isinstance(key, ast.Constant) and key.value == "error" and _is_code_literal(value):
                yield f"{where}: literal error parameter"


def test_no_error_code_literal_is_left_at_a_raising_or_answering_site():
    trees = list(sources())
    assert len(trees) > 50  # the scan saw the package
    classes = error_classes(trees)
    assert {"InvalidInput", "FieldError", "ItemError", "NotFound", "Conflict"} <= classes
    offenders = [site for rel, tree in trees for site in literal_sites(rel, tree, classes)]
    assert offenders == []


def test_the_per_field_codes_of_the_field_rules_are_all_registered():
    """fields.token_id / timestamp / bounded_text name their code after the field
    (``invalid_<field>``, and ``<field>_required`` when required): each field passed in has
    both registered."""
    checked = 0
    for _, tree in sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call)
                    and _name(node.func) in ("token_id", "timestamp", "bounded_text")):
                continue
            field = node.args[1]
            assert isinstance(field, ast.Constant) and isinstance(field.value, str)
            assert f"invalid_{field.value}" in ALL, field.value
            required = next((kw.value for kw in node.keywords if kw.arg == "required"), None)
            if isinstance(required, ast.Constant) and required.value is True:
                assert f"{field.value}_required" in ALL, field.value
            checked += 1
    assert checked >= 10


# -- end to end: statuses and codes on the real HTTP interface ------------------------------------


async def test_wire_password_mismatch_and_channel_not_found(client: httpx.AsyncClient):
    cid = await new_channel(client)
    key = await register(client)
    resp = await client.post("/channel/subscribe", json={
        "device_key": key, "channel_id": cid, "password": "wrong-password"})
    doc = assert_error(resp, 403, "password_mismatch")
    assert (doc["problem"]["category"], doc["problem"]["retryable"]) == ("permission", False)
    unknown = encode_channel_id(secrets.token_bytes(16))
    resp = await client.post("/channel/subscribe", json={
        "device_key": key, "channel_id": unknown, "password": PASSWORD})
    assert_error(resp, 404, "channel_not_found")


async def test_wire_payload_too_large_and_op_id_conflict(client: httpx.AsyncClient):
    key = await register(client)
    resp = await client.post("/device/register", content=b"{" + b" " * (33 * 1024) + b"}",
                             headers={"content-type": "application/json"})
    assert_error(resp, 413, "payload_too_large")
    cid = await new_channel(client, key)
    await send(client, cid, op_id="deploy-1", body="one")
    resp = await client.post("/message", json={"channel_id": cid, "password": PASSWORD,
                                               "title": "hello", "op_id": "deploy-1",
                                               "body": "two"})
    doc = assert_error(resp, 409, "op_id_conflict")
    assert doc["problem"]["category"] == "conflict"


async def test_wire_authentication_failed(db_url: str):
    gateway = Gateway(make_settings(db_url, token="gateway-token-1"))
    async with gateway.running():
        transport = httpx.ASGITransport(app=gateway.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://pushgo.test") as c:
            resp = await c.post("/device/register", json={"platform": "ios"})
            doc = assert_error(resp, 401, "authentication_failed")
            assert resp.headers["www-authenticate"] == "Bearer"
            assert doc["problem"]["category"] == "auth"
            ok = await c.post("/device/register", json={"platform": "ios"},
                              headers={"authorization": "Bearer gateway-token-1"})
            assert ok.status_code == 200
