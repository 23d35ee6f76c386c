"""The gateway's operations, one place for each. The HTTP API, MCP tools, the bulk endpoint and
the CLI all call these; none of them re-implements one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pushgo.protocol.apps import App
from pushgo.service.apps import Apps, check_paths
from pushgo.service.audit import AuditLog
from pushgo.service.channels import Channels
from pushgo.service.console import Console
from pushgo.service.context import Context
from pushgo.service.devices import Devices
from pushgo.service.inbox import Inbox
from pushgo.service.keys import Keys
from pushgo.service.liveactivities import LiveActivities
from pushgo.service.oauth import OAuthRecords
from pushgo.service.quotas import Quotas
from pushgo.service.receipts import Receipts
from pushgo.service.schedule import Schedules
from pushgo.service.send import Publisher
from pushgo.service.status import Status
from pushgo.service.webpush import VapidKeys


@dataclass
class Services:
    ctx: Context
    devices: Devices
    channels: Channels
    publisher: Publisher
    inbox: Inbox
    status: Status
    oauth: OAuthRecords
    schedules: Schedules
    live_activities: LiveActivities
    vapid: VapidKeys
    receipts: Receipts
    audit: AuditLog
    keys: Keys
    quotas: Quotas
    console: Console
    apps: Apps

    @classmethod
    def build(cls, ctx: Context, *, processes: int = 1,
              check_app: Callable[[App], App] = check_paths) -> Services:
        """``processes``: gateway processes sharing the request rates (``--workers N``);
        ``check_app``: how an app's key files are checked (the wiring passes one that parses
        them)."""
        channels = Channels(ctx)
        status = Status(ctx)
        ctx.listeners.append(status)  # accepted work changes delivery counts
        quotas = Quotas(ctx, processes)
        apps = Apps(ctx, check_app)
        return cls(ctx, Devices(ctx, apps), channels, Publisher(ctx, channels, quotas),
                   Inbox(ctx, on_change=status.results_written), status,
                   OAuthRecords(ctx.store), Schedules(ctx, channels), LiveActivities(ctx),
                   VapidKeys(ctx), Receipts(ctx), AuditLog(ctx), Keys(ctx), quotas,
                   Console(ctx), apps)


__all__ = ["Context", "Services"]
