"""MockFCM: a real HTTP/2-over-TLS peer for FCM HTTP v1 (`POST /v1/projects/<p>/messages:send`)
and for the service account's OAuth token endpoint (`POST /token`, JWT-bearer grant), which is
also served over HTTP/1.1 to clients that negotiate it.

Owns: the token endpoint (RS256 assertion checked against the service account's public key:
iss, aud, scope, iat/exp; the access tokens it issues are an `AccessTokens` table), the send rules
(Bearer token issued here, request shape, data values all strings, android priority/ttl, size),
FCM's error body (`{"error": {code, message, status, details: [FcmError{errorCode}]}}`),
scripted per-token errors and transient failures, the records, the `ServiceAccount` helper
(JSON file for tests) and a CLI:

    python -m pushgo.testing.mock_fcm --port 0

Imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from pushgo.testing.access_tokens import AccessTokens
from pushgo.testing.exchange import H2Settings, Outcome, Request, ResetStream, Response, json_response
from pushgo.testing.records import Recorder
from pushgo.testing.scripted import Countdown, ScriptedMock
from pushgo.testing.tls import LocalCA

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
CLOUD_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
MAX_TTL_S = 28 * 24 * 3600
MAX_DATA_BYTES = 4096
_SEND_RE = re.compile(r"/v1/projects/([^/]+)/messages:send")
_TTL_RE = re.compile(r"(\d+)(\.\d{1,9})?s")
_MESSAGE_FIELDS = frozenset({"name", "data", "notification", "android", "webpush", "apns", "fcm_options",
                             "token", "topic", "condition"})
_RESERVED_DATA_KEYS = frozenset({"from", "message_type", "gcm", "google"})

#: errorCode -> (HTTP status, google.rpc status, message)
FCM_ERRORS: dict[str, tuple[int, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT",
                         "The registration token is not a valid FCM registration token"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Messages sent'."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
    "UNSPECIFIED_ERROR": (500, "UNKNOWN", "Unknown error."),
}


# --------------------------------------------------------------------------- service account


@dataclass(frozen=True)
class ServiceAccount:
    """A Google service account (RSA key) as its JSON key file describes it."""

    project_id: str
    client_email: str
    private_key_id: str
    private_key_pem: str

    @classmethod
    def generate(cls, project_id: str = "pushgo-test", client_email: str | None = None) -> ServiceAccount:
        key = RSAKey.generate_key(2048)
        email = client_email or f"pushgo-sender@{project_id}.iam.gserviceaccount.com"
        return cls(project_id, email, secrets.token_hex(20), key.as_pem(private=True).decode())

    def public_key(self) -> RSAKey:
        private = RSAKey.import_key(self.private_key_pem)
        return RSAKey.import_key(private.as_pem(private=False))

    def info(self, token_uri: str) -> dict[str, str]:
        """The JSON key file's fields, with `token_uri` pointing where the gateway must ask."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }

    def write(self, path: str | Path, token_uri: str) -> Path:
        target = Path(path)
        target.write_text(json.dumps(self.info(token_uri), indent=2))
        target.chmod(0o600)
        return target

    def assertion(self, token_uri: str, *, scope: str = FCM_SCOPE, iat: float | None = None,
                  lifetime: int = 3600) -> str:
        """The RS256 JWT a client sends as `assertion` (for tests that drive the mock directly)."""
        issued = int(time.time() if iat is None else iat)
        claims = {"iss": self.client_email, "scope": scope, "aud": token_uri, "iat": issued,
                  "exp": issued + lifetime}
        key = RSAKey.import_key(self.private_key_pem)
        return jwt.encode({"alg": "RS256", "kid": self.private_key_id}, claims, key)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TokenGrant:
    """One request to the token endpoint; `access_token` is None when it was refused."""

    connection_id: int
    http_version: str
    status: int
    error: str | None
    access_token: str | None


