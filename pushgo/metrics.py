"""``GET /metrics``: one gateway's numbers in the Prometheus text format.

Owns a per-gateway ``CollectorRegistry`` (never the global one: several gateways may share a
process) with one custom collector that reads, at scrape time, the plain counters the hot path
already keeps — the dispatcher's outcome counts, each sender's in-flight streams, latency
buckets and pool, the service's accepted-work counts, the HTTP front's request counts — so
sending costs no lock and no metric object per request. Queue depth comes from the outbox,
read at most every ``QUEUE_REFRESH_S`` whatever the scrape rate.

Counters are per process. With ``pushgo serve --workers N`` each worker also answers on a
private Unix socket; a scrape of ``/metrics`` on the shared port sums every worker's numbers
(``?scope=process`` returns only the answering worker's), see :func:`merge`.
Must not be imported by pushgo.push, pushgo.service or pushgo.store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import anyio
import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from pushgo import __version__
from pushgo.delivery.private import Hub
from pushgo.delivery.private_link import PrivateLinks
from pushgo.delivery.pump import OutboxPump
from pushgo.errors import InvalidInput, codes
from pushgo.service.context import Context
from pushgo.service.outbox import OutboxService
from pushgo.service.quotas import Quotas

log = logging.getLogger("pushgo.metrics")

ROUTES = ("apns", "fcm", "wns", "webpush", "private")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUEUE_REFRESH_S = 2.0
PEER_TIMEOUT_S = 2.0
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Gauges every worker reads alike (the shared outbox) or that make no sense added up: merged
#: by max, not summed.
SHARED_GAUGES = frozenset({"pushgo_queue_depth", "process_start_time_seconds",
                           "process_max_fds", "pushgo_key_notifications_today"})


class Observed(Protocol):
    """What /metrics reads of a gateway (``pushgo.app.Gateway``): the accepted-work counts,
    the pump (its outcome counts and the provider senders it feeds), the private hub, and
    the outbox (queue depth)."""

    @property
    def ctx(self) -> Context: ...

    @property
    def pump(self) -> OutboxPump: ...

    @property
    def hub(self) -> Hub: ...

    @property
    def links(self) -> PrivateLinks: ...

    @property
    def outbox(self) -> OutboxService: ...

    @property
    def quotas(self) -> Quotas: ...


class _Histogram(Protocol):
    """A sender's latency buckets (``pushgo.push.sender.LatencyHistogram``)."""

    @property
    def BOUNDS(self) -> Sequence[float]: ...

    @property
    def counts(self) -> Sequence[int]: ...

    @property
    def sum(self) -> float: ...


class GatewayMetrics:
    def __init__(self, gateway: Observed) -> None:
        self.gateway = gateway
        self.http: dict[tuple[str, str, str], int] = {}
        self.queue: dict[str, int] = {}
        #: Notifications each API key sent today (the shared daily counts, busiest first).
        self.used_today: dict[str, int] = {}
        self._queue_at = -QUEUE_REFRESH_S
        self._refresh_lock = anyio.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        #: Unix sockets of the other workers of this ``pushgo serve --workers N`` (see merge).
        self.peer_dir: str | None = None
        self.own_socket: str | None = None
        self.worker_index = 0

    def on_request(self, method: str, route: str, status: int) -> None:
        key = (method if method in _METHODS else "other", route, str(status))
        self.http[key] = self.http.get(key, 0) + 1

    async def refresh(self) -> None:
        async with self._refresh_lock:
            if anyio.current_time() - self._queue_at < QUEUE_REFRESH_S:
                return
            try:
                self.queue = await self.gateway.outbox.queue_depth()
            except Exception:
                log.exception("reading the queue depth failed")
            try:
                self.used_today = await self.gateway.quotas.used_today()
            except Exception:
                log.exception("reading the daily quota counts failed")
            self._queue_at = anyio.current_time()

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        scope = request.query_params.get("scope", "all")
        if scope not in ("all", "process") or any(k not in ("scope", "token") for k in request.query_params):
            raise InvalidInput(codes.INVALID_QUERY, "query parameter scope must be all or process")
        own = await self.render()
        if scope == "all" and self.peer_dir is not None:
            own = merge([own, *await self._peers(request.headers.get("authorization"))])
        return Response(own, media_type=CONTENT_TYPE)

    async def _peers(self, authorization: str | None) -> list[bytes]:
        """Every other worker's own numbers, over its private socket. A worker that does not
        answer (restarting) is left out of this scrape."""
        assert self.peer_dir is not None
        try:
            names = sorted(n for n in os.listdir(self.peer_dir) if n.endswith(".sock"))
        except OSError:
            return []
        paths = [os.path.join(self.peer_dir, n) for n in names]
        paths = [p for p in paths if p != self.own_socket]
        out: list[bytes] = []
        headers = {"authorization": authorization} if authorization else {}

        async def one(path: str) -> None:
            transport = httpx.AsyncHTTPTransport(uds=path)
            try:
                async with httpx.AsyncClient(transport=transport, timeout=PEER_TIMEOUT_S) as c:
                    resp = await c.get("http://worker/metrics?scope=process", headers=headers)
                if resp.status_code == 200:
                    out.append(resp.content)
            except (httpx.HTTPError, OSError):
                pass

        async with anyio.create_task_group() as tg:
            for path in paths:
                tg.start_soon(one, path)
        return out


