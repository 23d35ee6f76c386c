"""The receipts of sends repeated until acknowledged: ``POST /receipts/ack`` (a device's
notification action; the device_key and the op_id, or delivery_id, it received) and
``GET /receipts/{op_id}`` (read as ``GET /deliveries/{op_id}``: whoever passed the gateway's
door, ``?channel_id=`` narrowing an op_id used on several channels). Thin: decode, call
pushgo.service.receipts, encode."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pushgo.api.bulk import channel_filter
from pushgo.api.envelope import body_as, ok
from pushgo.protocol.receipts import ReceiptAckIn
from pushgo.service.receipts import Receipts


def receipt_routes(receipts: Receipts) -> list[BaseRoute]:
    async def ack(request: Request) -> Response:
        return ok(await receipts.ack(await body_as(request, ReceiptAckIn)))

    async def get(request: Request) -> Response:
        channels = channel_filter(request)
        return ok(await receipts.get(request.path_params["op_id"], channel_ids=channels))

    return [
        Route("/receipts/ack", ack, methods=["POST"]),
        Route("/receipts/{op_id}", get, methods=["GET"]),
    ]
