"""Apps: one gateway sending for several mobile apps, each with its own provider credentials.

An app is a name and any of APNs (a .p8 key file, key id, team id, topic, sandbox, an origin
override), FCM (a service-account file; its ``project_id`` names the project) and WNS (client
id and secret). The settings ``PUSHGO_APNS_*``/``PUSHGO_FCM_*``/``PUSHGO_WNS_*`` are the app
named ``default``. Apps come from the TOML file of ``PUSHGO_APPS_FILE`` or from
``pushgo app add`` / ``POST /admin/apps`` (stored). This module is the pure part: the Structs,
the name rule, and reading a TOML document into apps, every error naming its app and field.
No I/O: the key files are read by the service that loads the apps.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any
from urllib.parse import urlsplit

import msgspec

#: The app the ``PUSHGO_APNS_*``/``PUSHGO_FCM_*``/``PUSHGO_WNS_*`` settings define.
DEFAULT_APP = "default"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,254}")
_TEXT_MAX = 1024


class ApnsApp(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    key_file: str
    key_id: str
    team_id: str
    topic: str
    sandbox: bool = False
    #: ``https://host:port``: another APNs origin (a test double, a relay).
    endpoint: str | None = None


class FcmApp(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    credentials_file: str
    endpoint: str | None = None
    #: Read from the service-account file when the app is loaded (never given by hand).
    project_id: str = ""


class WnsApp(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    client_id: str
    client_secret: str
    token_url: str | None = None
    endpoint: str | None = None


class App(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str
    apns: ApnsApp | None = None
    fcm: FcmApp | None = None
    wns: WnsApp | None = None

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(r for r, v in (("apns", self.apns), ("fcm", self.fcm), ("wns", self.wns))
                     if v is not None)

    def public(self) -> dict[str, Any]:
        """What may be shown: paths and ids, never the WNS client secret."""
        doc: dict[str, Any] = msgspec.to_builtins(self)
        if self.wns is not None:
            doc["wns"].pop("client_secret", None)
        return doc


class AppError(ValueError):
    """A bad app definition: ``app`` and ``field`` name where (``field`` dotted, e.g.
    ``apns.topic``)."""

    def __init__(self, app: str, field: str, message: str) -> None:
        where = (f"app {app!r}" if app else "apps") + (f" field {field}" if field else "")
        super().__init__(f"{where}: {message}")
        self.app, self.field, self.message = app, field, message


def is_name(name: str) -> bool:
    """Whether ``name`` could name an app (1-64 of a-z 0-9 . _ -)."""
    return _NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not is_name(name):
        raise AppError(name, "name", "must be 1-64 of a-z 0-9 . _ - (starting with a letter "
                                     "or digit)")
    return name


def _text(app: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AppError(app, field, "must be a non-empty string")
    if len(value) > _TEXT_MAX or any(ord(c) < 32 for c in value):
        raise AppError(app, field, "too long or holds control characters")
    return value.strip()


def _origin(app: str, field: str, value: Any) -> str:
    text = _text(app, field, value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.path or parts.query:
        raise AppError(app, field, "expected an origin like https://host:port")
    return text


def _url(app: str, field: str, value: Any) -> str:
    text = _text(app, field, value)
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise AppError(app, field, "expected an https URL")
    return text


def _table(app: str, field: str, value: Any, known: set[str],
           required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AppError(app, field, "must be a table")
    for key in value:
        if key not in known:
            raise AppError(app, f"{field}.{key}", "unknown field")
    for key in sorted(required):
        if key not in value:
            raise AppError(app, f"{field}.{key}", "is required")
    return value


def app_from_doc(name: str, doc: Any) -> App:
    """One app from its table (``{"apns": {...}, "fcm": {...}, "wns": {...}}``), checked."""
    check_name(name)
    if not isinstance(doc, dict):
        raise AppError(name, "", "must be a table")
    for key in doc:
        if key not in ("apns", "fcm", "wns"):
            raise AppError(name, key, "unknown field (expected apns, fcm or wns)")
    if not doc:
        raise AppError(name, "", "needs at least one of apns, fcm, wns")
    apns = fcm = wns = None
    if "apns" in doc:
        t = _table(name, "apns", doc["apns"],
                   {"key_file", "key_id", "team_id", "topic", "sandbox", "endpoint"},
                   {"key_file", "key_id", "team_id", "topic"})
        topic = _text(name, "apns.topic", t["topic"])
        if not _TOPIC.fullmatch(topic):
            raise AppError(name, "apns.topic", "must be a bundle id like com.example.app")
        sandbox = t.get("sandbox", False)
        if not isinstance(sandbox, bool):
            raise AppError(name, "apns.sandbox", "must be true or false")
        apns = ApnsApp(key_file=_text(name, "apns.key_file", t["key_file"]),
                       key_id=_text(name, "apns.key_id", t["key_id"]),
                       team_id=_text(name, "apns.team_id", t["team_id"]), topic=topic,
                       sandbox=sandbox,
                       endpoint=(_origin(name, "apns.endpoint", t["endpoint"])
                                 if "endpoint" in t else None))
    if "fcm" in doc:
        t = _table(name, "fcm", doc["fcm"], {"credentials_file", "endpoint"},
                   {"credentials_file"})
        fcm = FcmApp(credentials_file=_text(name, "fcm.credentials_file", t["credentials_file"]),
                     endpoint=(_origin(name, "fcm.endpoint", t["endpoint"])
                               if "endpoint" in t else None))
    if "wns" in doc:
        t = _table(name, "wns", doc["wns"], {"client_id", "client_secret", "token_url",
                                             "endpoint"}, {"client_id", "client_secret"})
        wns = WnsApp(client_id=_text(name, "wns.client_id", t["client_id"]),
                     client_secret=_text(name, "wns.client_secret", t["client_secret"]),
                     token_url=(_url(name, "wns.token_url", t["token_url"])
                                if "token_url" in t else None),
                     endpoint=(_origin(name, "wns.endpoint", t["endpoint"])
                               if "endpoint" in t else None))
    return App(name=name, apns=apns, fcm=fcm, wns=wns)


def parse_toml(text: str) -> list[App]:
    """The apps of a ``PUSHGO_APPS_FILE``: one ``[apps.NAME]`` table each."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AppError("", "", f"not valid TOML: {exc}") from None
    for key in doc:
        if key != "apps":
            raise AppError("", key, "unknown top-level table (expected [apps.NAME])")
    apps = doc.get("apps", {})
    if not isinstance(apps, dict):
        raise AppError("", "apps", "must be a table of [apps.NAME] tables")
    out = []
    for name, body in apps.items():
        if name == DEFAULT_APP:
            raise AppError(name, "name", "is the app of the PUSHGO_APNS_*/PUSHGO_FCM_*/"
                                         "PUSHGO_WNS_* settings; give this one another name")
        out.append(app_from_doc(name, body))
    return out


# --- the admin API's wire (POST/GET /admin/apps) --------------------------------------------


class FcmIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    credentials_file: str
    endpoint: str | None = None


class AppIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new app: its name and any of its providers' credentials (file paths and ids)."""

    name: str
    apns: ApnsApp | None = None
    fcm: FcmIn | None = None
    wns: WnsApp | None = None

    def doc(self) -> dict[str, Any]:
        """Its providers as the table ``app_from_doc`` reads (absent ones left out)."""
        out: dict[str, Any] = {}
        for key in ("apns", "fcm", "wns"):
            value = getattr(self, key)
            if value is not None:
                out[key] = {k: v for k, v in msgspec.to_builtins(value).items()
                            if v is not None and k != "project_id"}
        return out


class AppOut(msgspec.Struct, kw_only=True):
    name: str
    #: ``settings`` (the default app), ``file`` (PUSHGO_APPS_FILE) or ``stored``
    source: str
    routes: list[str]
    #: The definition without secrets (the WNS client secret is never shown again).
    config: dict[str, Any]
    devices: int = 0


class AppsOut(msgspec.Struct, kw_only=True):
    apps: list[AppOut]
