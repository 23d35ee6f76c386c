"""MockAPNs: a real HTTP/2-over-TLS peer answering `POST /3/device/<token>` like Apple's
provider API (token auth), for tests and benchmarks of the gateway's APNs sender.

Owns: the APNs request rules (validating mode: method, path, token format, provider JWT
ES256 with kid/iss/iat, apns-* headers, payload size and shape, and for `liveactivity` pushes
ActivityKit's payload rules), the APNs answers (200 is one HEADERS frame with `:status` and
`apns-id`, no DATA; errors are `{"reason"}` JSON, plus `timestamp` for 410), scripted
per-token rejections and transient failures, the records of every notification, the
`APNsKey` helper (.p8 key, key id, team id, JWT), and a CLI:

    python -m pushgo.testing.mock_apns --port 0 --topic com.example.app [--validate]

Connection-level behaviour (MAX_CONCURRENT_STREAMS 1 then 1000, GOAWAY, RST_STREAM, drops,
delays) comes from h2server/scripted. Imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from pushgo.testing.exchange import H2Settings, Outcome, Request, ResetStream, Response, json_response
from pushgo.testing.records import Recorder
from pushgo.testing.scripted import Countdown, ScriptedMock
from pushgo.testing.tls import LocalCA

DEVICE_PATH = "/3/device/"
PUSH_TYPES = frozenset({"alert", "background", "location", "voip", "complication", "fileprovider", "mdm",
                        "liveactivity", "pushtotalk", "widgets", "controls"})
TOPIC_SUFFIXES = (".voip", ".complication", ".pushkit.fileprovider", ".push-type.liveactivity",
                  ".voip-ptt")
LIVE_ACTIVITY_SUFFIX = ".push-type.liveactivity"
LIVE_ACTIVITY_EVENTS = frozenset({"start", "update", "end"})
_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{64,200}")
_UUID_RE = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_TOPIC_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SINGLE_HEADERS = ("authorization", "apns-id", "apns-topic", "apns-push-type", "apns-priority",
                   "apns-expiration", "apns-collapse-id")
_ID_ALPHABET = string.ascii_uppercase + string.digits


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class APNsKey:
    """An APNs auth key (ES256, P-256) as Apple issues it: a PKCS#8 PEM `.p8`, a 10-character
    key id and the team id."""

    key_id: str
    team_id: str
    private_key_pem: bytes

    @classmethod
    def generate(cls, key_id: str | None = None, team_id: str | None = None) -> APNsKey:
        key = ECKey.generate_key("P-256")
        return cls(key_id or _apple_id(), team_id or _apple_id(), key.as_pem(private=True))

    @classmethod
    def load(cls, path: str | Path, key_id: str, team_id: str) -> APNsKey:
        return cls(key_id, team_id, Path(path).read_bytes())

    def write(self, path: str | Path) -> Path:
        """Write the .p8 file (mode 0600) and return its path."""
        target = Path(path)
        target.write_bytes(self.private_key_pem)
        target.chmod(0o600)
        return target

    def public_key(self) -> ECKey:
        private = ECKey.import_key(self.private_key_pem)
        return ECKey.import_key(private.as_pem(private=False))

    def token(self, iat: float | None = None) -> str:
        """A provider JWT as Apple expects it: header {alg: ES256, kid}, claims {iss, iat}."""
        issued = int(time.time() if iat is None else iat)
        key = ECKey.import_key(self.private_key_pem)
        return jwt.encode({"alg": "ES256", "kid": self.key_id}, {"iss": self.team_id, "iat": issued}, key)


def _apple_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def generate_apns_key(path: str | Path, key_id: str | None = None, team_id: str | None = None) -> APNsKey:
    """Generate a key, write it to `path` (.p8) and return it."""
    key = APNsKey.generate(key_id, team_id)
    key.write(path)
    return key


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Rejection:
    """A scripted APNs error answer. `timestamp_ms` (410 only) defaults to the answer time."""

    status: int
    reason: str
    timestamp_ms: int | None = None
    retry_after: int | None = None


RejectionSpec = Rejection | tuple[int, str] | tuple[int, str, int]


@dataclass(frozen=True)
class APNsNotification:
    """One request as MockAPNs saw and answered it. `status` is None when the stream was refused
    (RST_STREAM) instead of answered."""

    token: str
    headers: dict[str, str]
    body: bytes
    connection_id: int
    stream_id: int
    index: int
    status: int | None
    reason: str | None
    apns_id: str | None

    @property
    def accepted(self) -> bool:
        return self.status == 200

    @property
    def payload(self) -> Any:
        """The JSON body, or None if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class _Scripted:
    rejection: Rejection
    times: int | None


