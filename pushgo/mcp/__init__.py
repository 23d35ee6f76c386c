"""MCP at /mcp: dispatcher, legacy-era sessions, tools, resources and the
Streamable HTTP transport for both protocol eras. ``build_mcp`` wires them for app.py."""

from __future__ import annotations

from dataclasses import dataclass

from pushgo.mcp.auth import ChannelBinding, LegacyAuth, McpAuth, NoBinding
from pushgo.mcp.dispatcher import Dispatcher
from pushgo.mcp.resources import Resources
from pushgo.mcp.sessions import Notifier, SessionStore
from pushgo.mcp.tools import Tools
from pushgo.mcp.transport import McpEndpoint
from pushgo.mcp.watch import ChannelFeed
from pushgo.service import Services


@dataclass
class Mcp:
    endpoint: McpEndpoint
    dispatcher: Dispatcher
    sessions: SessionStore
    notifier: Notifier
    auth: McpAuth

    def close(self) -> None:
        """End every open stream and session (the gateway is stopping)."""
        self.notifier.close()
        self.sessions.close_all()


def build_mcp(svc: Services, *, auth: McpAuth | None = None,
              binding: ChannelBinding | None = None) -> Mcp:
    """Legacy mode unless an OAuth ``auth``/``binding`` pair is given."""
    settings = svc.ctx.settings
    auth = auth or LegacyAuth(settings.token)
    binding = binding or NoBinding()
    feed = ChannelFeed()  # resource subscriptions hear of the work accepted for a channel
    svc.ctx.listeners.append(feed)
    dispatcher = Dispatcher(Tools(svc, binding, oauth=auth.oauth),
                            Resources(svc, binding, oauth=auth.oauth, feed=feed), auth)
    sessions = SessionStore()
    notifier = Notifier()
    endpoint = McpEndpoint(dispatcher, auth, sessions, notifier,
                           public_base_url=settings.public_base_url)
    return Mcp(endpoint, dispatcher, sessions, notifier, auth)


__all__ = ["Mcp", "build_mcp"]
