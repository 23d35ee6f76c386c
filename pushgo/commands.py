"""Operator commands of the ``pushgo`` CLI:

    pushgo channel create NAME --password P      a channel with no subscribers yet
    pushgo channel info CHANNEL_ID               name, times, subscriber count
    pushgo send --channel ID --password P --title T [--body B] …   one message
    pushgo deliveries OP_ID [--wait|--no-wait] [--until provider|done]
                                                 delivery counts (a progress bar on a TTY)
    pushgo cancel OP_ID [--channel ID --password P]   cancel what has not gone out
    pushgo db migrate                            bring PUSHGO_DB_URL's schema up to date
    pushgo oauth rotate-key                      a new access-token signing key (pushgo.oauth.rotate)
    pushgo key create --name N --scope S …       a scoped API key (printed once)
    pushgo key list [--all] | key revoke KEY_ID  the API keys; revoke one at once
    pushgo audit [--limit N]                     the audit log of admin actions
    pushgo app add|list|remove                   apps with their own credentials (pushgo.appcommands)

``db migrate``, ``oauth``, ``key``, ``audit`` and ``app`` work on the database (``--db-url`` or
``PUSHGO_DB_URL``); the others talk to a running gateway over HTTP: ``--url`` (default: the
``PUSHGO_HTTP_ADDR`` it listens on), the gateway token from ``PUSHGO_TOKEN``, a channel
password from ``--password`` or ``PUSHGO_CHANNEL_PASSWORD``. ``--json`` prints the answer's
``data`` for scripts. Exit codes: 0 ok, 1 the gateway refused (its ``error_code`` is printed)
or could not be reached, 2 usage or settings.
Must not import pushgo.app (the HTTP commands never start a gateway).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from pushgo.appcommands import add_app_commands, run_app_command

if TYPE_CHECKING:
    import httpx

    from pushgo.service.oauth import OAuthRecords

TIMEOUT_S = 30.0
#: How long ``deliveries --wait`` follows an operation before giving up on a stalled stream.
STREAM_IDLE_S = 60.0
BAR_WIDTH = 30


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --- the parser --------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add the operator commands to the ``pushgo`` subparsers."""
    http = argparse.ArgumentParser(add_help=False)
    http.add_argument("--url", help="gateway base URL (default: http://PUSHGO_HTTP_ADDR, "
                                    "or http://127.0.0.1:6666); token from PUSHGO_TOKEN")
    http.add_argument("--json", action="store_true", help="print the answer as JSON")

    channel = sub.add_parser("channel", help="create a channel or show one")
    csub = channel.add_subparsers(dest="channel_command", required=True)
    create = csub.add_parser("create", parents=[http], help="create a channel",
                             description="Create a channel with no subscribers; prints its id.")
    create.add_argument("name", help="channel name (at most 128 characters)")
    create.add_argument("--password", help="channel password, 8-128 bytes "
                                           "(default: PUSHGO_CHANNEL_PASSWORD)")
    info = csub.add_parser("info", parents=[http], help="show a channel",
                           description="Show a channel's name, times and subscriber count.")
    info.add_argument("channel_id")

    send = sub.add_parser("send", parents=[http], help="send one message to a channel",
                          description="Send one message to every device of a channel.")
    send.add_argument("--channel", required=True, help="channel id")
    send.add_argument("--password", help="channel password (default: PUSHGO_CHANNEL_PASSWORD)")
    send.add_argument("--title", required=True)
    send.add_argument("--body")
    send.add_argument("--severity", choices=("critical", "high", "normal", "low"))
    send.add_argument("--link", help="a URL the notification opens")
    send.add_argument("--tag", action="append", dest="tags", help="a tag (repeatable)")
    send.add_argument("--op-id", help="idempotency key: sending it again sends nothing new")
    send.add_argument("--deliver-at", help="schedule it: Unix seconds or milliseconds, at most "
                                           "30 days ahead (nothing goes out before then)")

    deliveries = sub.add_parser(
        "deliveries", parents=[http], help="delivery counts of an operation",
        description="Counts of an operation's deliveries by state and failure reason. On a "
                    "terminal it follows the operation with a progress bar until it is done.")
    deliveries.add_argument("op_id")
    deliveries.add_argument("--channel", help="only this channel's operation of that op_id")
    wait = deliveries.add_mutually_exclusive_group()
    wait.add_argument("--wait", action="store_true", default=None,
                      help="follow until every delivery has an outcome (default on a terminal)")
    wait.add_argument("--no-wait", action="store_false", dest="wait",
                      help="print the counts as they are now")
    deliveries.add_argument(
        "--until", choices=("provider", "done"), default=None,
        help="follow until the APNs/FCM/WNS deliveries are settled (provider: the default on a "
             "terminal, where private deliveries may wait days for an offline device) or until "
             "every delivery is (done: the default otherwise)")

    cancel = sub.add_parser(
        "cancel", parents=[http], help="cancel what has not gone out of an operation",
        description="Cancel every delivery of an operation that has not gone out yet (a "
                    "scheduled send, or deliveries still waiting). With --channel and the "
                    "channel's password; on a gateway with PUSHGO_TOKEN the token alone "
                    "will do, and without --channel every operation of the op_id is "
                    "cancelled. Safe to repeat.")
    cancel.add_argument("op_id")
    cancel.add_argument("--channel", help="the operation's channel id")
    cancel.add_argument("--password", help="channel password (default: "
                                           "PUSHGO_CHANNEL_PASSWORD; not needed with "
                                           "PUSHGO_TOKEN)")

    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_command", required=True)
    migrate = dsub.add_parser("migrate", help="apply schema migrations to PUSHGO_DB_URL",
                              description="Apply pending schema migrations directly to the "
                                          "database and print the version before and after.")
    migrate.add_argument("--db-url", help="database URL (default: PUSHGO_DB_URL)")

    # Declared here rather than in pushgo.oauth.rotate: importing the oauth package pulls in
    # the whole gateway, and `pushgo --help` must stay quick.
    oauth = sub.add_parser("oauth", help="OAuth authorization server maintenance")
    osub = oauth.add_subparsers(dest="oauth_command", required=True)
    rotate = osub.add_parser(
        "rotate-key", help="sign access tokens with a new key",
        description="Create a new access-token signing key and retire the current one; the "
                    "retired key verifies the tokens it signed until they expire. Prints the "
                    "new key id.")
    rotate.add_argument("--db-url", help="database URL (default: PUSHGO_DB_URL)")
    _add_key_commands(sub)
    add_app_commands(sub)


