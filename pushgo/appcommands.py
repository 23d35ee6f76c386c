"""``pushgo app add|list|remove``: the apps of the database of ``PUSHGO_DB_URL`` (or
``--db-url``), changed in place. A running gateway — every process of it — picks the change up
without a restart (pushgo.delivery.appsenders). Recorded in the audit log as the ``cli``
actor. Never prints the WNS client secret; the key files stay where they are (only their
paths are stored, and the gateway's processes must be able to read them).
Must not import pushgo.app.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any


def add_app_commands(sub: Any) -> None:
    app = sub.add_parser("app", help="apps with their own provider credentials")
    asub = app.add_subparsers(dest="app_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db-url", help="database URL (default: PUSHGO_DB_URL)")
    common.add_argument("--json", action="store_true", help="print the answer as JSON")
    add = asub.add_parser("add", parents=[common], help="add an app",
                          description="Add an app with its own APNs, FCM and/or WNS "
                                      "credentials; devices registered with its name use them.")
    add.add_argument("name")
    add.add_argument("--apns-key-file", help="APNs .p8 signing key")
    add.add_argument("--apns-key-id")
    add.add_argument("--apns-team-id")
    add.add_argument("--apns-topic", help="the app's bundle id")
    add.add_argument("--apns-sandbox", action="store_true", help="APNs development servers")
    add.add_argument("--apns-endpoint", help="another APNs origin (https://host:port)")
    add.add_argument("--fcm-credentials-file", help="FCM service-account JSON (its project_id "
                                                    "names the project)")
    add.add_argument("--fcm-endpoint", help="another FCM origin (https://host:port)")
    add.add_argument("--wns-client-id")
    add.add_argument("--wns-client-secret", help="default: PUSHGO_APP_WNS_CLIENT_SECRET")
    add.add_argument("--wns-token-url")
    add.add_argument("--wns-endpoint")
    asub.add_parser("list", parents=[common], help="list the apps")
    remove = asub.add_parser("remove", parents=[common], help="remove a stored app",
                             description="Remove an app added with `pushgo app add`; its "
                                         "devices' deliveries then fail (app_not_found).")
    remove.add_argument("name")


def _doc(args: argparse.Namespace) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": args.name}
    groups = {"apns": ("key_file", "key_id", "team_id", "topic", "endpoint"),
              "fcm": ("credentials_file", "endpoint"),
              "wns": ("client_id", "client_secret", "token_url", "endpoint")}
    if args.wns_client_secret is None and os.environ.get("PUSHGO_APP_WNS_CLIENT_SECRET"):
        args.wns_client_secret = os.environ["PUSHGO_APP_WNS_CLIENT_SECRET"]
    for group, fields in groups.items():
        table = {f: getattr(args, f"{group}_{f}") for f in fields
                 if getattr(args, f"{group}_{f}") is not None}
        if group == "apns" and args.apns_sandbox:
            table["sandbox"] = True
        if table:
            doc[group] = table
    return doc


def run_app_command(args: argparse.Namespace, error: Callable[[str, int], Exception]) -> int:
    # Imported here: `pushgo --help` must stay quick.
    import anyio

    from pushgo.delivery.providers import check_app
    from pushgo.errors import GatewayError
    from pushgo.service.apps import Apps
    from pushgo.service.context import Context
    from pushgo.settings import SettingsError, load
    from pushgo.store.engine import Store

    env = {k: os.environ.get(k, "") for k in ("PUSHGO_DB_URL", "PUSHGO_APPS_FILE")}
    if args.db_url:
        env["PUSHGO_DB_URL"] = args.db_url
    try:
        settings = load(env)
        store = Store(settings.db_url, pool_size=1)
    except SettingsError as exc:
        raise error(str(exc), 2) from None

    async def work() -> Any:
        apps = Apps(Context(settings, store), check_app)
        if args.app_command == "add":
            return await apps.create(_doc(args), cli=True)
        if args.app_command == "remove":
            await apps.remove(args.name, cli=True)
            return None
        return await apps.list()

    try:
        store.migrate()
        result = anyio.run(work)
    except SettingsError as exc:
        raise error(str(exc), 2) from None
    except GatewayError as exc:
        raise error(f"{exc.code}: {exc.message}", 1) from None
    finally:
        store.dispose()
    _print(args, result)
    return 0


def _print(args: argparse.Namespace, result: Any) -> None:
    if args.app_command == "remove":
        print(json.dumps({"removed": args.name}) if args.json else f"removed app {args.name}")
        return
    infos = result if isinstance(result, list) else [result]
    rows = [{"name": i.name, "source": i.source, "routes": list(i.routes),
             "config": i.config, "devices": i.devices} for i in infos]
    if args.json:
        print(json.dumps(rows if isinstance(result, list) else rows[0]))
        return
    for row in rows:
        routes = ",".join(row["routes"]) or "-"
        print(f"{row['name']}\t{row['source']}\t{routes}\t{row['devices']} devices")
