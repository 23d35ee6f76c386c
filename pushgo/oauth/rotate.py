"""``pushgo oauth rotate-key``: sign access tokens with a new key from now on.

Works on the database directly (``--db-url`` or ``PUSHGO_DB_URL``), like ``pushgo db
migrate``. Running gateways switch to the new key at their next maintenance (within five
minutes); the old key keeps verifying what it signed until those tokens expire, and is then
purged.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

from pushgo.oauth.config import MINUTE, lifetimes
from pushgo.oauth.keys import KeyRing
from pushgo.service.oauth import OAuthRecords

#: Opens the OAuth records of a database URL (migrated) for the command's duration.
RecordsOpener = Callable[[str], AbstractContextManager[OAuthRecords]]


def run(args: argparse.Namespace, open_records: RecordsOpener) -> int:
    import anyio

    from pushgo.service.context import wall_ms
    from pushgo.settings import SettingsError, load

    url = args.db_url or os.environ.get("PUSHGO_DB_URL", "")
    try:
        settings = load({"PUSHGO_DB_URL": url} if url.strip() else {})
    except SettingsError as exc:
        print(f"pushgo: {exc}", file=sys.stderr)
        return 2
    lt = lifetimes(settings)

    async def rotate(records: OAuthRecords) -> str:
        keys = KeyRing(records)
        now = wall_ms()
        await keys.ensure(now)
        return await keys.rotate(now, lt.access + 10 * MINUTE)

    try:
        with open_records(settings.db_url) as records:
            kid = anyio.run(rotate, records)
    except Exception as exc:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        print("pushgo: cannot rotate the key in PUSHGO_DB_URL: "
              + (text[0] if text else type(exc).__name__), file=sys.stderr)
        return 1
    print(kid)
    return 0