def _add_key_commands(sub: Any) -> None:
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--db-url", help="database URL (default: PUSHGO_DB_URL)")
    key = sub.add_parser("key", help="scoped API keys")
    ksub = key.add_subparsers(dest="key_command", required=True)
    create = ksub.add_parser(
        "create", parents=[database], help="create an API key",
        description="Create an API key; prints it (as JSON, with its key_id) this once only.")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", dest="scopes", required=True,
                        help="send, direct, status, devices, metrics or admin (repeatable)")
    create.add_argument("--channel", action="append", dest="channels",
                        help="only this channel (repeatable; default: every channel)")
    create.add_argument("--app", action="append", dest="apps",
                        help="only this app (repeatable; default: every app)")
    create.add_argument("--rate-per-s", type=float, help="requests per second at most")
    create.add_argument("--daily-notifications", type=int, help="notifications a day at most")
    create.add_argument("--weight", type=int, default=1,
                        help="its share of delivery when senders compete (1-1000)")
    listing = ksub.add_parser("list", parents=[database], help="list the API keys")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    revoke = ksub.add_parser("revoke", parents=[database], help="revoke an API key at once")
    revoke.add_argument("key_id")
    audit = sub.add_parser("audit", parents=[database], help="the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50)


def run_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "db":
            return _db_migrate(args)
        if args.command == "oauth":
            from pushgo.oauth.rotate import run

            return run(args, _oauth_records)
        if args.command in ("key", "audit"):
            return _keys_command(args)
        if args.command == "app":
            return run_app_command(args, CliError)
        with _Client(args) as client:
            if args.command == "channel" and args.channel_command == "create":
                return _channel_create(client, args)
            if args.command == "channel":
                return _channel_info(client, args)
            if args.command == "send":
                return _send(client, args)
            if args.command == "cancel":
                return _cancel(client, args)
            return _deliveries(client, args)
    except CliError as exc:
        print(f"pushgo: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


# --- HTTP ---------------------------------------------------------------------------------------


def base_url(explicit: str | None, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    if explicit:
        url = explicit.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise CliError(f"--url must start with http:// or https:// (got {url!r})", 2)
        return url
    addr = env.get("PUSHGO_HTTP_ADDR", "").strip() or "127.0.0.1:6666"
    from pushgo.settings import SettingsError, load

    try:
        settings = load({"PUSHGO_HTTP_ADDR": addr})
    except SettingsError as exc:
        raise CliError(str(exc), 2) from None
    host = settings.http_host
    # A wildcard listen address is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.http_port}"


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = base_url(getattr(args, "url", None))
        token = os.environ.get("PUSHGO_TOKEN", "").strip()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        import httpx  # here, not at the top: `pushgo --help` does not need it

        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_S)

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, json_body: Any = None,
             params: dict[str, str] | None = None) -> Any:
        import httpx

        try:
            resp = self.http.request(method, path, json=json_body, params=params)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the gateway at {self.url}: {_why(exc)}") from None
        return _data(resp)

    def stream(self, path: str, params: dict[str, str] | None = None) -> Iterator[Any]:
        """The ``data`` of each SSE event on ``path``; an error answer raises CliError."""
        import httpx

        from pushgo.protocol.sse import SSEParser

        try:
            with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(TIMEOUT_S,
                                                                     read=STREAM_IDLE_S)) as resp:
                if resp.status_code != 200:
                    resp.read()
                    _data(resp)
                parser = SSEParser()
                for chunk in resp.iter_bytes():
                    for event in parser.feed(chunk):
                        try:
                            doc = json.loads(event.data)
                        except ValueError:
                            continue
                        if isinstance(doc, dict) and "success" in doc and "data" in doc:
                            doc = doc["data"]
                        yield doc
        except httpx.HTTPError as exc:
            raise CliError(f"lost the gateway at {self.url}: {_why(exc)}") from None


