"""warp-link, the PushGo apps' private transport: sessions (``session.py``) that carry the same
inbox as ``GET /private/stream``, over any transport that moves whole frames (``link.py``): WSS
(``pushgo.api.private_ws``) and TLS or plain TCP (``tcp.py``).

Must not import pushgo.api, starlette or the store.
"""

from pushgo.delivery.private_link.link import FrameRefused, Link, LinkClosed
from pushgo.delivery.private_link.session import LinkConfig, PrivateLinks

__all__ = ["FrameRefused", "Link", "LinkClosed", "LinkConfig", "PrivateLinks"]
