"""The gateway's Web Push application server key (VAPID): created at the first start, kept in
the store like the OAuth signing keys, the same for every process sharing the database, since
each browser subscription was made with its public key (``applicationServerKey``): a new key
would orphan every subscription."""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric import ec

from pushgo.protocol.webpush import VapidKey
from pushgo.service.context import Context
from pushgo.store import webpush as webpush_store

log = logging.getLogger("pushgo.webpush")


class VapidKeys:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.key: VapidKey | None = None

    async def ensure(self) -> VapidKey:
        """The stored key, created first when there is none."""
        pem = await self.ctx.store.read(webpush_store.vapid_key)
        if pem is None:
            fresh = VapidKey(ec.generate_private_key(ec.SECP256R1())).pem()
            pem = await self.ctx.store.run(webpush_store.create_vapid_key, fresh, self.ctx.now())
            if pem == fresh:
                log.info("web push key created")
        self.key = VapidKey.from_pem(pem)
        return self.key

    @property
    def application_server_key(self) -> str | None:
        """The public key browsers subscribe with (base64url), once loaded."""
        return self.key.application_server_key if self.key is not None else None