def _why(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _data(resp: httpx.Response) -> Any:
    try:
        doc = resp.json()
    except ValueError:
        raise CliError(f"unexpected answer from the gateway: HTTP {resp.status_code}") from None
    if not isinstance(doc, dict):
        raise CliError(f"unexpected answer from the gateway: HTTP {resp.status_code}")
    if resp.status_code >= 400 or doc.get("success") is False:
        code = doc.get("error_code") or f"http_{resp.status_code}"
        message = doc.get("error") or f"HTTP {resp.status_code}"
        raise CliError(f"{message} ({code})")
    return doc.get("data")


def _password(args: argparse.Namespace) -> str:
    password = args.password if args.password is not None else os.environ.get(
        "PUSHGO_CHANNEL_PASSWORD")
    if not password:
        raise CliError("a channel password is needed: --password or PUSHGO_CHANNEL_PASSWORD", 2)
    return str(password)


def _print_json(data: Any, out: TextIO = sys.stdout) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True), file=out)


# --- commands -----------------------------------------------------------------------------------


def _channel_create(client: _Client, args: argparse.Namespace) -> int:
    data = client.call("POST", "/channel/create",
                       json_body={"channel_name": args.name, "password": _password(args)})
    if args.json:
        _print_json(data)
    else:
        print(f"channel_id {data['channel_id']}\nname       {data['channel_name']}")
    return 0


def _channel_info(client: _Client, args: argparse.Namespace) -> int:
    data = client.call("GET", "/channel/info", params={"channel_id": args.channel_id})
    if args.json:
        _print_json(data)
        return 0
    print(f"channel_id   {data['channel_id']}\nname         {data['channel_name']}\n"
          f"subscribers  {data['subscribers']}\ncreated      {_when(data['created_at'])}\n"
          f"updated      {_when(data['updated_at'])}")
    return 0


def _send(client: _Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"channel_id": args.channel, "password": _password(args),
                            "title": args.title}
    optional = {"body": args.body, "severity": args.severity, "url": args.link,
                "tags": args.tags, "op_id": args.op_id, "deliver_at": args.deliver_at}
    body.update({k: v for k, v in optional.items() if v is not None})
    data = client.call("POST", "/message", json_body=body)
    if args.json:
        _print_json(data)
    else:
        when = f"  deliver_at={_when(data['deliver_at'])}" if "deliver_at" in data else ""
        print(f"accepted  op_id={data['op_id']}  message_id={data.get('message_id', '')}{when}")
    return 0


