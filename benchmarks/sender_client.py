"""One APNs client under test, run in its own process so its CPU time and peak RSS are its own:

    python -m benchmarks.sender_client --impl pushgo --backend trio --connections 1 \\
        --port PORT --ca CA.pem --key KEY.p8 --key-id K --team-id T --n 100000 --window 1000

It connects, prints ``{"ready": true}``, then obeys one command per stdin line — ``warmup``,
``round`` or ``quit`` — answering each round with one JSON line (wall time, notifications/s,
p50/p99 latency, CPU seconds, the mock's CPU seconds, errors). The driver interleaves the rounds
of every client so the machine's noise falls on all of them alike.

- pushgo: ``ApnsSender`` fed through ``jobs_in.send_nowait`` with ``window`` jobs outstanding
  (a new job per result); latency is Job submission → Result taken from the ResultBuffer.
- aioapns 4.x: its documented API (``APNs(key=…, …).send_notification(NotificationRequest)``)
  from ``window`` concurrent tasks, pointed at the mock by overriding
  ``APNsProductionClientProtocol.APNS_SERVER/APNS_PORT`` and an ``ssl_context`` that trusts the
  mock's CA with ALPN h2; latency is per send. Its 10 s idle close (``INACTIVITY_TIME``) is
  raised to an hour so the gaps between interleaved rounds do not reconnect it.

Both send the same request: ``:path /3/device/<64 hex>``, bearer JWT, apns-topic,
apns-push-type alert, apns-id, apns-collapse-id, apns-priority 10, apns-expiration, and the same
JSON payload (``PAYLOAD_BYTES`` as pushgo renders it; aioapns re-serialises the dict with its own
separators).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import resource
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.nginx_mock import proc_cpu_seconds

TOPIC = "com.example.bench"
PAYLOAD_BYTES = 200
TOKENS = 1024  # distinct device tokens, cycled


def device_tokens() -> list[str]:
    return [f"{i:064x}" for i in range(TOKENS)]


def payload_template() -> Any:
    """pushgo's payload template for a realistic alert, padded so a rendered payload is exactly
    ``PAYLOAD_BYTES`` long (the h2load row posts the same bytes)."""
    from pushgo.protocol import apns

    def build(body: str) -> Any:
        return apns.build_payload({}, title="Disk almost full", body=body, severity="low",
                               thread_id="ops", wakeup_data={})

    tpl = build("")
    pad = PAYLOAD_BYTES - len(tpl.render("0" * 32))
    if pad < 0:
        raise SystemExit(f"payload is {PAYLOAD_BYTES - pad} bytes before padding")
    return build("x" * pad)


def request_headers(authority: str, jwt: str, token: str, delivery_id: str) -> list[tuple[str, str]]:
    """The request pushgo's HeaderBuilder sends (for h2load, which posts the same)."""
    from pushgo.protocol.apns import apns_id_of

    return [
        (":method", "POST"), (":scheme", "https"), (":authority", authority),
        (":path", f"/3/device/{token}"), ("authorization", f"bearer {jwt}"),
        ("apns-topic", TOPIC), ("apns-push-type", "alert"), ("apns-id", apns_id_of(delivery_id)),
        ("apns-collapse-id", delivery_id), ("apns-priority", "10"),
        ("apns-expiration", str(int(time.time()) + 86_400)),
    ]


FCM_PROJECT = "bench-project"
FCM_ACCESS_TOKEN = "ya29.bench-access-token"  # noqa: S105 - a mock's fake token


class StaticFcmToken:
    """An FCM access token that never expires (the token endpoint is not what is measured)."""

    project_id = FCM_PROJECT

    async def token(self) -> str:
        return FCM_ACCESS_TOKEN

    def invalidate(self, token: str) -> None:
        pass


def fcm_templates() -> Any:
    """pushgo's FCM data message for the same alert as the APNs rows (full, wake-up)."""
    from pushgo.protocol import fcm

    data = {"title": "Disk almost full", "body": "x" * 60, "severity": "low", "channel_id": "ops"}
    return (fcm.MessageTemplate(fcm.data_json(data), "HIGH", False),
            fcm.MessageTemplate(fcm.data_json({"channel_id": "ops"}), "HIGH", True))