class _Collector:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterable[Metric]:
        yield from self._accepted()
        yield from self._outcomes()
        yield from self._providers()
        yield from self._breakers()
        yield from self._process()
        yield from self._quotas()

    def _quotas(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "pushgo_quota_rejections",
            "Requests and operations refused quota_exceeded, by limit (rate, daily) and "
            "subject (key, channel)", labels=["kind", "subject"])
        counts = self.m.gateway.quotas.refusals
        for kind in ("rate", "daily"):
            for subject in ("key", "channel"):
                refused.add_metric([kind, subject], counts.get((kind, subject), 0))
        yield refused
        today = GaugeMetricFamily(
            "pushgo_key_notifications_today",
            "Notifications counted against each API key's daily quota today (UTC; the "
            "busiest keys, all processes)", labels=["key_id"])
        for key_id, n in sorted(self.m.used_today.items()):
            today.add_metric([key_id], n)
        yield today

    def _accepted(self) -> Iterator[Metric]:
        counts = self.m.gateway.ctx.counts
        ops = CounterMetricFamily("pushgo_operations_accepted",
                                  "Operations accepted into the outbox", labels=["kind"])
        for kind, n in sorted(counts.operations.items()):
            ops.add_metric([kind], n)
        yield ops
        yield CounterMetricFamily("pushgo_deliveries_enqueued",
                                  "Deliveries written by accepted operations",
                                  value=counts.deliveries)
        depth = GaugeMetricFamily("pushgo_queue_depth",
                                  "Queued deliveries in the outbox (all processes)",
                                  labels=["route"])
        for route, n in sorted({**dict.fromkeys(ROUTES, 0), **self.m.queue}.items()):
            depth.add_metric([route], n)
        yield depth

    def _outcomes(self) -> Iterator[Metric]:
        disp = self.m.gateway.pump
        sent = CounterMetricFamily("pushgo_deliveries_sent",
                                   "Deliveries a provider accepted", labels=["route"])
        for route, n in sorted({**dict.fromkeys(disp.senders, 0), **disp.sent_by_route}.items()):
            sent.add_metric([route], n)
        yield sent
        failed = CounterMetricFamily(
            "pushgo_deliveries_failed",
            "Deliveries that ended failed, by provider reason (dead tokens included)",
            labels=["route", "reason"])
        retried = CounterMetricFamily(
            "pushgo_delivery_retries",
            "Deliveries scheduled for another attempt (429, 5xx, transport)",
            labels=["route", "reason"])
        expired = CounterMetricFamily("pushgo_deliveries_expired",
                                      "Deliveries past their TTL before a provider took them",
                                      labels=["route"])
        for (route, outcome, reason), n in sorted(disp.outcomes.items()):
            if outcome == "failed":
                failed.add_metric([route, reason], n)
            elif outcome == "retried":
                retried.add_metric([route, reason], n)
            else:
                expired.add_metric([route], n)
        yield failed
        yield retried
        yield expired

    def _providers(self) -> Iterator[Metric]:
        senders = self.m.gateway.pump.senders
        inflight = GaugeMetricFamily("pushgo_provider_streams_in_flight",
                                     "HTTP/2 streams waiting for a provider response",
                                     labels=["provider"])
        conns = GaugeMetricFamily("pushgo_provider_connections",
                                  "Open HTTP/2 connections to a provider", labels=["provider"])
        waiting = GaugeMetricFamily("pushgo_sender_queue",
                                    "Deliveries handed to a sender, not yet on a stream",
                                    labels=["provider"])
        connects = CounterMetricFamily("pushgo_provider_connects",
                                       "Provider connections opened", labels=["provider"])
        connect_failures = CounterMetricFamily("pushgo_provider_connect_failures",
                                               "Provider connections that failed to open",
                                               labels=["provider"])
        resent = CounterMetricFamily(
            "pushgo_provider_resends",
            "Streams sent again after REFUSED_STREAM, GOAWAY or a lost connection",
            labels=["provider"])
        latency = HistogramMetricFamily(
            "pushgo_send_latency_seconds",
            "Provider send latency: request written to response read", labels=["provider"])
        for name, sender in sorted(senders.items()):
            inflight.add_metric([name], sender.inflight)
            conns.add_metric([name], sender.pool.open_count)
            waiting.add_metric([name], sender.jobs_in.statistics().current_buffer_used
                               + len(sender._retry))
            connects.add_metric([name], sender.pool.connects)
            connect_failures.add_metric([name], sender.pool.connect_failures)
            resent.add_metric([name], sender.resent)
            latency.add_metric([name], list(_buckets(sender.latency)),
                               sum_value=sender.latency.sum)
        yield from (inflight, conns, waiting, connects, connect_failures, resent, latency)

    def _breakers(self) -> Iterator[Metric]:
        pump = self.m.gateway.pump
        state = GaugeMetricFamily(
            "pushgo_provider_breaker_state",
            "This process's circuit breaker per provider: 0 closed, 1 open, 2 half-open",
            labels=["provider"])
        opened = CounterMetricFamily("pushgo_provider_breaker_opened",
                                     "Times a provider's circuit breaker opened",
                                     labels=["provider"])
        last = GaugeMetricFamily(
            "pushgo_provider_last_error_info",
            "1 for the last transient failure of a provider whose breaker is not closed",
            labels=["provider", "reason"])
        unresponsive = CounterMetricFamily(
            "pushgo_provider_connections_unresponsive",
            "Provider connections closed because the peer stopped answering",
            labels=["provider"])
        for name, breaker in sorted(pump.breakers.items()):
            state.add_metric([name], int(breaker.state))
            opened.add_metric([name], breaker.opened)
            if breaker.holding and breaker.last_error:
                last.add_metric([name, breaker.last_error.partition(":")[0][:64]], 1)
        for name, sender in sorted(pump.senders.items()):
            unresponsive.add_metric([name], sender.pool.unresponsive)
        # WNS and Web Push: a breaker per push service origin, shown while it holds back.
        origins = GaugeMetricFamily(
            "pushgo_push_service_breaker_state",
            "This process's circuit breaker per push service origin (WNS, Web Push) while "
            "not closed: 1 open, 2 half-open", labels=["provider", "origin"])
        for (route, origin), breaker in sorted(pump.origin_breakers.items()):
            if breaker.holding:
                origins.add_metric([route, origin], int(breaker.state))
        yield from (state, opened, last, unresponsive, origins)

    def _process(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("pushgo_worker_info",
                                 "One per gateway process that answered this scrape",
                                 labels=["worker", "pid", "version"])
        info.add_metric([str(self.m.worker_index), str(os.getpid()), __version__], 1)
        yield info
        sessions = self.m.gateway.links.sessions_by_transport()
        # The hub wakes warp-link sessions too: the SSE streams are the rest.
        yield GaugeMetricFamily("pushgo_private_streams",
                                "Devices connected to /private/stream",
                                value=self.m.gateway.hub.connected - sum(sessions.values()))
        links = GaugeMetricFamily("pushgo_private_sessions",
                                  "Live warp-link sessions (PushGo apps in private mode)",
                                  labels=["transport"])
        for transport in ("quic", "tcp", "wss"):
            links.add_metric([transport], sessions.get(transport, 0))
        yield links

        http = CounterMetricFamily("pushgo_http_requests", "HTTP requests answered",
                                   labels=["method", "route", "status"])
        for (method, route, status), n in sorted(self.m.http.items()):
            http.add_metric([method, route, status], n)
        yield http


def _buckets(h: _Histogram) -> Iterator[tuple[str, float]]:
    total = 0
    for bound, n in zip((*h.BOUNDS, float("inf")), h.counts, strict=True):
        total += n
        yield ("+Inf" if bound == float("inf") else repr(bound)), total


def merge(texts: list[bytes]) -> bytes:
    """Sum several workers' expositions into one: every series with the same name and labels
    is added up, except the shared-outbox gauges (the same number seen by each: the max)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text.decode()):
            kept = families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type,
                                                        fam.unit))
            series = values.setdefault(kept.name, {})
            for sample in fam.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if kept.name in SHARED_GAUGES:
                    series[key] = max(series.get(key, sample.value), sample.value)
                else:
                    series[key] = series.get(key, 0.0) + sample.value
    for name, fam in families.items():
        for (sample_name, labels), value in values[name].items():
            fam.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families