def _cancel(client: _Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.channel:
        body["channel_id"] = args.channel
    password = args.password if args.password is not None else os.environ.get(
        "PUSHGO_CHANNEL_PASSWORD")
    if password:
        body["password"] = password
    elif not os.environ.get("PUSHGO_TOKEN"):
        _password(args)  # says what is missing
    data = client.call("POST", f"/operations/{quote(args.op_id, safe='')}/cancel",
                       json_body=body)
    if args.json:
        _print_json(data)
        return 0
    words = {"cancelled": f"cancelled {data['cancelled']} of {data['total']} deliveries",
             "already_cancelled": "already cancelled: nothing was left to cancel",
             "already_done": "nothing to cancel: every delivery had already gone out "
                             "(or is with its provider)"}
    print(f"{data['op_id']}  {words.get(data['outcome'], data['outcome'])}")
    states = data.get("states") or {}
    print("  ".join(f"{name} {n}" for name, n in sorted(states.items())))
    return 0


def _deliveries(client: _Client, args: argparse.Namespace) -> int:
    path = f"/deliveries/{quote(args.op_id, safe='')}"
    params = {"channel_id": args.channel} if args.channel else None
    data = client.call("GET", path, params=params)
    tty = sys.stderr.isatty()
    wait = tty if args.wait is None else args.wait
    if data.get("state") == "scheduled" and args.wait is None:
        wait = False  # it may wait for days: followed only when asked (--wait)
        print(f"scheduled for {_when(data.get('deliver_at'))}: not following it (--wait "
              "does)", file=sys.stderr)
    until = args.until or ("provider" if tty else "done")
    told = False
    if wait and tty:
        _bar(data)
    if wait and not _finished(data, until):
        for update in client.stream(path + "/stream", params):
            if isinstance(update, dict) and "states" in update:
                data = update
                if tty and not told and until == "done" and _finished(data, "provider"):
                    told = True  # only private deliveries are left: say so once
                    sys.stderr.write(f"\n{_private_queued(data)} private deliveries wait for "
                                     "offline devices; Ctrl-C to stop\n")
                if tty:
                    _bar(data)
                if _finished(data, until):
                    break
    if wait and tty:
        print(file=sys.stderr)
    if wait and until == "provider" and _private_queued(data):
        print(f"{_private_queued(data)} private deliveries wait for offline devices (sent when "
              "they connect or pull, until their TTL); not following them: --until done does",
              file=sys.stderr)
    if args.json:
        _print_json(data)
    else:
        _summary(data)
    return 0


def _private_queued(data: dict[str, Any]) -> int:
    return int(((data.get("routes") or {}).get("private") or {}).get("queued") or 0)


def _finished(data: dict[str, Any], until: str) -> bool:
    """``done``: nothing is queued; ``provider``: nothing but private deliveries is."""
    if data.get("done"):
        return True
    states = data.get("states") or {}
    queued = int(states.get("queued") or 0)
    return until == "provider" and queued == _private_queued(data) \
        and not states.get("scheduled")


def _counts(data: dict[str, Any]) -> tuple[int, int]:
    states = data.get("states") or {}
    total = int(data.get("total") or 0)
    finished = total - int(states.get("queued") or 0) - int(states.get("scheduled") or 0)
    return finished, total


def _bar(data: dict[str, Any]) -> None:
    finished, total = _counts(data)
    filled = BAR_WIDTH if total == 0 else BAR_WIDTH * finished // total
    states = data.get("states") or {}
    line = (f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {finished}/{total}  "
            f"sent {states.get('sent', 0)}  failed {states.get('failed', 0)}  "
            f"expired {states.get('expired', 0)}")
    why = "; ".join(_why_waiting(data))
    # Rewritten in place: erase to the end of the line, so a shorter one leaves nothing behind.
    sys.stderr.write(f"{line}  {why}\x1b[K" if why else f"{line}\x1b[K")
    sys.stderr.flush()


def _summary(data: dict[str, Any]) -> None:
    states = data.get("states") or {}
    print(f"op_id     {data.get('op_id')}\ntotal     {data.get('total')}\n"
          f"done      {'yes' if data.get('done') else 'no'}")
    if data.get("deliver_at") is not None:
        print(f"deliver   {_when(data['deliver_at'])}")
    for name in ("queued", "sent", "failed", "expired"):
        print(f"{name:<9} {states.get(name, 0)}")
    for name in ("scheduled", "cancelled"):
        if states.get(name):
            print(f"{name:<9} {states[name]}")
    for reason, n in sorted((data.get("failures") or {}).items()):
        print(f"  failed: {reason} {n}")
    if data.get("retrying"):
        print(f"retrying  {data['retrying']}")
    for line in _why_waiting(data):
        print(f"waiting   {line}")


def _why_waiting(data: dict[str, Any]) -> list[str]:
    """Why queued deliveries wait, one phrase each: a provider unavailable (its last error,
    since when), deliveries retrying, private devices that have not fetched theirs."""
    out: list[str] = []
    for route, why in sorted((data.get("waiting") or {}).items()):
        if not isinstance(why, dict):
            continue
        n, error = why.get("deliveries", 0), why.get("last_error") or "unknown"
        if why.get("state") == "provider_unavailable":
            out.append(f"{route} unavailable ({error}) since {_when(why.get('since'))}: {n}")
        else:
            out.append(f"{route} retrying ({error}): {n}")
    offline = (data.get("private") or {}).get("waiting_offline")
    if offline:
        out.append(f"private devices offline: {offline}")
    return out


def _when(ms: Any) -> str:
    if not isinstance(ms, int):
        return str(ms)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


@contextmanager
def _oauth_records(db_url: str) -> Iterator[OAuthRecords]:
    """The OAuth records of ``db_url`` (migrated first) on a one-connection store."""
    from pushgo.service.oauth import OAuthRecords
    from pushgo.store.engine import Store

    store = Store(db_url, pool_size=1)
    try:
        store.migrate()
        yield OAuthRecords(store)
    finally:
        store.dispose()


def _db_migrate(args: argparse.Namespace) -> int:
    from pushgo.settings import SettingsError, load
    from pushgo.store.engine import Store
    from pushgo.store.migrations import LATEST, SchemaTooNew

    # Only the database setting matters here: an unrelated bad setting does not block this.
    url = args.db_url or os.environ.get("PUSHGO_DB_URL", "")
    try:
        settings = load({"PUSHGO_DB_URL": url} if url.strip() else {})
    except SettingsError as exc:
        raise CliError(str(exc), 2) from None
    try:
        store = Store(settings.db_url, pool_size=1)
        try:
            before = store.migrate()
        finally:
            store.dispose()
    except SchemaTooNew as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise CliError("cannot migrate PUSHGO_DB_URL: "
                       + (text[0] if text else type(exc).__name__)) from None
    if before == LATEST:
        print(f"schema up to date (version {LATEST})")
    else:
        print(f"migrated schema from version {before} to {LATEST}")
    return 0


def _keys_command(args: argparse.Namespace) -> int:
    """``pushgo key …`` and ``pushgo audit`` on the database (actor: ``cli``)."""
    import anyio
    import msgspec

    from pushgo.errors import GatewayError
    from pushgo.service.audit import AuditLog
    from pushgo.service.context import Context
    from pushgo.service.keys import Keys
    from pushgo.settings import SettingsError, load
    from pushgo.store.engine import Store

    url = args.db_url or os.environ.get("PUSHGO_DB_URL", "")
    try:
        settings = load({"PUSHGO_DB_URL": url} if url.strip() else {})
    except SettingsError as exc:
        raise CliError(str(exc), 2) from None
    store = Store(settings.db_url, pool_size=1)
    try:
        store.migrate()
        ctx = Context(settings, store)
        keys = Keys(ctx)

        async def act() -> Any:
            if args.command == "audit":
                return await AuditLog(ctx).recent(args.limit)
            if args.key_command == "create":
                row, key = await keys.create(
                    args.name, args.scopes, channels=args.channels, apps=args.apps,
                    rate_per_s=args.rate_per_s, daily_notifications=args.daily_notifications,
                    weight=args.weight, cli=True)
                return {**msgspec.to_builtins(row), "key": key}
            if args.key_command == "list":
                return await keys.list(include_revoked=args.all)
            return await keys.revoke(args.key_id, cli=True)

        try:
            data = msgspec.to_builtins(anyio.run(act))
        except GatewayError as exc:
            raise CliError(f"{exc.message} ({exc.code})") from None
    finally:
        store.dispose()
    if args.command == "key" and args.key_command == "list" and not args.json:
        for row in data:
            state = "revoked" if row["revoked_at"] else "live"
            print(f"{row['key_id']}  {state:7}  {row['name']}  {','.join(row['scopes'])}"
                  + (f"  channels={','.join(row['channels'])}" if row["channels"] else ""))
        return 0
    print(json.dumps(data, ensure_ascii=False, separators=(",", ":")))  # the fields in order
    return 0
