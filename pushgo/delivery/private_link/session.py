"""warp-link sessions: handshake, one live session per device, deliveries from the inbox,
acks, retransmits, heartbeats and GoAway.

A session reads the same pending deliveries as the SSE stream (``service/inbox.py``, woken by
the :class:`~pushgo.delivery.private.Hub`) and sends each as a Deliver frame whose ``seq`` is
the delivery's outbox sequence. An Ack removes the delivery from the inbox, so a delivery
acknowledged on any transport (or by ``POST /messages/ack``) is gone on all of them. A Deliver
not acknowledged within ``ack_timeout_s`` is sent again while it is still pending; at most
``max_inflight`` wait for their ack at once. A payload too large for one frame goes as the
providers' wake-up map, whose ack leaves the delivery for ``/messages/pull``. An app that
comes back with its resume token and ``last_acked_seq`` has the frames it had acknowledged
before its connection dropped acknowledged then (``resume.py``).

The handshake answers a bad first frame, a refused gateway token, an unknown device or no
common version with an Error frame and closes that session only. A new session of a device
supersedes its live one (GoAway ``superseded`` to the old); shutdown sends GoAway
``shutdown``; a peer silent past its idle timeout gets GoAway ``idle_timeout``. Every wait has
a deadline: the hello, each write, the idle read.

Each session is one task (the connection's own): it sends what is due, then reads until a
wake-up from the hub, the next retransmit or re-read, or the idle timeout cancels the read.
Thousands of idle devices are thousands of parked reads, no more.

Must not import pushgo.api, starlette or the store.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field

import anyio

from pushgo.delivery.private import Hub, _Waiter
from pushgo.delivery.private_link.link import FrameRefused, Link, LinkClosed
from pushgo.delivery.private_link.resume import ResumeBooks
from pushgo.errors import GatewayError
from pushgo.protocol import fields as field_rules
from pushgo.protocol import warplink as W
from pushgo.protocol import wire
from pushgo.protocol.ids import redact
from pushgo.protocol.payload import wakeup_data, with_delivery_id
from pushgo.service.devices import Devices
from pushgo.service.inbox import VIA_PRIVATE_LINK, Inbox
from pushgo.service.outbox import OutboxService

log = logging.getLogger("pushgo.private_link")

#: Deliveries read from the inbox per page.
PAGE = 64


@dataclass(frozen=True)
class LinkConfig:
    """Limits and deadlines of the private transports (the defaults are PushGo Gateway
    v1.2.9's)."""

    token: str | None = None
    max_sessions: int = 8192
    hello_timeout_s: float = 8.0
    write_timeout_s: float = 10.0
    ack_timeout_s: float = 15.0
    max_inflight: int = 64
    max_frame_bytes: int = 32 * 1024
    #: How often a quiet session re-reads its inbox (another process may have written it).
    recheck_s: float = 15.0
    #: How long shutdown waits for sessions to send their GoAway.
    drain_s: float = 2.0


@dataclass(eq=False, slots=True)
class _Sent:
    seq: int
    sent_at: float
    #: Sent as a wake-up (the full payload does not fit a frame): its ack does not remove it,
    #: the app fetches it from /messages/pull.
    wakeup: bool = False


@dataclass(eq=False, slots=True)
class _LinkWaiter(_Waiter):
    """A session's place in the hub: a wake-up interrupts the session's read."""

    woken: bool = False
    scope: anyio.CancelScope | None = None

    def wake(self) -> None:
        self.woken = True
        if self.scope is not None:
            self.scope.cancel()


@dataclass(eq=False, slots=True)
class _Session:
    device_key: str
    link: Link
    version: int
    tuning: W.Tuning
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    inflight: dict[str, _Sent] = field(default_factory=dict)
    #: Wake-ups acknowledged in this session: not sent again until the app pulls them.
    woken: set[str] | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: Why the server ends the session: sent as a GoAway once its tasks have stopped.
    goaway: str | None = None
    #: Why the peer's input ended it: sent as an Error frame.
    error: W.FrameError | None = None
    finished: bool = False
    #: Made by shutdown when it waits for the session; set once the session has finished.
    done: anyio.Event | None = None
    waiter: _LinkWaiter | None = None
    #: Its last read was cut short by the in-flight window: an Ack (room for one more) wakes
    #: it to read again. Otherwise everything due was sent, and an Ack needs no read.
    held_back: bool = False

    @property
    def label(self) -> str:
        return f"device={redact(self.device_key)} transport={self.link.transport}"

    def end(self, *, goaway: str | None = None, error: W.FrameError | None = None) -> None:
        if self.goaway is None and self.error is None:
            self.goaway, self.error = goaway, error
        self.scope.cancel()


class PrivateLinks:
    """Every live warp-link session of this process, at most one per device."""

    def __init__(self, config: LinkConfig, hub: Hub, devices: Devices, inbox: Inbox,
                 outbox: OutboxService) -> None:
        self.config = config
        self.hub = hub
        self.devices = devices
        self.inbox = inbox
        self.outbox = outbox
        self._live: dict[str, _Session] = {}
        self.resume = ResumeBooks()
        self._closing = False
        #: Sessions ended, by reason (for logs and tests).
        self.ended: Counter[str] = Counter()

    def sessions_by_transport(self) -> dict[str, int]:
        counts: Counter[str] = Counter(s.link.transport for s in self._live.values())
        return dict(counts)

    def live(self, device_key: str) -> bool:
        return device_key in self._live

    async def shutdown(self) -> None:
        """GoAway ``shutdown`` to every session; waits (at most ``drain_s``) for them to end."""
        self._closing = True
        sessions = list(self._live.values())
        for session in sessions:
            session.end(goaway="shutdown")
        with anyio.move_on_after(self.config.drain_s):
            for session in sessions:
                if not session.finished:
                    session.done = session.done or anyio.Event()
                    await session.done.wait()

    async def serve(self, link: Link) -> None:
        """Run one connection's session to its end. Never raises for the peer's doing."""
        try:
            session = await self._handshake(link)
        except LinkClosed:
            return
        if session is None:
            return
        try:
            await self._run(session)
        finally:
            session.finished = True
            if session.done is not None:
                session.done.set()

    async def _handshake(self, link: Link) -> _Session | None:
        """The ClientHello, checked; the session registered and welcomed, or None after an
        Error frame."""
        cfg = self.config
        try:
            with anyio.fail_after(cfg.hello_timeout_s):
                data = await link.receive()
        except TimeoutError:
            await self._send_error(link, W.FrameError(W.E_HELLO_TIMEOUT, "no ClientHello"))
            return None
        except FrameRefused as exc:
            await self._send_error(link, W.FrameError(exc.code, exc.message))
            return None
        decoded = W.decode(data)
        if isinstance(decoded, W.FrameError):
            await self._send_error(link, decoded)
            return None
        hello = decoded.frame
        if not isinstance(hello, W.ClientHello):
            await self._send_error(link, W.FrameError(W.E_UNEXPECTED_FRAME,
                                                      "the first frame must be ClientHello"))
            return None
        problem = await self._check_hello(link, hello)
        if problem is not None:
            log.info("private session refused transport=%s reason=%s", link.transport,
                     problem.code)
            await self._send_error(link, problem, decoded.version)
            return None
        return await self._welcome(link, hello)

    async def _check_hello(self, link: Link, hello: W.ClientHello) -> W.FrameError | None:
        token = self.config.token
        if token is not None and not link.token_accepted:
            given = hello.gateway_token or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return W.FrameError(W.E_AUTH_FAILED, "gateway token invalid")
        if self._closing:
            return W.FrameError(W.E_TOO_BUSY, "the gateway is shutting down")
        if W.negotiate(W.WIRE_V2, hello.supported_wire_versions, W.SUPPORTED_WIRE) is None:
            return W.FrameError(W.E_VERSION, "no compatible wire version")
        if W.negotiate(W.PAYLOAD_V1, hello.supported_payload_versions,
                       W.SUPPORTED_PAYLOAD) is None:
            return W.FrameError(W.E_VERSION, "no compatible payload version")
        try:
            key = field_rules.device_key(hello.device_key)
            await self.devices.require(key)
        except GatewayError as exc:
            return W.FrameError(exc.code, exc.message)
        if key not in self._live and len(self._live) >= self.config.max_sessions:
            return W.FrameError(W.E_TOO_BUSY, "too many private sessions")
        return None

    async def _welcome(self, link: Link, hello: W.ClientHello) -> _Session | None:
        wire_v = W.negotiate(W.WIRE_V2, hello.supported_wire_versions, W.SUPPORTED_WIRE)
        assert wire_v is not None
        tuning = W.tuning(hello.perf_tier, hello.app_state)
        key = field_rules.device_key(hello.device_key)
        session = _Session(key, link, wire_v, tuning)
        old = self._live.get(key)
        self._live[key] = session
        if old is not None:
            log.info("private session superseded %s", old.label)
            old.end(goaway="superseded")
        token = await self._resume(key, hello)
        welcome = W.ServerWelcome(
            session.session_id, token, tuning.heartbeat_secs,
            tuning.ping_interval_secs, tuning.idle_timeout_secs, tuning.max_backoff_secs,
            self.config.max_frame_bytes, wire_v, W.PAYLOAD_V1)
        try:
            await self._write(session, W.encode(welcome, wire_v))
        except (LinkClosed, TimeoutError):
            self._forget(session)
            return None
        log.info("private session opened %s wire=%d resume=%s last_acked_seq=%s",
                 session.label, wire_v, hello.resume_token is not None, hello.last_acked_seq)
        return session

    async def _resume(self, key: str, hello: W.ClientHello) -> str:
        """The resume token; what the app's ``last_acked_seq`` covers is acknowledged."""
        token, acked = self.resume.begin(key, hello.resume_token, hello.last_acked_seq)
        if acked:
            try:
                await self.inbox.ack_v2(wire.AckV2In(device_key=key, delivery_ids=acked),
                                        via=VIA_PRIVATE_LINK)
            except GatewayError as exc:  # they are sent again, and acknowledged then
                log.warning("private session resume ack failed device=%s code=%s",
                            redact(key), exc.code)
        return token

    def _forget(self, session: _Session) -> None:
        if self._live.get(session.device_key) is session:
            del self._live[session.device_key]

    async def _run(self, session: _Session) -> None:
        waiter = session.waiter = _LinkWaiter(session.device_key)
        self.hub._add(waiter)
        try:
            with session.scope:
                await self._loop(session, waiter)
        except (LinkClosed, TimeoutError):
            session.end(goaway="")  # the transport broke or stalled: nothing more to send
        except GatewayError as exc:
            log.warning("private session store error %s code=%s", session.label, exc.code)
            session.end(goaway="store_unavailable")
        finally:
            self.hub._remove(waiter)
            self._forget(session)
        reason = session.goaway or (session.error.code if session.error else "closed")
        self.ended[reason] += 1
        log.info("private session closed %s reason=%s", session.label, reason)
        with anyio.CancelScope(shield=True):
            if session.error is not None:
                await self._send_error(session.link, session.error, session.version)
            elif session.goaway:
                await self._send_quietly(session.link,
                                         W.encode(W.GoAway(session.goaway), session.version))

    async def _write(self, session: _Session, frame: bytes) -> None:
        with anyio.fail_after(self.config.write_timeout_s):  # one task writes: no lock
            await session.link.send(frame)

    async def _send_error(self, link: Link, error: W.FrameError,
                          version: int = W.WIRE_V2) -> None:
        await self._send_quietly(link, W.encode(W.ErrorFrame(error.code, error.message), version))

    async def _send_quietly(self, link: Link, frame: bytes) -> None:
        with anyio.move_on_after(self.config.write_timeout_s):
            try:
                await link.send(frame)
            except LinkClosed:
                pass

    async def _acked(self, session: _Session, ack: W.Ack) -> None:
        status = ack.status.strip().lower()
        if status == "error":  # the app could not take it now: sent again after the timeout
            return
        if not ack.delivery_id.strip():
            return
        sent = session.inflight.pop(ack.delivery_id, None)
        self.resume.acked(session.device_key, ack.delivery_id)
        if sent is not None and sent.wakeup:
            session.woken = session.woken or set()
            session.woken.add(ack.delivery_id)
        else:
            await self.hub.calls.ack(session.device_key, ack.delivery_id.strip())
        if session.waiter is not None and session.held_back:  # room for one more in flight
            session.waiter.wake()

    async def _loop(self, session: _Session, waiter: _LinkWaiter) -> None:
        """The session's one task: send what is due (new deliveries, those whose ack timed
        out), then read the peer's frames until a wake-up, the next retransmit or re-read, or
        the idle timeout. Reading is cancelled (between frames: every link's ``receive`` is
        safe to cancel) for the sending, so an idle session is one task waiting on its link."""
        cfg = self.config
        idle_s = float(session.tuning.idle_timeout_secs)
        heard = anyio.current_time()
        cursor = 0
        while True:
            waiter.woken = False  # before reading: a wake-up during the writes is not lost
            if waiter.stale:
                waiter.stale = False
                chans = await self.outbox.subscribed_channels(session.device_key)
                self.hub._set_channels(waiter, set(chans))
            now = anyio.current_time()
            expired = [s for s in session.inflight.values()
                       if now - s.sent_at >= cfg.ack_timeout_s]
            if expired:  # read them again: those still pending are sent again
                cursor = min(cursor, min(s.seq for s in expired) - 1)
                session.inflight = {k: s for k, s in session.inflight.items()
                                    if now - s.sent_at < cfg.ack_timeout_s}
            room = cfg.max_inflight - len(session.inflight)
            full_page = False
            if room > 0:
                cursor, full_page = await self._send_page(session, cursor, min(room, PAGE))
            session.held_back = room <= 0 or full_page
            if full_page and len(session.inflight) < cfg.max_inflight:
                continue
            resend_at = now + cfg.recheck_s
            if session.inflight:
                oldest = min(s.sent_at for s in session.inflight.values())
                resend_at = min(resend_at, oldest + cfg.ack_timeout_s)
            while not waiter.woken:
                now = anyio.current_time()
                if now >= heard + idle_s:
                    session.end(goaway="idle_timeout")
                    return
                if now >= resend_at:
                    break
                with anyio.CancelScope(deadline=min(resend_at, heard + idle_s)) as waiting:
                    waiter.scope = waiting
                    try:
                        data = await session.link.receive()
                    except FrameRefused as exc:
                        session.end(error=W.FrameError(exc.code, exc.message))
                        return
                    finally:
                        waiter.scope = None
                if waiting.cancelled_caught:
                    continue
                heard = anyio.current_time()
                if not await self._received(session, data):
                    return

    async def _received(self, session: _Session, data: bytes) -> bool:
        """One frame from the peer; False once it has ended the session."""
        decoded = W.decode(data)
        if isinstance(decoded, W.FrameError):
            session.end(error=decoded)
            return False
        frame = decoded.frame
        if isinstance(frame, W.Ping):
            await self._write(session, W.encode(W.Pong(), session.version))
        elif isinstance(frame, W.Ack):
            await self._acked(session, frame)
        elif isinstance(frame, W.GoAway):
            session.end(goaway="")  # the peer leaves: no GoAway back
            return False
        elif not isinstance(frame, W.Pong):
            session.end(error=W.FrameError(W.E_UNEXPECTED_FRAME,
                                           f"unexpected {type(frame).__name__} frame"))
            return False
        return True

    async def _send_page(self, session: _Session, cursor: int, limit: int) -> tuple[int, bool]:
        items = await self.hub.calls.page(session.device_key, cursor, limit)
        for item in items:
            cursor = max(cursor, item.seq)
            if item.delivery_id in session.inflight or (
                    session.woken and item.delivery_id in session.woken):
                continue
            data = _string_map(with_delivery_id(item.payload_json, item.delivery_id))
            frame = W.encode(W.Deliver(item.seq, item.delivery_id, W.encode_payload(data)),
                             session.version)
            wakeup = len(frame) > self.config.max_frame_bytes + 2
            if wakeup:  # too large for one frame: a wake-up, the app pulls the rest
                frame = W.encode(W.Deliver(item.seq, item.delivery_id,
                                           W.encode_payload(wakeup_data(data))),
                                 session.version)
            await self._write(session, frame)
            session.inflight[item.delivery_id] = _Sent(item.seq, anyio.current_time(), wakeup)
            if not wakeup:
                self.resume.sent(session.device_key, item.delivery_id, item.seq)
        return cursor, len(items) == limit


def _string_map(payload_json: str) -> dict[str, str]:
    """The payload's flat JSON object as the envelope's string map (every value a string, as
    the payload builder writes them; anything else as its JSON text)."""
    value = json.loads(payload_json)
    return {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"),
                                                             ensure_ascii=False)
            for k, v in value.items()}