class Meter:
    """Per-round figures: wall, CPU of this process, CPU of the mock's workers."""

    def __init__(self, mock_pids: list[int]) -> None:
        self.mock_pids = mock_pids

    def mock_cpu(self) -> float:
        return sum(proc_cpu_seconds(p) for p in self.mock_pids)

    def start(self) -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), self.mock_cpu()

    def finish(self, start: tuple[float, float, float], n: int, latencies: array[float],
               errors: int) -> dict[str, Any]:
        t0, c0, m0 = start
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        mock = self.mock_cpu() - m0
        lat = sorted(latencies)

        def pct(q: float) -> float:
            return lat[max(0, min(len(lat) - 1, round(q / 100 * len(lat) + 0.5) - 1))] if lat else 0.0

        return {"n": n, "wall_s": wall, "rate": n / wall, "p50_ms": pct(50) * 1000,
                "p99_ms": pct(99) * 1000, "max_ms": (lat[-1] if lat else 0.0) * 1000,
                "mean_ms": sum(lat) / len(lat) * 1000 if lat else 0.0, "cpu_s": cpu,
                "mock_cpu_s": mock, "errors": errors,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


class Commands:
    """Command lines from stdin, read when the fd is readable: no reader thread (it would show
    in CPU time and profiles)."""

    def __init__(self, wait_readable: Callable[[int], Awaitable[None]]) -> None:
        self.fd = sys.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.wait_readable = wait_readable

    async def next(self) -> str:
        while b"\n" not in self.buf:
            await self.wait_readable(self.fd)
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                return "quit"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode().strip()


def answer(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- pushgo


async def pushgo_main(args: argparse.Namespace) -> None:
    import anyio

    from pushgo.push.connection import Origin
    from pushgo.push.sender import ApnsSender, Job, ResultBuffer
    from pushgo.settings import Settings

    # --baseline runs this client against older trees too: before pushgo.delivery and
    # pushgo.protocol.outcomes, these lived in pushgo.push and pushgo.protocol.apns.
    try:
        from pushgo.delivery.providers import provider_ssl_context
        from pushgo.protocol.outcomes import Delivered
        from pushgo.push.credentials import ApnsJwtSource
    except ImportError:
        from pushgo.push.providers import provider_ssl_context
        from pushgo.push.tokens import ApnsJwtSource

        from pushgo.protocol.apns import Accepted as Delivered

    ctx = provider_ssl_context(Settings(provider_ca_file=args.ca))
    results = ResultBuffer()
    origin = Origin.parse(f"https://127.0.0.1:{args.port}")
    sender: Any
    template: Any
    if args.impl == "pushgo-fcm":
        from pushgo.push.sender import FcmSender

        sender = FcmSender(origin, ctx, results, StaticFcmToken(), connections=args.connections)
        template = fcm_templates()
    else:
        jwt = ApnsJwtSource(args.key_pem, args.key_id, args.team_id)
        sender = ApnsSender(origin, ctx, results, jwt, TOPIC, connections=args.connections)
        template = payload_template()
    if args.window > 2048:
        raise SystemExit("--window above the sender's queue size (2048) would block the feeder")
    tokens = device_tokens()
    mask = TOKENS - 1
    meter = Meter(args.mock_pid)
    state = {"seq": 0}
    send = sender.jobs_in.send_nowait
    perf = time.perf_counter

    async def one_round(n: int, profile: cProfile.Profile | None) -> dict[str, Any]:
        seq0 = state["seq"]
        end = seq0 + n
        submitted = array("d", bytes(8 * n))
        latencies: array[float] = array("d")
        expires = time.time_ns() // 1_000_000 + 86_400_000
        seq = seq0

        def submit(k: int) -> None:
            nonlocal seq
            stop = min(end, seq + k)
            while seq < stop:
                submitted[seq - seq0] = perf()
                send(Job(seq, f"{seq:032x}", "bench", tokens[seq & mask], template, expires, False))
                seq += 1

        gc.collect()
        if profile is not None:
            profile.enable()
        start = meter.start()
        submit(args.window)
        done = errors = 0
        while done < n:
            batch = await results.take()
            now = perf()
            for r in batch:
                latencies.append(now - submitted[r.job.seq - seq0])
                if type(r.outcome) is not Delivered:
                    errors += 1
            done += len(batch)
            submit(len(batch))
        out = meter.finish(start, n, latencies, errors)
        if profile is not None:
            profile.disable()
        state["seq"] = end
        return out

    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        commands = Commands(anyio.wait_readable)
        answer({"ready": True, "pid": os.getpid()})
        profile = cProfile.Profile() if args.profile_out else None
        while True:
            cmd = await commands.next()
            if cmd == "quit" or not cmd:
                break
            if cmd == "warmup":
                answer(await one_round(args.warmup, None))
            elif cmd == "round":
                answer(await one_round(args.n, profile))
            else:
                answer({"error": f"unknown command {cmd!r}"})
        if profile is not None:
            profile.dump_stats(args.profile_out)
        tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- aioapns


async def asyncio_readable(fd: int) -> None:
    """Wait until ``fd`` is readable on the running asyncio loop (the peers' command pipe)."""
    import asyncio

    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def aioapns_main(args: argparse.Namespace) -> None:
    import asyncio
    import ssl

    import aioapns.connection
    from aioapns import APNs, NotificationRequest, PushType

    from pushgo.protocol.apns import apns_id_of

    proto = aioapns.connection.APNsProductionClientProtocol
    proto.APNS_SERVER = "127.0.0.1"  # type: ignore[misc]
    proto.APNS_PORT = args.port  # type: ignore[misc]
    # aioapns closes a connection idle for 10 s; the driver interleaves rounds, so each client
    # idles while the others run. Reconnecting under 1000 waiting sends starves some of them for
    # seconds (p99 ~8 s): measure its steady state instead, as pushgo's (idle timeout 600 s).
    proto.INACTIVITY_TIME = 3600  # type: ignore[misc]
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["h2"])
    client = APNs(key=args.key_pem.decode(), key_id=args.key_id, team_id=args.team_id,
                  topic=TOPIC, max_connections=args.connections, ssl_context=ctx)
    base = json.loads(payload_template().render("0" * 32))
    base.pop("delivery_id")
    tokens = device_tokens()
    mask = TOKENS - 1
    meter = Meter(args.mock_pid)
    state = {"seq": 0}
    perf = time.perf_counter

    async def one_round(n: int, profile: cProfile.Profile | None) -> dict[str, Any]:
        seq0 = state["seq"]
        end = seq0 + n
        latencies: array[float] = array("d")
        counters = {"next": seq0, "errors": 0}

        async def worker() -> None:
            while counters["next"] < end:
                seq = counters["next"]
                counters["next"] = seq + 1
                did = f"{seq:032x}"
                req = NotificationRequest(device_token=tokens[seq & mask],
                                          message={"delivery_id": did, **base},
                                          notification_id=apns_id_of(did), time_to_live=86_400,
                                          priority=10, collapse_key=did, push_type=PushType.ALERT)
                t = perf()
                try:
                    res = await client.send_notification(req)
                    ok = res.is_successful
                except Exception:
                    ok = False
                latencies.append(perf() - t)
                if not ok:
                    counters["errors"] += 1

        gc.collect()
        if profile is not None:
            profile.enable()
        start = meter.start()
        await asyncio.gather(*(worker() for _ in range(min(args.window, n))))
        out = meter.finish(start, n, latencies, counters["errors"])
        if profile is not None:
            profile.disable()
        state["seq"] = end
        return out

    commands = Commands(asyncio_readable)
    answer({"ready": True, "pid": os.getpid()})
    profile = cProfile.Profile() if args.profile_out else None
    while True:
        cmd = await commands.next()
        if cmd == "quit" or not cmd:
            break
        if cmd == "warmup":
            answer(await one_round(args.warmup, None))
        elif cmd == "round":
            answer(await one_round(args.n, profile))
        else:
            answer({"error": f"unknown command {cmd!r}"})
    if profile is not None:
        profile.dump_stats(args.profile_out)
    client.pool.close()


# --------------------------------------------------------------------------- httpx (FCM)


async def httpx_fcm_main(args: argparse.Namespace) -> None:
    """A plain httpx HTTP/2 client posting FCM v1 messages — what firebase-admin does."""
    import asyncio
    import ssl

    import httpx

    ctx = ssl.create_default_context(cafile=args.ca)
    url = f"https://127.0.0.1:{args.port}/v1/projects/{FCM_PROJECT}/messages:send"
    headers = {"authorization": f"Bearer {FCM_ACCESS_TOKEN}", "content-type": "application/json"}
    full, _wake = fcm_templates()
    tokens = device_tokens()
    mask = TOKENS - 1
    meter = Meter(args.mock_pid)
    state = {"seq": 0}
    perf = time.perf_counter
    client = httpx.AsyncClient(http2=True, verify=ctx, timeout=30,
                               limits=httpx.Limits(max_connections=args.connections,
                                                   max_keepalive_connections=args.connections))
    await client.post(url, content=full.render(tokens[0], "0" * 32, 86_400), headers=headers)

    async def one_round(n: int, profile: cProfile.Profile | None) -> dict[str, Any]:
        seq0 = state["seq"]
        end = seq0 + n
        latencies: array[float] = array("d")
        counters = {"next": seq0, "errors": 0}

        async def worker() -> None:
            while counters["next"] < end:
                seq = counters["next"]
                counters["next"] = seq + 1
                body = full.render(tokens[seq & mask], f"{seq:032x}", 86_400)
                t = perf()
                try:
                    resp = await client.post(url, content=body, headers=headers)
                    ok = resp.status_code == 200 and bool(resp.json().get("name"))
                except Exception:
                    ok = False
                latencies.append(perf() - t)
                if not ok:
                    counters["errors"] += 1

        gc.collect()
        if profile is not None:
            profile.enable()
        start = meter.start()
        await asyncio.gather(*(worker() for _ in range(min(args.window, n))))
        out = meter.finish(start, n, latencies, counters["errors"])
        if profile is not None:
            profile.disable()
        state["seq"] = end
        return out

    commands = Commands(asyncio_readable)
    answer({"ready": True, "pid": os.getpid()})
    while True:
        cmd = await commands.next()
        if cmd == "quit" or not cmd:
            break
        if cmd == "warmup":
            answer(await one_round(args.warmup, None))
        elif cmd == "round":
            answer(await one_round(args.n, None))
        else:
            answer({"error": f"unknown command {cmd!r}"})
    await client.aclose()


# --------------------------------------------------------------------------- entry


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sender_client")
    p.add_argument("--impl", choices=("pushgo", "aioapns", "pushgo-fcm", "httpx-fcm"),
                   required=True)
    p.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--key", required=True, help="the APNs .p8 key (PEM; unused for FCM)")
    p.add_argument("--key-id", default="BENCHKEY01")
    p.add_argument("--team-id", default="BENCHTEAM1")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--warmup", type=int, default=20_000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    p.add_argument("--mock-pid", type=int, action="append", default=[],
                   help="a mock process whose CPU time each round reports")
    p.add_argument("--profile-out", default=None, help="cProfile the measured rounds into this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    args.key_pem = Path(args.key).read_bytes()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    if args.impl in ("aioapns", "httpx-fcm"):
        import asyncio

        asyncio.run(aioapns_main(args) if args.impl == "aioapns" else httpx_fcm_main(args))
    else:
        import anyio

        anyio.run(pushgo_main, args, backend=args.backend)


if __name__ == "__main__":
    main()
