"""The dispatcher: outbox → provider senders → recorded outcomes.

One task claims due provider deliveries in pages (under a lease), builds each operation's
payload template once, and feeds the senders' bounded queues (backpressure: a full queue stops
the claiming). Another takes results in batches and writes them in one transaction: sent;
dead token (the device route loses it, its pending provider work fails); transient (429, 5xx,
a lost connection, a timeout) → next attempt at a capped exponential backoff with jitter
honouring Retry-After, for as long as the delivery's TTL lasts (only a provider's permanent
answer or the TTL ends a delivery); permanent → failed with the reason. Routes with no
configured provider fail at once with ``provider_not_configured`` (the payload stays pullable).

Each provider has a circuit breaker (``breaker.py``) fed by those results and by connections
that fail to open. While it is open the provider's route is not claimed, what its sender holds
is given back to the outbox unsent (due again after the cool-down, no attempt spent), and the
other routes keep flowing; half-open, a few real deliveries probe it; the first success closes
it and makes everything waiting for the provider due at once. Each change is written to the
outbox (``provider_health``) so delivery status in every process can say why deliveries wait.

WNS and Web Push devices each name their own host (a push service, a WNS region), so one
failing host must not pause the route for every browser: on those routes the breakers are per
push service origin (``scheme://host[:port]`` of the channel URI or endpoint). The route is
claimed as usual; a delivery for an origin whose breaker is open is given back unsent when it
is handed out (due again after that breaker's cool-down), a half-open one lets a few probes
through, and the first success closes it and makes the route's waiting deliveries due. Only
the route breakers are written to ``provider_health``; an origin's shows in the deliveries'
``last_error`` and in ``/metrics``.

It wakes when an operation is accepted (DeliveryListener) and otherwise at the next due time.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from pushgo.delivery import breaker as B
from pushgo.delivery.appsenders import AppSenders
from pushgo.delivery.waker import Waker, WakesOnAccept
from pushgo.errors import StoreUnavailable
from pushgo.protocol import apns as A
from pushgo.protocol import fcm as FC
from pushgo.protocol import liveactivity as LA
from pushgo.protocol import webpush as WEB
from pushgo.protocol import wns as WNS
from pushgo.protocol.outcomes import Delivered, Rejected
from pushgo.protocol.payload import wakeup_data
from pushgo.push.sender import Expired, Job, ProviderSender, Result, ResultBuffer, TransportFailure
from pushgo.service.context import Context
from pushgo.service.outbox import Due, OpInfo, OutboxService, Outcomes

log = logging.getLogger("pushgo.dispatch")

PAGE = 1000
#: A claimed delivery is ours for this long (``PUSHGO_DELIVERY_LEASE_SECONDS``, this by
#: default), renewed every third of it while a sender still holds it; a process that dies loses
#: its claims within one lease, or at once when it is restarted under the same identity.
LEASE_MS = 60 * 1000
IDLE_POLL_S = 1.0
#: Woken sooner than this after its last claim, the dispatcher waits out the rest: a burst of
#: accepted operations is claimed together, and a lone one at once.
CLAIM_GAP_S = 0.02
BACKOFF_BASE_S = 1.0
#: Transient failures are retried until the TTL: the backoff stays short (a provider back after
#: an outage is used within a minute) and a provider's Retry-After is honoured up to as much.
BACKOFF_MAX_S = 60.0
RETRY_AFTER_MAX_S = 60.0
RESULT_BATCH = 2000
TEMPLATE_CACHE = 4096
PROVIDER_ROUTES = ("apns", "fcm", "wns", "webpush")
#: Routes whose devices each name their own host: a breaker per push service origin.
PER_ORIGIN_ROUTES = frozenset({"wns", "webpush"})
#: Origins with a breaker (a failure streak, or not closed) kept at most; closed ones with no
#: streak are dropped at once.
MAX_ORIGIN_BREAKERS = 4096


def origin_of(route: str, token: str | None) -> str | None:
    """The push service origin a WNS or Web Push delivery goes to (None: not such a route, or
    a token that names none, which then counts against the route's own breaker)."""
    if route not in PER_ORIGIN_ROUTES or not token:
        return None
    url: Any = token
    try:
        if route == "webpush":  # the stored subscription JSON; only its endpoint matters here
            doc = json.loads(token)
            url = doc.get("endpoint") if isinstance(doc, dict) else None
        if not isinstance(url, str) or not url.strip().startswith("https://"):
            return None
        return WEB.origin_of(url.strip()) or None
    except ValueError:
        return None


def backoff_ms(attempts: int, retry_after_s: float | None) -> int:
    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(max(0, attempts), 32))
    delay *= 0.5 + random.random() / 2  # jitter: retries of one burst spread out
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, RETRY_AFTER_MAX_S))
    return int(delay * 1000)


