"""Stored apps (``pushgo app add``, ``POST /admin/apps``). Plain functions of a Connection.

``config`` is the JSON of pushgo.protocol.apps.App; this module does not read it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pushgo.store.schema import apps, devices


def insert(conn: Connection, name: str, config: str, now: int, created_by: str) -> bool:
    """False when the name is taken."""
    if conn.execute(sa.select(apps.c.name).where(apps.c.name == name)).first() is not None:
        return False
    conn.execute(apps.insert().values(name=name, config=config, created_at=now,
                                      created_by=created_by))
    return True


def all_configs(conn: Connection) -> dict[str, str]:
    return {r.name: r.config for r in conn.execute(sa.select(apps.c.name, apps.c.config))}


def get_config(conn: Connection, name: str) -> str | None:
    return conn.execute(sa.select(apps.c.config).where(apps.c.name == name)).scalar()


def delete(conn: Connection, name: str) -> bool:
    return conn.execute(apps.delete().where(apps.c.name == name)).rowcount > 0


def device_counts(conn: Connection) -> dict[str, int]:
    """Registered devices per app (NULL, the default app, left out)."""
    q = sa.select(devices.c.app, sa.func.count()).where(devices.c.app.is_not(None)) \
        .group_by(devices.c.app)
    return {r[0]: int(r[1]) for r in conn.execute(q)}