@dataclass(frozen=True)
class FCMMessage:
    """One messages:send request as MockFCM saw and answered it (`status` None: refused stream)."""

    project: str
    token: str
    message: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    connection_id: int
    stream_id: int
    status: int | None
    error_code: str | None
    name: str | None

    @property
    def accepted(self) -> bool:
        return self.status == 200

    @property
    def data(self) -> dict[str, Any]:
        data = self.message.get("data")
        return data if isinstance(data, dict) else {}


@dataclass
class _Scripted:
    error_code: str
    retry_after: int | None
    times: int | None


class _Reject(Exception):
    def __init__(self, status: int, grpc_status: str, message: str,
                 details: list[dict[str, Any]] | None = None, error_code: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.grpc_status, self.message = status, grpc_status, message
        self.details = details or []
        self.error_code = error_code
        self.headers = headers or []


def _fcm_error(error_code: str, retry_after: int | None = None, message: str | None = None) -> _Reject:
    status, grpc_status, default = FCM_ERRORS.get(error_code, FCM_ERRORS["UNSPECIFIED_ERROR"])
    headers = [("retry-after", str(retry_after))] if retry_after is not None else []
    details = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    return _Reject(status, grpc_status, message or default, details, error_code, headers)


def _bad_field(field: str, description: str) -> _Reject:
    detail = {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": field, "description": description}]}
    return _Reject(400, "INVALID_ARGUMENT", description, [detail], "INVALID_ARGUMENT")


# --------------------------------------------------------------------------- the mock


class MockFCM(ScriptedMock):
    """Mock FCM v1 + OAuth token endpoint. Start with `async with mock.serving() as (host, port):`,
    then `mock.write_service_account(path)` gives the gateway its credentials file."""

    def __init__(self, *, project_id: str = "pushgo-test", service_account: ServiceAccount | None = None,
                 tls: LocalCA | None = None, host: str = "127.0.0.1", port: int = 0,
                 max_concurrent_streams: int = 100, access_token_lifetime: int = 3600,
                 clock: Callable[[], float] = time.time, check_auth: bool = True,
                 on_message: Callable[[FCMMessage], None] | None = None) -> None:
        super().__init__(self._handle, tls=tls, host=host, port=port,
                         settings=H2Settings(max_concurrent_streams=max_concurrent_streams),
                         alpn=("h2", "http/1.1"))
        self.project_id = project_id
        self.service_account = service_account or ServiceAccount.generate(project_id)
        self.access_token_lifetime = access_token_lifetime
        self.clock = clock
        #: False: any Bearer token is accepted on messages:send
        self.check_auth = check_auth
        self.on_message = on_message
        self.messages: Recorder[FCMMessage] = Recorder()
        self.token_grants: Recorder[TokenGrant] = Recorder()
        self._public_key = self.service_account.public_key()
        self._access_tokens = AccessTokens("ya29.mock.", lambda: self.clock())
        self._rejections: dict[str, _Scripted] = {}
        self._fail: Countdown[tuple[str, int | None]] = Countdown()

    @property
    def token_uri(self) -> str:
        return f"{self.origin}/token"

    def write_service_account(self, path: str | Path) -> Path:
        """Write the service-account JSON (token_uri -> this mock; call once serving)."""
        return self.service_account.write(path, self.token_uri)

    def env(self, credentials_file: str | Path) -> dict[str, str]:
        """Gateway settings pointing at this mock (writes the credentials file)."""
        return {
            "PUSHGO_FCM_ENDPOINT": self.origin,
            "PUSHGO_FCM_CREDENTIALS_FILE": str(self.write_service_account(credentials_file)),
            "PUSHGO_PROVIDER_CA_FILE": str(self.ca_file),
        }

    # -- configuration at runtime

    def issue_access_token(self, lifetime: float | None = None) -> str:
        """Mint a valid access token directly (skipping the OAuth exchange)."""
        return self._access_tokens.issue(self.access_token_lifetime if lifetime is None
                                         else lifetime)

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far is rejected from now on (401 UNAUTHENTICATED)."""
        self._access_tokens.revoke()

    def expire_access_tokens(self) -> None:
        """Same effect as revoking: the tokens stay known but are past their expiry."""
        self._access_tokens.expire()

    @property
    def valid_access_tokens(self) -> list[str]:
        return self._access_tokens.valid()

    def reject(self, token: str, error_code: str = "UNREGISTERED", *, retry_after: int | None = None,
               times: int | None = None) -> None:
        """Answer sends to `token` (all, or the next `times`) with this FCM error code."""
        self._rejections[token] = _Scripted(error_code, retry_after, times)

    def unregister(self, token: str) -> None:
        self.reject(token, "UNREGISTERED")

    def clear_rejections(self) -> None:
        self._rejections.clear()

    def fail_next(self, count: int = 1, error_code: str = "UNAVAILABLE", *,
                  retry_after: int | None = None) -> None:
        """The next `count` sends get this error (UNAVAILABLE 503, INTERNAL 500, QUOTA_EXCEEDED 429)."""
        self._fail.add(count, (error_code, retry_after))

    def throttle_next(self, count: int = 1, retry_after: int | None = 1) -> None:
        self.fail_next(count, "QUOTA_EXCEEDED", retry_after=retry_after)

    def reset_behaviours(self) -> None:
        self.clear_rejections()
        self._fail.clear()
        self.reset_faults()

    @property
    def accepted(self) -> list[FCMMessage]:
        return self.messages.matching(lambda m: m.accepted)

    async def wait_for(self, count: int = 1, predicate: Callable[[FCMMessage], bool] | None = None, *,
                       within: float = 5.0) -> list[FCMMessage]:
        return await self.messages.wait_for(count, predicate, within=within)

    # -- dispatch

    async def _handle(self, req: Request) -> Outcome:
        path = req.path.split("?", 1)[0]
        if path == "/token":
            response = self._token_endpoint(req)
        else:
            match = _SEND_RE.fullmatch(path)
            if match is None:
                response = _error_response(_Reject(404, "NOT_FOUND", f"Path {path} not found."))
            else:
                if self._refused():
                    message = _message_of(req.body)
                    self._keep(self._note(req, match.group(1), _token_of(message), message, None, None, None))
                    return ResetStream()
                note, response = self._send(req, match.group(1))
                if self.delay > 0:
                    await anyio.sleep(self.delay)  # cancelled (GOAWAY, reset) => never recorded
                self._keep(note)
                return response
        if self.delay > 0:
            await anyio.sleep(self.delay)
        return response

    def _keep(self, note: FCMMessage) -> None:
        self.messages.append(note)
        if self.on_message is not None:
            self.on_message(note)

    # -- OAuth token endpoint

    def _token_endpoint(self, req: Request) -> Response:
        try:
            if req.method != "POST":
                raise _OAuthError(405, "invalid_request", "Use POST.")
            form = parse_qs(req.body.decode("utf-8", "replace"))
            grant_type = form.get("grant_type", [""])[0]
            if grant_type != JWT_BEARER:
                raise _OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
            self._check_assertion(form.get("assertion", [""])[0])
        except _OAuthError as exc:
            grant = TokenGrant(req.connection_id, req.http_version, exc.status, exc.error, None)
            self.token_grants.append(grant)
            return json_response(exc.status, {"error": exc.error, "error_description": exc.description})
        token = self.issue_access_token()
        self.token_grants.append(TokenGrant(req.connection_id, req.http_version, 200, None, token))
        return json_response(200, {"access_token": token, "expires_in": self.access_token_lifetime,
                                   "token_type": "Bearer"}, [("cache-control", "no-cache, no-store")])

    def _check_assertion(self, assertion: str) -> None:
        sa = self.service_account
        try:
            decoded = jwt.decode(assertion, self._public_key, algorithms=["RS256"])
        except (JoseError, ValueError, TypeError) as exc:
            raise _OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from exc
        kid = decoded.header.get("kid")
        if kid is not None and kid != sa.private_key_id:
            raise _OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        claims = decoded.claims
        if claims.get("iss") != sa.client_email:
            raise _OAuthError(400, "invalid_grant", "Invalid email or User ID")
        audiences = {self.token_uri, f"https://localhost:{self.port}/token"}
        if claims.get("aud") not in audiences:
            raise _OAuthError(400, "invalid_grant", "Invalid JWT: Failed audience check.")
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.clock()
        if (not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600 or exp <= iat
                or iat > now + 300 or exp < now):
            raise _OAuthError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token "
                              "(60 minutes) and in a reasonable timeframe. Check your iat and exp values "
                              "in the JWT claim.")
        scopes = str(claims.get("scope", "")).split()
        if FCM_SCOPE not in scopes and CLOUD_SCOPE not in scopes:
            raise _OAuthError(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")

    # -- messages:send

    def _send(self, req: Request, project: str) -> tuple[FCMMessage, Response]:
        message: dict[str, Any] = {}
        token = ""
        try:
            if req.method != "POST":
                raise _Reject(404, "NOT_FOUND", "Method not found.")
            failure = self._fail.take()
            if failure is not None:
                raise _fcm_error(*failure)
            self._check_bearer(req.header("authorization"))
            if project != self.project_id:
                raise _Reject(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' "
                              f"denied on resource '//cloudresourcemanager.googleapis.com/projects/"
                              f"{project}' (or it may not exist).")
            message, validate_only = _parse_body(req.body)
            token = _token_of(message)
            _validate_message(message)
            scripted = self._rejections.get(token) if token else None
            if scripted is not None and scripted.times != 0:
                if scripted.times is not None:
                    scripted.times -= 1
                raise _fcm_error(scripted.error_code, scripted.retry_after)
        except _Reject as rej:
            note = self._note(req, project, token, message, rej.status, rej.error_code, None)
            return note, _error_response(rej)
        if validate_only:
            name = f"projects/{project}/messages/fake_message_id"
        else:
            name = f"projects/{project}/messages/0:{int(self.clock() * 1000)}%{secrets.token_hex(8)}"
        return self._note(req, project, token, message, 200, None, name), json_response(200, {"name": name})

    def _check_bearer(self, authorization: str | None) -> None:
        if self._access_tokens.accepts(authorization, check=self.check_auth):
            return
        raise _Reject(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
                      "OAuth 2 access token, login cookie or other valid authentication credential. See "
                      "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                      headers=[("www-authenticate", 'Bearer realm="https://accounts.google.com/", '
                                                    'error="invalid_token"')])

    def _note(self, req: Request, project: str, token: str, message: dict[str, Any], status: int | None,
              error_code: str | None, name: str | None) -> FCMMessage:
        headers: dict[str, str] = {}
        for key, value in req.headers:
            headers.setdefault(key, value)
        return FCMMessage(project, token, message, headers, req.body, req.connection_id, req.stream_id,
                          status, error_code, name)


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def _error_response(rej: _Reject) -> Response:
    error: dict[str, Any] = {"code": rej.status, "message": rej.message, "status": rej.grpc_status}
    if rej.details:
        error["details"] = rej.details
    return json_response(rej.status, {"error": error}, rej.headers)


def _token_of(message: dict[str, Any]) -> str:
    token = message.get("token")
    return token if isinstance(token, str) else ""


def _message_of(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    message = doc.get("message") if isinstance(doc, dict) else None
    return message if isinstance(message, dict) else {}


def _parse_body(body: bytes) -> tuple[dict[str, Any], bool]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise _Reject(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from exc
    if not isinstance(doc, dict):
        raise _Reject(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Root element must be "
                      "a message.")
    for name in doc:
        if name not in ("message", "validate_only", "validateOnly"):
            raise _bad_field(name, f'Invalid JSON payload received. Unknown name "{name}": '
                             "Cannot find field.")
    message = doc.get("message")
    if not isinstance(message, dict):
        raise _bad_field("message", "Request contains an invalid argument.")
    return message, bool(doc.get("validate_only") or doc.get("validateOnly"))


def _validate_message(message: dict[str, Any]) -> None:
    for name in message:
        if name not in _MESSAGE_FIELDS:
            raise _bad_field(f"message.{name}", f'Invalid JSON payload received. Unknown name "{name}" at '
                             "'message': Cannot find field.")
    targets = [name for name in ("token", "topic", "condition") if message.get(name)]
    if len(targets) != 1:
        raise _bad_field("message", "Exactly one of token, topic or condition must be specified.")
    token = message.get("token")
    if "token" in message and (not isinstance(token, str) or not token.strip()):
        raise _fcm_error("INVALID_ARGUMENT")
    data = message.get("data", {})
    if not isinstance(data, dict):
        raise _bad_field("message.data", "Invalid value at 'message.data' (type.googleapis.com/"
                         "google.protobuf.Struct)")
    size = 0
    for i, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            raise _bad_field(f"message.data[{i}].value",
                             f"Invalid value at 'message.data[{i}].value' (TYPE_STRING), {json.dumps(value)}")
        if key in _RESERVED_DATA_KEYS or key.startswith(("google.", "gcm.")):
            raise _bad_field(f"message.data[{i}].key", f"Invalid data key: {key}")
        size += len(key.encode()) + len(value.encode())
    if size > MAX_DATA_BYTES:
        raise _fcm_error("INVALID_ARGUMENT", message="Message is too big")
    android = message.get("android", {})
    if not isinstance(android, dict):
        raise _bad_field("message.android", "Invalid value at 'message.android'")
    priority = android.get("priority")
    if priority is not None and (not isinstance(priority, str) or priority.upper() not in ("NORMAL", "HIGH")):
        raise _bad_field("message.android.priority",
                         "Invalid value at 'message.android.priority' (type.googleapis.com/google."
                         f"firebase.fcm.v1.AndroidMessagePriority), {json.dumps(priority)}")
    ttl = android.get("ttl")
    if ttl is not None:
        ttl_match = _TTL_RE.fullmatch(ttl) if isinstance(ttl, str) else None
        if ttl_match is None or int(ttl_match.group(1)) > MAX_TTL_S:
            raise _bad_field("message.android.ttl", "Invalid value at 'message.android.ttl' "
                             f"(type.googleapis.com/google.protobuf.Duration), {json.dumps(ttl)}")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Run a MockFCM until Ctrl-C or SIGTERM (exit 0); print the gateway settings that point
    at it (a service-account file naming its token endpoint), one `export` line each."""
    import argparse
    import sys
    import tempfile

    from pushgo.testing import mockcli

    parser = argparse.ArgumentParser(prog="python -m pushgo.testing.mock_fcm", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", default="pushgo-test")
    parser.add_argument("--quiet", action="store_true", help="do not log each message")
    mockcli.add_common_arguments(parser)
    args = parser.parse_args(argv)

    def log(note: FCMMessage) -> None:
        print(f"{note.status or 'RST'} {note.error_code or ''} token={note.token[:16]}… "
              f"conn={note.connection_id} stream={note.stream_id}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="pushgo-mock-fcm-"))
    mock = MockFCM(project_id=args.project, host=args.host, port=args.port,
                   tls=mockcli.shared_ca(args), on_message=None if args.quiet else log)

    async def run() -> None:
        async with mock.serving():
            mockcli.print_settings(mock.env(workdir / "service-account.json"))
            await mockcli.until_signal()

    return mockcli.run(run, args.backend)


if __name__ == "__main__":
    raise SystemExit(main())