def connect_reason(error: BaseException) -> str:
    """A short fixed name for why a provider connection could not be opened (status, metrics
    labels), from the exceptions behind it, never their text."""
    seen: BaseException | None = error
    for _ in range(8):  # the chain is short; a cycle must not hang
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "ConnectionRefused"
        if isinstance(seen, ssl.SSLError):
            return "TLSError"
        if isinstance(seen, TimeoutError):
            return "ConnectTimeout"
        if isinstance(seen, anyio.BrokenResourceError | ConnectionResetError):
            return "ConnectionClosed"
        seen = seen.__cause__ or seen.__context__
    return "NoHTTP2" if "did not negotiate h2" in str(error) else "ConnectFailed"


def _breaker() -> B.Breaker:
    return B.Breaker(threshold=B.THRESHOLD, window_s=B.WINDOW_S, cooldown_s=B.COOLDOWN_S,
                     probes=B.PROBES)


class OutboxPump(WakesOnAccept):
    def __init__(self, ctx: Context, outbox: OutboxService, senders: dict[str, ProviderSender],
                 results: ResultBuffer, app_senders: AppSenders | None = None) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.senders = senders  # the default app's
        #: The other apps' senders, per (route, app); their failures count on the route's breaker.
        self.app_senders = app_senders
        self.results = results
        self._waker = Waker()
        self._templates: OrderedDict[tuple[int, str, str], Any] = OrderedDict()
        self._held: set[int] = set()  # seqs handed to a sender and not yet resolved
        self._resolving: set[int] = set()  # seqs whose results are being written
        self._reclaimed: set[int] = set()  # of those, claimed and handed out again meanwhile
        # For /metrics: sent per route (hot path: one dict increment per result), and the rarer
        # outcomes per (route, outcome, reason).
        self.sent_by_route: dict[str, int] = {}
        self.outcomes: dict[tuple[str, str, str], int] = {}
        self.lease_ms = ctx.settings.delivery_lease_seconds * 1000
        #: Called after each batch of send results is recorded (delivery status watchers).
        self.on_results: list[Callable[[], None]] = []
        self.ready = False
        self.breakers = {route: _breaker() for route in senders}
        self._since: dict[str, int] = {}  # wall-clock ms a provider's breaker left closed
        self._changed: set[str] = set()  # breakers changed, not yet written to the outbox
        self._due_again: set[str] = set()  # routes with an origin back in service
        self._origins_opened: set[str] = set()  # routes with an origin's breaker just opened
        # A hand-out waiting for room in a sender's queue (route, scope): cancelled when that
        # provider's breaker opens, so the claim loop can give its deliveries back.
        self._blocked: tuple[str, anyio.CancelScope] | None = None
        self._parked: list[Job] = []  # claimed for a provider whose breaker opened meanwhile
        self._expire_at: dict[str, float] = {}  # when to end a held route's overdue deliveries
        #: (route, origin) → breaker, for the routes in PER_ORIGIN_ROUTES
        self.origin_breakers: dict[tuple[str, str], B.Breaker] = {}
        self._probes_left: dict[tuple[str, str], int] = {}
        for route, sender in senders.items():
            if route in PER_ORIGIN_ROUTES:
                continue  # a refused connection reaches the origin's breaker with its job
            sender.pool.on_connect_failed = (
                lambda error, r=route: self._failure(r, connect_reason(error)))
        if app_senders is not None:
            app_senders.on_connect_failed = lambda r, e: self._failure(r, connect_reason(e))

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        # What this process's previous run left leased is due at once (on SQLite, the only
        # process, every lease left behind); other processes' claims wait out their lease.
        await self.outbox.recover_own_claims()
        if not self.outbox.shared:
            # The only process: a breaker state left in the outbox is its previous run's.
            self._changed.update(self.breakers)
        async with anyio.create_task_group() as tg:
            for sender in self.senders.values():
                await tg.start(sender.run)
            if self.app_senders is not None:
                await tg.start(self.app_senders.run)
            tg.start_soon(self._apply_results)
            tg.start_soon(self._renew_leases)
            self.ready = True
            task_status.started()
            await self._claim_forever()

    async def _claim_forever(self) -> None:
        while True:
            self._waker.arm()
            claimed_at = anyio.current_time()
            try:
                routes = await self._tend_breakers()
                page = await self.outbox.claim_due(routes, self.ctx.now(), PAGE,
                                                   self.lease_ms)
                page += await self._claim_probes()
            except StoreUnavailable as exc:  # tried again after IDLE_POLL_S (or a wake-up)
                log.warning("claiming deliveries failed", extra={"fields": {"error": exc.message}})
                page = []
            except Exception:
                log.exception("claiming deliveries failed")
                page = []
            if page:
                await self._hand_out(page)
            if len(page) < PAGE:
                await self._waker.sleep(IDLE_POLL_S)
                # Operations accepted in a stream share claims: at most one per CLAIM_GAP_S
                # (a claim for every accepted send cost more than the send itself).
                gap = claimed_at + CLAIM_GAP_S - anyio.current_time()
                if gap > 0:
                    await anyio.sleep(gap)

    async def _renew_leases(self) -> None:
        while True:
            await anyio.sleep(self.lease_ms / 3000)
            if self._held:
                try:
                    await self.outbox.extend_leases(sorted(self._held),
                                                    self.ctx.now() + self.lease_ms)
                except StoreUnavailable as exc:
                    log.warning("renewing delivery leases failed",
                                extra={"fields": {"error": exc.message}})
                except Exception:
                    log.exception("renewing delivery leases failed")

    async def _hand_out(self, page: list[Due]) -> None:
        # The whole page is held from the claim on, so its leases are renewed even while the
        # rest of it waits here for room in a sender's queue (a slow provider): an unrenewed
        # lease would run out and another process would send the same delivery.
        fresh = []
        for due in page:
            if due.seq not in self._held:
                fresh.append(due)
            elif due.seq in self._resolving:
                # Its last result was written (a retry due at once, or made due when its push
                # service came back) and claimed again before that write's batch was let go:
                # a new hand-out, which the batch must not forget.
                self._reclaimed.add(due.seq)
                fresh.append(due)
        page = fresh
        self._held.update(d.seq for d in page)
        missing = {d.op_pk for d in page
                   if (d.op_pk, d.route, d.push_type) not in self._templates}
        infos: dict[int, OpInfo] = {}
        if missing:
            infos = await self.outbox.op_infos(sorted(missing))
        failures: list[Result] = []
        now = self.ctx.now()
        for due in page:
            job = Job(due.seq, due.delivery_id, due.device_key, due.token or "", None,
                      due.expires_at, False, attempts=due.attempts, platform=due.platform,
                      route=due.route, push_type=due.push_type)
            sender = await self._sender_of(due)
            if isinstance(sender, str):  # no app of that name (removed), or not this route
                failures.append(Result(job, Rejected(sender, 0, "permanent")))
                continue
            if self.breakers[due.route].state is B.State.OPEN:
                self._parked.append(job)  # given back unsent by the next claim round
                continue
            if due.token is None:
                failures.append(Result(job, Rejected("no_provider_token", 0, "permanent")))
                continue
            if due.expires_at <= now:
                failures.append(Result(job, Expired()))
                continue
            if due.push_type and due.route != "apns":
                # A Live Activity push whose device left APNs before it went out: its token
                # means nothing elsewhere (the payload stays in the device's inbox).
                failures.append(Result(job, Rejected("device_route_changed", 0, "permanent")))
                continue
            if due.route in PER_ORIGIN_ROUTES and not self._origin_admits(job):
                self._parked.append(job)  # its push service is held back: given back unsent
                continue
            entry = self._template(due, infos)
            if entry is None:
                failures.append(Result(job, Rejected("PayloadTooLarge", 413, "permanent")))
                continue
            job.template, job.low_priority = entry
            try:
                # Without a checkpoint per job while the queue has room: each await here would
                # give the sender one job per scheduling round, a handful of streams in flight.
                sender.jobs_in.send_nowait(job)
            except anyio.WouldBlock:
                await self._send_waiting(sender, job)
        for result in failures:
            self.results.add(result)

    def _route_senders(self, route: str) -> list[ProviderSender]:
        own = self.senders.get(route)
        apps = self.app_senders.of_route(route) if self.app_senders is not None else []
        return apps if own is None else [own, *apps]

    async def _sender_of(self, due: Due) -> ProviderSender | str:
        if due.app is None:
            return self.senders.get(due.route) or "provider_not_configured"
        if self.app_senders is None:
            return f"app_not_found:{due.app}"
        return await self.app_senders.sender(due.route, due.app)

    def _template(self, due: Due, infos: dict[int, OpInfo]) -> tuple[Any, bool] | None:
        key = (due.op_pk, due.route, due.push_type)
        cached = self._templates.get(key)
        if cached is not None:
            self._templates.move_to_end(key)
            return cached  # type: ignore[no-any-return]
        info = infos.get(due.op_pk)
        if info is None:
            return None
        data: dict[str, str] = json.loads(info.payload)
        alert: dict[str, str] = json.loads(info.alert or "{}")
        wake = wakeup_data(data)  # the stored map never holds delivery_id
        template: Any
        if due.push_type:
            # A Live Activity push: the same bytes for every device of the operation.
            template = LA.build_apns(
                data, info.route, title=alert.get("title", data.get("title", "")),
                body=alert.get("body", data.get("body", "")), expires_at_ms=info.expires_at)
        elif due.route == "apns":
            template = A.build_payload(data, title=alert.get("title", data.get("title", "")),
                                       body=alert.get("body", data.get("body", "")),
                                       severity=info.severity,
                                       thread_id=alert.get("thread", ""), wakeup_data=wake)
        elif due.route == "wns":
            template = (WNS.PayloadTemplate.build(data, WNS.priority(info.severity)),
                        WNS.PayloadTemplate.build(wake, WNS.priority("high"), wakeup=True))
        elif due.route == "webpush":
            template = (WEB.PayloadTemplate.build(data, info.severity),
                        WEB.PayloadTemplate.build(wake, info.severity, wakeup=True))
        else:
            # An event's ongoing notification, replaced in place and removed on close.
            live = LA.fcm_fields(data, info.route)
            if live:
                data, wake = {**data, **live}, {**wake, **live}
            template = (FC.MessageTemplate(FC.data_json(data),
                                           "NORMAL" if info.severity == "low" else "HIGH",
                                           False),
                        FC.MessageTemplate(FC.data_json(wake), "HIGH", True))
        if template is None:
            return None
        entry = (template, info.severity == "low")
        self._templates[key] = entry
        while len(self._templates) > TEMPLATE_CACHE:
            self._templates.popitem(last=False)
        return entry

    async def _apply_results(self) -> None:
        while True:
            batch = await self.results.take(RESULT_BATCH)
            now = self.ctx.now()
            out = Outcomes()
            for result in batch:
                self._classify(result, now, out)
            # Only what this write makes due again may be handed out again before it is let
            # go; a sent or ended delivery claimed meanwhile (its lease ran out under a slow
            # write) stays dropped, or it would go out twice.
            self._resolving.update(seq for seq, _at, _why in (*out.retry, *out.deferred))
            try:
                await self.outbox.apply_outcomes(out, now)
            except StoreUnavailable as exc:
                # The leases stay: these deliveries are tried again when they run out.
                log.warning("recording send results failed",
                            extra={"fields": {"error": exc.message}})
            except Exception:
                log.exception("recording send results failed")
            for result in batch:
                seq = result.job.seq
                if seq in self._reclaimed:
                    self._reclaimed.discard(seq)  # handed out again meanwhile: still held
                else:
                    self._held.discard(seq)
            self._resolving.clear()
            for hook in self.on_results:
                hook()
            if out.retry:
                self._waker.wake()

    def _classify(self, result: Result, now: int, out: Outcomes) -> None:
        job, outcome = result.job, result.outcome
        if isinstance(outcome, Delivered):
            out.sent.append(job.seq)
            self.sent_by_route[job.route] = self.sent_by_route.get(job.route, 0) + 1
            self._job_success(job)
        elif isinstance(outcome, Expired):
            out.expired.append(job.seq)
            self._count(job, "expired", "expired")
        elif isinstance(outcome, TransportFailure):
            self._job_failure(job, outcome.reason)
            self._retry(job, outcome.reason, None, now, out)
        elif outcome.kind == "retry":
            self._job_failure(job, outcome.reason)
            self._retry(job, outcome.reason, outcome.retry_after_s, now, out)
        else:  # a permanent answer: the provider is serving, this delivery ends
            self._job_success(job)
            if outcome.kind == "dead_token" and job.push_type:
                out.dead_live.append((job.seq, job.device_key, job.token, outcome.reason))
            elif outcome.kind == "dead_token":
                out.dead.append((job.seq, job.device_key, job.token, outcome.reason))
            else:
                out.failed.append((job.seq, outcome.reason))
            self._count(job, "failed", outcome.reason)

    def _count(self, job: Job, outcome: str, reason: str) -> None:
        # Reasons are provider codes; cap what a free-text transport error could add.
        key = (job.route, outcome, reason.partition(":")[0][:64])
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def _retry(self, job: Job, reason: str, retry_after: float | None, now: int,
               out: Outcomes) -> None:
        """A transient failure: another attempt, however many came before, until the TTL."""
        delay = backoff_ms(job.attempts + 1, retry_after)
        breaker = self._breaker_of(job)
        if breaker is not None and breaker.holding:
            # Due when the breaker lets deliveries through again, not later.
            delay = min(delay, int(breaker.cooldown_s * 1000))
        # Past its TTL it is expired at the next claim, not kept queued longer.
        out.retry.append((job.seq, min(now + delay, max(now, job.expires_at_ms)), reason))
        self._count(job, "retried", reason)

    # -- the providers' breakers -------------------------------------------------------------

    def _origin_key(self, job: Job) -> tuple[str, str] | None:
        origin = origin_of(job.route, job.token)
        return None if origin is None else (job.route, origin)

    def _breaker_of(self, job: Job) -> B.Breaker | None:
        """The breaker a job's answers count against: its push service origin's on the routes
        where every device names its own host, else its route's."""
        key = self._origin_key(job)
        if key is None:
            return self.breakers.get(job.route)
        return self.origin_breakers.get(key)

    def _job_failure(self, job: Job, reason: str) -> None:
        key = self._origin_key(job)
        if key is None:
            self._failure(job.route, reason)
            return
        breaker = self.origin_breakers.get(key)
        if breaker is None:
            if len(self.origin_breakers) >= MAX_ORIGIN_BREAKERS:
                return  # not tracked: its deliveries still retry at their backoff
            breaker = self.origin_breakers[key] = B.Breaker(
                threshold=B.THRESHOLD, window_s=B.WINDOW_S, cooldown_s=B.COOLDOWN_S,
                probes=B.PROBES)
        if breaker.failure(reason[:64], anyio.current_time()):
            self._probes_left.pop(key, None)
            self._origins_opened.add(key[0])  # what the sender holds for it is given back
            log.warning("push service unavailable: its deliveries wait", extra={"fields": {
                "provider": key[0], "origin": key[1], "error": breaker.last_error,
                "retry_in_s": breaker.cooldown_s}})
            self._waker.wake()

    def _job_success(self, job: Job) -> None:
        if job.route in PER_ORIGIN_ROUTES and not self.origin_breakers:
            return  # every push service healthy: nothing to look up (the common case)
        key = self._origin_key(job)
        if key is None:
            self._success(job.route)
            return
        breaker = self.origin_breakers.get(key)
        if breaker is None:
            return
        closed = breaker.success()
        if breaker.state is B.State.CLOSED:
            del self.origin_breakers[key]  # nothing to remember of a healthy origin
            self._probes_left.pop(key, None)
        if closed:
            log.info("push service available again",
                     extra={"fields": {"provider": key[0], "origin": key[1]}})
            self._due_again.add(key[0])
            self._waker.wake()

    def _origin_open(self, job: Job) -> bool:
        breaker = self._breaker_of(job)
        return breaker is not None and breaker.state is B.State.OPEN

    def _origin_admits(self, job: Job) -> bool:
        """Whether a job may go to its push service now: its origin's breaker is closed, or
        half-open with a probe left for this cool-down."""
        if not self.origin_breakers:
            return True
        key = self._origin_key(job)
        breaker = None if key is None else self.origin_breakers.get(key)
        if key is None or breaker is None:
            return True
        admitted = breaker.admit(anyio.current_time())
        if admitted is None:
            return True
        if admitted:
            self._probes_left[key] = admitted
        left = self._probes_left.get(key, 0)
        if left <= 0:
            return False
        self._probes_left[key] = left - 1
        return True

    def _failure(self, route: str, reason: str) -> None:
        breaker = self.breakers.get(route)
        if breaker is None or not breaker.failure(reason[:64], anyio.current_time()):
            return
        self._changed.add(route)
        if route not in self._since:  # it opened (not again after a failed probe)
            self._since[route] = self.ctx.now()
            log.warning("provider unavailable: its deliveries wait", extra={"fields": {
                "provider": route, "error": breaker.last_error,
                "retry_in_s": breaker.cooldown_s}})
        self._waker.wake()
        if self._blocked is not None and self._blocked[0] == route:
            self._blocked[1].cancel()

    def _success(self, route: str) -> None:
        breaker = self.breakers.get(route)
        if breaker is not None and breaker.success():
            self._changed.add(route)
            log.info("provider available again", extra={"fields": {"provider": route}})
            self._waker.wake()

    async def _send_waiting(self, sender: ProviderSender, job: Job) -> None:
        """Wait for room in the sender's queue, unless the provider's breaker opens first:
        then the job is parked and given back with the others."""
        with anyio.CancelScope() as scope:
            self._blocked = (job.route, scope)
            try:
                await sender.jobs_in.send(job)
            finally:
                self._blocked = None
        if scope.cancelled_caught:
            self._parked.append(job)

    async def _tend_breakers(self) -> tuple[str, ...]:
        """Turn breakers whose cool-down is over half-open, give back what open ones hold,
        write the changes; the routes that may be claimed in full."""
        now_s = anyio.current_time()
        if self.app_senders is not None:  # a route only other apps send on is claimed too
            for route in self.app_senders.apps.routes() - self.breakers.keys():
                self.breakers[route] = _breaker()
        for route, breaker in self.breakers.items():
            if breaker.tick(now_s):
                self._changed.add(route)
        await self._give_back()
        await self._write_breakers()
        await self._expire_held(now_s)
        return tuple(r for r in PROVIDER_ROUTES
                     if r not in self.breakers or not self.breakers[r].holding)

    async def _claim_probes(self) -> list[Due]:
        """A few deliveries for each half-open provider, once per cool-down."""
        page: list[Due] = []
        for route, breaker in self.breakers.items():
            if breaker.state is B.State.HALF_OPEN:
                admitted = breaker.admit(anyio.current_time())
                if admitted:
                    page += await self.outbox.claim_due((route,), self.ctx.now(), admitted,
                                                        self.lease_ms)
        return page

    async def _expire_held(self, now_s: float) -> None:
        """A provider held back by its breaker has its deliveries past their TTL ended (once
        per cool-down): nothing else claims them until it is back."""
        for route, breaker in self.breakers.items():
            if not breaker.holding or now_s < self._expire_at.get(route, 0.0):
                continue
            self._expire_at[route] = now_s + breaker.cooldown_s
            ended = await self.outbox.expire_waiting(route, self.ctx.now())
            if ended:
                key = (route, "expired", "expired")
                self.outcomes[key] = self.outcomes.get(key, 0) + ended
                for hook in self.on_results:
                    hook()

    async def _give_back(self) -> None:
        """What the senders of open providers hold goes back to the outbox unsent: due again
        when the breaker half-opens, no attempt spent, the provider's last error kept."""
        parked, self._parked = self._parked, []
        for route, breaker in self.breakers.items():
            if breaker.state is B.State.OPEN:
                for sender in self._route_senders(route):
                    parked += sender.take_back()
            elif route in self._origins_opened:
                for sender in self._route_senders(route):
                    parked += sender.take_back_where(self._origin_open)
        self._origins_opened.clear()
        if not parked:
            return
        now, now_s = self.ctx.now(), anyio.current_time()
        out = Outcomes()
        for job in parked:
            own = self._breaker_of(job)
            # Parked for its origin, or while its route's breaker opened.
            held = own if own is not None and own.holding else self.breakers[job.route]
            wait_ms = max(1, int(held.wait_s(now_s) * 1000))
            out.deferred.append((job.seq, now + wait_ms, held.last_error or "unavailable"))
        try:
            await self.outbox.apply_outcomes(out, now)
        except StoreUnavailable as exc:  # their leases run out and bring them back
            log.warning("giving deliveries back failed", extra={"fields": {"error": exc.message}})
        except Exception:
            log.exception("giving deliveries back failed")
        for job in parked:
            self._held.discard(job.seq)
        for hook in self.on_results:
            hook()

    async def _write_breakers(self) -> None:
        """Tell the outbox (every process's delivery status) what changed; a provider back in
        service has its waiting deliveries made due at once."""
        changed, self._changed = self._changed, set()
        now = self.ctx.now()
        due_again, self._due_again = self._due_again, set()
        for route in sorted(due_again - changed):  # an origin back: its deliveries are due
            try:
                await self.outbox.make_due(route, now)
            except StoreUnavailable as exc:
                log.warning("making deliveries due failed",
                            extra={"fields": {"error": exc.message}})
        for route in sorted(changed):
            breaker = self.breakers[route]
            since = self._since.get(route, now) if breaker.holding else now
            try:
                await self.outbox.record_provider(route, breaker.state.name.lower(),
                                                  breaker.last_error, since, now)
                if not breaker.holding:
                    self._since.pop(route, None)
                    await self.outbox.make_due(route, now)
            except Exception as exc:
                self._changed.add(route)  # written at the next round
                if not isinstance(exc, StoreUnavailable):
                    raise
                log.warning("recording a provider's state failed",
                            extra={"fields": {"error": exc.message}})