# --------------------------------------------------------------------------- the mock


class MockAPNs(ScriptedMock):
    """Mock APNs. Accept-all by default; set `validate=True` (now or at runtime) for Apple's
    rules. Start with `async with mock.serving() as (host, port):`."""

    def __init__(self, *, topic: str = "com.example.app", key: APNsKey | None = None, validate: bool = False,
                 tls: LocalCA | None = None, host: str = "127.0.0.1", port: int = 0,
                 initial_max_concurrent_streams: int = 1, max_concurrent_streams: int = 1000,
                 lower_after_rejection: bool = False, rejections: Mapping[str, RejectionSpec] | None = None,
                 clock: Callable[[], float] = time.time, token_max_age: float = 3600.0,
                 min_token_refresh_interval: float | None = None, max_payload_bytes: int = 4096,
                 voip_max_payload_bytes: int = 5120,
                 on_notification: Callable[[APNsNotification], None] | None = None) -> None:
        raises = max_concurrent_streams != initial_max_concurrent_streams
        raise_to = max_concurrent_streams if raises else None
        settings = H2Settings(max_concurrent_streams=initial_max_concurrent_streams,
                              raise_max_concurrent_streams_to=raise_to,
                              lower_after_rejection=lower_after_rejection)
        super().__init__(self._handle, tls=tls, host=host, port=port, settings=settings, alpn=("h2",))
        self.topic = topic
        self.key = key or APNsKey.generate()
        self.validate = validate
        self.clock = clock
        self.token_max_age = token_max_age
        self.min_token_refresh_interval = min_token_refresh_interval
        self.max_payload_bytes = max_payload_bytes
        self.voip_max_payload_bytes = voip_max_payload_bytes
        self.on_notification = on_notification
        self.notifications: Recorder[APNsNotification] = Recorder()
        self._keys: dict[str, tuple[str, ECKey]] = {}
        self.trust_key(self.key.key_id, self.key.team_id, self.key.public_key())
        self._verified: dict[str, tuple[str, str, int]] = {}
        self._current_token: dict[str, tuple[str, float]] = {}
        self._rejections: dict[str, _Scripted] = {}
        self._fail: Countdown[Rejection] = Countdown()
        self._outage: Rejection | None = None
        for token, spec in (rejections or {}).items():
            self._rejections[token] = _Scripted(_as_rejection(spec), None)

    # -- configuration at runtime

    def trust_key(self, key_id: str, team_id: str, public_key: ECKey) -> None:
        """Accept provider tokens signed by another key (e.g. a second team)."""
        self._keys[key_id] = (team_id, public_key)

    def reject(self, token: str, status: int = 410, reason: str = "Unregistered", *,
               timestamp_ms: int | None = None, retry_after: int | None = None,
               times: int | None = None) -> None:
        """Answer every request for `token` (or the next `times`) with this error."""
        self._rejections[token] = _Scripted(Rejection(status, reason, timestamp_ms, retry_after), times)

    def unregister(self, token: str, timestamp_ms: int | None = None) -> None:
        """410 Unregistered for `token` from now on."""
        self.reject(token, 410, "Unregistered", timestamp_ms=timestamp_ms)

    def clear_rejections(self) -> None:
        self._rejections.clear()

    def fail_next(self, count: int = 1, status: int = 503, reason: str = "ServiceUnavailable", *,
                  retry_after: int | None = None) -> None:
        """The next `count` requests get this error whatever they carry (429/500/503 …)."""
        self._fail.add(count, Rejection(status, reason, None, retry_after))

    def outage(self, status: int = 503, reason: str = "ServiceUnavailable", *,
               retry_after: int | None = None) -> None:
        """Every request gets this error, whatever it carries, until `end_outage()`."""
        self._outage = Rejection(status, reason, None, retry_after)

    def end_outage(self) -> None:
        self._outage = None

    def throttle_next(self, count: int = 1, retry_after: int | None = 1) -> None:
        """The next `count` requests get 429 TooManyRequests with Retry-After."""
        self.fail_next(count, 429, "TooManyRequests", retry_after=retry_after)

    def reset_behaviours(self) -> None:
        """Back to plain accept/validate: no scripted rejections, failures or faults."""
        self.clear_rejections()
        self._fail.clear()
        self._outage = None
        self.reset_faults()

    # -- records

    @property
    def accepted(self) -> list[APNsNotification]:
        return self.notifications.matching(lambda n: n.accepted)

    @property
    def live_activities(self) -> list[APNsNotification]:
        """The Live Activity pushes seen (``apns-push-type: liveactivity``), in order."""
        return self.notifications.matching(
            lambda n: n.headers.get("apns-push-type") == "liveactivity")

    async def wait_for(self, count: int = 1, predicate: Callable[[APNsNotification], bool] | None = None, *,
                       within: float = 5.0) -> list[APNsNotification]:
        return await self.notifications.wait_for(count, predicate, within=within)

    def env(self, key_file: str | Path | None = None) -> dict[str, str]:
        """Gateway settings pointing at this mock (the key is written to `key_file` if given)."""
        out = {
            "PUSHGO_APNS_ENDPOINT": self.origin,
            "PUSHGO_PROVIDER_CA_FILE": str(self.ca_file),
            "PUSHGO_APNS_KEY_ID": self.key.key_id,
            "PUSHGO_APNS_TEAM_ID": self.key.team_id,
            "PUSHGO_APNS_TOPIC": self.topic,
        }
        if key_file is not None:
            out["PUSHGO_APNS_KEY_FILE"] = str(self.key.write(key_file))
        return out

    # -- request handling

    async def _handle(self, req: Request) -> Outcome:
        token = req.path[len(DEVICE_PATH):] if req.path.startswith(DEVICE_PATH) else ""
        if self._refused():
            self._record(req, token, None, None, None)
            return ResetStream()
        rejection = self._decide(req, token)
        if self.delay > 0:
            await anyio.sleep(self.delay)  # cancelled (GOAWAY, reset) => never recorded
        request_id = req.header("apns-id")
        apns_id = request_id if request_id and _UUID_RE.fullmatch(request_id) else str(uuid.uuid4())
        if rejection is None:
            self._record(req, token, 200, None, apns_id)
            return Response(200, [("apns-id", apns_id)])
        self._record(req, token, rejection.status, rejection.reason, apns_id)
        body: dict[str, Any] = {"reason": rejection.reason}
        if rejection.status == 410:
            ts = rejection.timestamp_ms
            body["timestamp"] = int(self.clock() * 1000) if ts is None else ts
        headers = [("apns-id", apns_id)]
        if rejection.retry_after is not None:
            headers.append(("retry-after", str(rejection.retry_after)))
        return json_response(rejection.status, body, headers)

    def _decide(self, req: Request, token: str) -> Rejection | None:
        failure = self._fail.take() or self._outage
        if failure is not None:
            return failure
        if self.validate:
            problem = self._validate(req, token)
            if problem is not None:
                return Rejection(*problem)
        scripted = self._rejections.get(token)
        if scripted is not None and scripted.times != 0:
            if scripted.times is not None:
                scripted.times -= 1
            return scripted.rejection
        return None

    def _record(self, req: Request, token: str, status: int | None, reason: str | None,
                apns_id: str | None) -> None:
        headers: dict[str, str] = {}
        for name, value in req.headers:
            headers.setdefault(name, value)
        note = APNsNotification(token, headers, req.body, req.connection_id, req.stream_id, req.index,
                                status, reason, apns_id)
        self.notifications.append(note)
        if self.on_notification is not None:
            self.on_notification(note)

    # -- Apple's rules

    def _validate(self, req: Request, token: str) -> tuple[int, str] | None:
        if req.method != "POST":
            return 405, "MethodNotAllowed"
        if not req.path.startswith(DEVICE_PATH):
            return 404, "BadPath"
        if not token:
            return 400, "MissingDeviceToken"
        for name in _SINGLE_HEADERS:
            if len(req.header_values(name)) > 1:
                return 400, "DuplicateHeaders"
        problem = self._check_provider_token(req.header("authorization"))
        if problem is not None:
            return problem
        return self._check_headers(req) or self._check_token_and_payload(req, token)

    def _check_headers(self, req: Request) -> tuple[int, str] | None:
        apns_id = req.header("apns-id")
        if apns_id is not None and not _UUID_RE.fullmatch(apns_id):
            return 400, "BadMessageId"
        push_type = req.header("apns-push-type")
        if push_type is not None and push_type not in PUSH_TYPES:
            return 400, "InvalidPushType"
        priority = req.header("apns-priority")
        if priority is not None and priority not in ("1", "5", "10"):
            return 400, "BadPriority"
        expiration = req.header("apns-expiration")
        if expiration is not None and (not expiration.isascii() or not expiration.isdigit()
                                       or int(expiration) > 10**11):
            return 400, "BadExpirationDate"  # > 1e11 is a date in milliseconds, not seconds
        collapse_id = req.header("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode()) > 64:
            return 400, "BadCollapseId"
        topic = req.header("apns-topic")
        if topic is None or topic == "":
            return 400, "MissingTopic"
        if not _TOPIC_RE.fullmatch(topic):
            return 400, "BadTopic"
        if topic != self.topic and topic not in {self.topic + suffix for suffix in TOPIC_SUFFIXES}:
            return 400, "DeviceTokenNotForTopic"
        if (push_type == "liveactivity") != topic.endswith(LIVE_ACTIVITY_SUFFIX):
            return 400, "BadTopic"  # a Live Activity push goes to <bundle>.push-type.liveactivity
        return None

    def _check_token_and_payload(self, req: Request, token: str) -> tuple[int, str] | None:
        if not _TOKEN_RE.fullmatch(token):
            return 400, "BadDeviceToken"
        if not req.body.strip():
            return 400, "PayloadEmpty"
        voip = req.header("apns-push-type") == "voip"
        if len(req.body) > (self.voip_max_payload_bytes if voip else self.max_payload_bytes):
            return 413, "PayloadTooLarge"
        try:
            doc = json.loads(req.body)
        except ValueError:
            return 400, "BadPayload"  # not an Apple reason string: Apple documents none for this
        if not isinstance(doc, dict) or not isinstance(doc.get("aps"), dict):
            return 400, "BadPayload"
        if req.header("apns-push-type") == "liveactivity":
            return _check_live_activity(doc["aps"])
        return None

    def _check_provider_token(self, authorization: str | None) -> tuple[int, str] | None:
        if not authorization:
            return 403, "MissingProviderToken"
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return 403, "MissingProviderToken"
        verified = self._verified.get(token)
        if verified is None:
            verified = self._verify_jwt(token)
            if verified is None:
                return 403, "InvalidProviderToken"
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[token] = verified
        key_id, _team, iat = verified
        now = self.clock()
        if iat > now + 60:
            return 403, "InvalidProviderToken"
        if now - iat > self.token_max_age:
            return 403, "ExpiredProviderToken"
        if self.min_token_refresh_interval is not None:
            current = self._current_token.get(key_id)
            if current is not None and current[0] != token:
                if now - current[1] < self.min_token_refresh_interval:
                    return 429, "TooManyProviderTokenUpdates"
                current = None
            if current is None:
                self._current_token[key_id] = (token, now)
        return None

    def _verify_jwt(self, token: str) -> tuple[str, str, int] | None:
        """Signature, alg, kid and iss; returns (kid, iss, iat) or None."""
        try:
            header = json.loads(_b64url(token.split(".", 1)[0]))
            kid = header.get("kid")
            if header.get("alg") != "ES256" or not isinstance(kid, str) or kid not in self._keys:
                return None
            team_id, public_key = self._keys[kid]
            decoded = jwt.decode(token, public_key, algorithms=["ES256"])
        except (JoseError, ValueError, TypeError, AttributeError):
            return None
        iss, iat = decoded.claims.get("iss"), decoded.claims.get("iat")
        if iss != team_id or not isinstance(iat, int) or isinstance(iat, bool):
            return None
        return kid, iss, iat


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_live_activity(aps: dict[str, Any]) -> tuple[int, str] | None:
    """ActivityKit's rules for an ``apns-push-type: liveactivity`` payload (its size was
    checked before: 4096 bytes): ``event`` start, update or end; an integer ``timestamp``;
    ``content-state``; ``attributes-type`` and ``attributes`` on start only;
    ``dismissal-date`` on end only; integer dates. Apple documents no reason string for
    these: the mock answers 400 with one naming the broken rule."""
    event = aps.get("event")
    if event not in LIVE_ACTIVITY_EVENTS:
        return 400, "BadLiveActivityEvent"
    if not _is_int(aps.get("timestamp")):
        return 400, "BadLiveActivityTimestamp"
    if not isinstance(aps.get("content-state"), dict):
        return 400, "MissingContentState"
    if event == "start" and (not isinstance(aps.get("attributes-type"), str)
                             or not isinstance(aps.get("attributes"), dict)):
        return 400, "MissingAttributes"
    if event != "start" and ("attributes-type" in aps or "attributes" in aps):
        return 400, "BadAttributes"
    if "dismissal-date" in aps and (event != "end" or not _is_int(aps["dismissal-date"])):
        return 400, "BadDismissalDate"
    if "stale-date" in aps and not _is_int(aps["stale-date"]):
        return 400, "BadStaleDate"
    return None


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _as_rejection(spec: RejectionSpec) -> Rejection:
    if isinstance(spec, Rejection):
        return spec
    if len(spec) == 3:
        return Rejection(spec[0], spec[1], spec[2])
    return Rejection(spec[0], spec[1])


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Run a MockAPNs until Ctrl-C or SIGTERM (exit 0); print the gateway settings that point
    at it, one `export` line each."""
    import argparse
    import sys
    import tempfile

    from pushgo.testing import mockcli

    parser = argparse.ArgumentParser(prog="python -m pushgo.testing.mock_apns", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--topic", default="com.example.app")
    parser.add_argument("--key-file", help="an existing .p8 key (needs --key-id and --team-id)")
    parser.add_argument("--key-id")
    parser.add_argument("--team-id")
    parser.add_argument("--validate", action="store_true", help="apply Apple's request rules")
    parser.add_argument("--initial-streams", type=int, default=1)
    parser.add_argument("--max-streams", type=int, default=1000)
    parser.add_argument("--quiet", action="store_true", help="do not log each notification")
    mockcli.add_common_arguments(parser)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="pushgo-mock-apns-"))
    if args.key_file:
        if not (args.key_id and args.team_id):
            parser.error("--key-file needs --key-id and --team-id")
        key = APNsKey.load(args.key_file, args.key_id, args.team_id)
        key_file = Path(args.key_file)
    else:
        key = APNsKey.generate(args.key_id, args.team_id)
        key_file = key.write(workdir / f"AuthKey_{key.key_id}.p8")

    def log(note: APNsNotification) -> None:
        live = ""
        if note.headers.get("apns-push-type") == "liveactivity" and isinstance(note.payload, dict):
            live = f"liveactivity {note.payload.get('aps', {}).get('event')} "
        print(f"{note.status or 'RST'} {note.reason or ''} {live}token={note.token[:16]}… "
              f"conn={note.connection_id} stream={note.stream_id}", file=sys.stderr, flush=True)

    mock = MockAPNs(topic=args.topic, key=key, validate=args.validate, tls=mockcli.shared_ca(args),
                    host=args.host, port=args.port,
                    initial_max_concurrent_streams=args.initial_streams,
                    max_concurrent_streams=args.max_streams, on_notification=None if args.quiet else log)

    async def run() -> None:
        async with mock.serving():
            env = mock.env()
            env["PUSHGO_APNS_KEY_FILE"] = str(key_file)
            mockcli.print_settings(env)
            await mockcli.until_signal()

    return mockcli.run(run, args.backend)


if __name__ == "__main__":
    raise SystemExit(main())
