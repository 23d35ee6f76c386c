"""Bulk sending (POST /messages/bulk): many operations from one request, each decoded,
authorised and prepared on its own, written in batches through the one sending service
(:class:`pushgo.service.send.Publisher`), and answered with one result per item in input order.

Two tasks joined by a bounded stream: the reader decodes items (and so reads the body) only
while the writer keeps up, which is the backpressure that keeps memory flat for any body
size. The writer takes whatever is ready, up to a batch, and writes it in one transaction
(one savepoint per item, so a bad item fails alone).

Authorisation per channel item: its ``password``; or, when the gateway has a ``PUSHGO_TOKEN``
(which every request here then carries), nothing more: the gateway token speaks for every
channel. A password given is still checked. A direct send (``route`` + ``tokens``, or
``webpush`` + ``subscriptions``) needs the gateway token: without one, anybody could push
through this gateway's provider accounts. An API key speaks like the gateway token for the
channels it may send to (others: ``channel_not_allowed``); its direct items need its
``direct`` scope.

Must not import pushgo.api or starlette.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from pushgo.errors import (
    Forbidden,
    GatewayError,
    InvalidInput,
    NotFound,
    RateLimited,
    ServerBusy,
    StoreUnavailable,
    codes,
)
from pushgo.protocol import bulk as bulk_wire
from pushgo.protocol import fields as field_rules
from pushgo.protocol.apps import DEFAULT_APP
from pushgo.service.apps import Apps
from pushgo.service.channels import Channels, channel_not_found
from pushgo.service.context import Context
from pushgo.service.keys import require_channel, require_scope
from pushgo.service.principal import Scope, current
from pushgo.service.send import Accepted, Direct, Prepared, Publisher
from pushgo.service.throttle import RequestBudget
from pushgo.store import channels as channel_store

log = logging.getLogger("pushgo.bulk")

#: Batches decoded ahead of the writer: with the batch bounds below, this bounds what one
#: request holds in memory whatever the size of its body.
QUEUE = 4
#: A batch (one transaction) holds at most this many items, direct tokens or body bytes.
BATCH_ITEMS = 200
BATCH_TOKENS = 5000
BATCH_BYTES = 1024 * 1024
#: Distinct (channel, password) answers remembered for one request.
AUTH_CACHE = 4096


@dataclass(frozen=True, slots=True)
class _Ready:
    index: int
    item: bulk_wire.Item
    prepared: Prepared


@dataclass(frozen=True, slots=True)
class _Failed:
    index: int
    error: GatewayError
    op_id: str | None


def _copy(exc: GatewayError) -> GatewayError:
    # A fresh exception per item: re-raising one object would grow its traceback every time.
    return GatewayError(exc.error, exc.message, status=exc.status)


class _Authorizer:
    """Channel authorisation for one request, each distinct answer computed once (a body
    of 100k items to one channel costs one password check, and so do 100k wrong ones).
    After a few distinct wrong passwords (the request's budget) the other items' passwords
    are not checked at all: they answer ``rate_limited``."""

    def __init__(self, ctx: Context, channels: Channels) -> None:
        self.ctx = ctx
        self.channels = channels
        # The gateway token, or an API key (with the ``send`` scope, checked at the door,
        # and its channels, checked per item), speaks for the channels it may send to.
        self.gateway_token = ctx.settings.token is not None or not current().is_root
        self._seen: dict[tuple[str, str | None], GatewayError | None] = {}
        #: Past a few wrong passwords, this request's other checks are not run at all.
        self.budget = RequestBudget()

    async def check(self, channel_id: str, password: str | None) -> None:
        key = (channel_id, password)
        if key in self._seen:
            err = self._seen[key]
            if err is not None:
                raise _copy(err)
            return
        try:
            if password is not None:
                await self.channels.authorize(channel_id, password, self.budget)
            elif not self.gateway_token:
                raise field_rules.FieldError(codes.PASSWORD_REQUIRED, "password is required (only a "
                                   "gateway with PUSHGO_TOKEN authorises channels by its "
                                   "token)")
            elif await self.ctx.store.read(channel_store.get, channel_id) is None:
                raise channel_not_found()
        except (StoreUnavailable, RateLimited, ServerBusy):
            raise  # not an answer about this channel
        except GatewayError as exc:
            self._remember(key, exc)
            raise
        self._remember(key, None)

    def _remember(self, key: tuple[str, str | None], answer: GatewayError | None) -> None:
        if len(self._seen) >= AUTH_CACHE:
            self._seen.clear()
        self._seen[key] = answer


class Bulk:
    def __init__(self, ctx: Context, channels: Channels, publisher: Publisher,
                 routes: Collection[str], apps: Apps | None = None) -> None:
        self.ctx = ctx
        self.apps = apps
        self.channels = channels
        self.publisher = publisher
        #: provider routes this gateway can send on (direct sends to others are refused)
        self.routes = frozenset(routes)

    async def run(self, frames: AsyncIterator[list[bulk_wire.Frame]], emit: Callable[[bytes], None],
                  ) -> int:
        """Process every frame (given in lists: what one piece of the body held); ``emit``
        gets one NDJSON result line per item, in order. Returns how many items there were.
        A :class:`~pushgo.protocol.bulk.Broken` frame is the last one taken."""
        send, receive = anyio.create_memory_object_stream[list[_Ready | _Failed]](QUEUE)
        auth = _Authorizer(self.ctx, self.channels)
        count = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write, receive, emit)
            async with send:
                async for piece in frames:
                    batch: list[_Ready | _Failed] = []
                    tokens = size = 0
                    for frame in piece:
                        if isinstance(frame, bulk_wire.Broken):
                            batch.append(_Failed(count, InvalidInput(
                                codes.INVALID_JSON_SYNTAX, frame.message), None))
                            await send.send(batch)
                            return count + 1
                        entry = await self._decode(count, frame, auth)
                        count += 1
                        batch.append(entry)
                        tokens += _tokens(entry)
                        size += len(frame) if isinstance(frame, bytes) else 0
                        if (len(batch) >= BATCH_ITEMS or tokens >= BATCH_TOKENS
                                or size >= BATCH_BYTES):
                            await send.send(batch)
                            batch, tokens, size = [], 0, 0
                    if batch:  # what this piece of the body held: on to the writer
                        await send.send(batch)
        return count

    async def _decode(self, index: int, frame: bytes | bulk_wire.TooLong,
                      auth: _Authorizer) -> _Ready | _Failed:
        if isinstance(frame, bulk_wire.TooLong):
            return _Failed(index, InvalidInput(
                codes.LINE_TOO_LONG,
                f"operation is {frame.size} bytes; at most {bulk_wire.MAX_ITEM_BYTES} bytes each"), None)
        try:
            item = bulk_wire.decode_item(
                frame, allow_local=self.ctx.settings.webpush_allow_loopback)
        except bulk_wire.ItemError as exc:
            return _Failed(index, exc, exc.op_id)
        try:
            direct: Direct | None = None
            if item.route is not None:
                app = await self._check_direct(item.route, item.app)
                direct = Direct(item.route, item.tokens, app)
            else:
                require_channel(item.spec.channel_id)
                await auth.check(item.spec.channel_id, item.password)
                self.publisher.quotas.take_channel(item.spec.channel_id)
            return _Ready(index, item, self.publisher.prepare(item.spec, direct))
        except GatewayError as exc:
            return _Failed(index, exc, item.spec.op_id)

    async def _check_direct(self, route: str, app_name: str | None) -> str | None:
        """The app a direct send goes out as (None: ``default``), checked against the key's
        scopes and apps and the app's routes."""
        require_scope(Scope.DIRECT)
        if self.ctx.settings.token is None and current().is_root:
            raise GatewayError(codes.GATEWAY_TOKEN_REQUIRED,
                               "direct sends to provider tokens need a gateway with "
                               "PUSHGO_TOKEN set")
        principal = current()
        if principal.apps is not None and (app_name is None
                                           or not principal.may_use_app(app_name)):
            raise Forbidden(codes.APP_NOT_ALLOWED, "this key may send direct only as one of "
                            "its apps: " + ", ".join(sorted(principal.apps)))
        if self.apps is not None and app_name is not None and app_name != DEFAULT_APP:
            app = await self.apps.resolve(app_name)
            found = await self.apps.lookup(app_name)
            if found is None or route not in found.routes:
                raise InvalidInput(codes.PROVIDER_NOT_CONFIGURED,
                                   f"{route} is not configured for app {app_name!r}")
            return app
        if app_name is not None and app_name != DEFAULT_APP:
            raise NotFound(codes.APP_NOT_FOUND, f"no app named {app_name!r}")
        if route not in self.routes:
            raise InvalidInput(codes.PROVIDER_NOT_CONFIGURED,
                               f"{route} is not configured on this gateway")
        return None

    async def _write(self, receive: MemoryObjectReceiveStream[list[_Ready | _Failed]],
                     emit: Callable[[bytes], None]) -> None:
        async with receive:
            while True:
                try:
                    batch = await receive.receive()
                except anyio.EndOfStream:
                    return
                tokens = sum(_tokens(e) for e in batch)
                while len(batch) < BATCH_ITEMS and tokens < BATCH_TOKENS:
                    try:
                        more = receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    batch += more
                    tokens += sum(_tokens(e) for e in more)
                for line in await self._commit(batch):
                    emit(line)

    async def _commit(self, batch: list[_Ready | _Failed]) -> list[bytes]:
        ready = [e for e in batch if isinstance(e, _Ready)]
        outcomes: dict[int, Accepted | GatewayError] = {}
        if ready:
            try:
                written = await self.publisher.accept_many([e.prepared for e in ready])
            except GatewayError as exc:  # the store: every item of the batch failed with it
                written = [exc] * len(ready)
            except Exception:
                log.exception("bulk batch failed")
                written = [GatewayError(codes.INTERNAL_ERROR, "internal error")] * len(ready)
            outcomes = {e.index: out for e, out in zip(ready, written, strict=True)}
        lines = []
        for entry in batch:
            if isinstance(entry, _Failed):
                result = _error(entry.index, entry.error, entry.op_id)
            else:
                out = outcomes[entry.index]
                result = (_ok(entry.index, entry.item, out) if isinstance(out, Accepted)
                          else _error(entry.index, out, entry.prepared.spec.op_id))
            lines.append(bulk_wire.encode_result(result))
        return lines


def _tokens(entry: _Ready | _Failed) -> int:
    return len(entry.item.tokens) if isinstance(entry, _Ready) else 0


def _error(index: int, exc: GatewayError, op_id: str | None) -> bulk_wire.Result:
    return bulk_wire.Result(index=index, ok=False, op_id=op_id, error_code=exc.code, error=exc.message,
                    status=exc.status)


def _ok(index: int, item: bulk_wire.Item, acc: Accepted) -> bulk_wire.Result:
    if item.route is not None:
        return bulk_wire.Result(index=index, ok=True, op_id=acc.op_id, route=item.route,
                        message_id=acc.entity_id, recipients=acc.recipients,
                        duplicate=acc.duplicate, deliver_at=acc.deliver_at)
    out = acc.wire()
    return bulk_wire.Result(index=index, ok=True, op_id=acc.op_id, channel_id=acc.channel_id,
                    message_id=out.message_id, event_id=out.event_id, thing_id=out.thing_id,
                    recipients=acc.recipients, duplicate=acc.duplicate,
                    deliver_at=acc.deliver_at)
