"""``fairness``: one sender's critical message behind another sender's bulk backlog. Two API
keys (rows written into the gateway's database before it starts, weight 1 each); key A sends
a bulk of N direct APNs deliveries (1,000,000; 20,000 with ``--quick``; ``--bulk-items``) in
one ``POST /messages/bulk`` body, and as soon as that is accepted key B sends one direct
message. ``pushgo serve`` on SQLite, pinned to one CPU, against the counting mock APNs
(``pushgo.testing.counting_apns``, in this process on the other CPU). Reported: B's latency
(its request sent → the mock has its notification; target within 1 s), how many of A's were
delivered before it, and A's delivery throughput (its first to its last notification at the
mock).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from benchmarks.harness import Benchmark, Check, Column, Need, Options, Report, register
from benchmarks.servers import ServerProcess

B_TARGET_S = 1.0
PER_ITEM = 1000  # tokens one bulk item may carry
NEEDS: tuple[Need, ...] = ()  # no chart: one row
COLUMNS = [
    Column("label", "run"),
    Column("bulk", "A's bulk", "{:,}"),
    Column("accept_s", "A accepted in s", "{:,.2f}"),
    Column("b_latency_ms", "B's latency ms", "{:,.0f}"),
    Column("a_before_b", "A's before B's", "{:,}"),
    Column("a_rate", "A delivered /s"),
    Column("a_wall_s", "A's drain s", "{:,.1f}"),
    Column("server_cpu_pct", "server CPU %", "{:.0f}%"),
]


class _Mock:
    """The counting mock APNs on a thread of its own, noting when B's token arrives."""

    def __init__(self, workdir: Path, watch: str) -> None:
        from pushgo.testing.counting_apns import DEVICE_PATH, CountingAPNs
        from pushgo.testing.mock_apns import APNsKey

        self.mock = CountingAPNs()
        self.key = APNsKey.generate()
        self.key_file = self.key.write(workdir / f"AuthKey_{self.key.key_id}.p8")
        self.ca_file = self.mock.tls.write_ca_file(workdir / "ca.pem")
        self.watch = DEVICE_PATH + watch.encode()
        self.watch_at: float | None = None
        self.watch_requests = 0  # requests answered before it
        self.first_at: float | None = None
        self.last_at = 0.0
        count = self.mock._count

        def counted(path: bytes) -> None:
            now = time.perf_counter()
            if path == self.watch:
                self.watch_at, self.watch_requests = now, self.mock.requests
            elif self.first_at is None:
                self.first_at = now
            self.last_at = now
            count(path)

        self.mock._count = counted  # type: ignore[method-assign]
        self._ready = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            async with self.mock.serving():
                self._ready.set()
                await anyio.to_thread.run_sync(self._halt.wait)

        anyio.run(serve, backend="trio")

    def __enter__(self) -> _Mock:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the counting mock APNs did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._halt.set()
        self._thread.join(5)

    @property
    def requests(self) -> int:
        return self.mock.requests

    def env(self) -> dict[str, str]:
        return {"PUSHGO_APNS_ENDPOINT": self.mock.origin, "PUSHGO_PROVIDER_CA_FILE": str(self.ca_file),
                "PUSHGO_APNS_KEY_FILE": str(self.key_file), "PUSHGO_APNS_KEY_ID": self.key.key_id,
                "PUSHGO_APNS_TEAM_ID": self.key.team_id, "PUSHGO_APNS_TOPIC": "com.example.app",
                "PUSHGO_PROVIDER_CONNECTIONS": "1"}


def _keys(db_url: str) -> tuple[str, str]:
    """Two API keys (A, B) written into the gateway's database before it starts."""
    from pushgo.service.principal import key_hash, new_key
    from pushgo.store import Store
    from pushgo.store.keys import insert_key

    store = Store(db_url)
    try:
        store.migrate()
        keys = []
        with store.engine.begin() as conn:
            for name in ("bulk-a", "alerts-b"):
                key_id, key = new_key()
                insert_key(conn, key_id=key_id, name=name, secret_hash=key_hash(key),
                           scopes=["send", "direct"], weight=1,
                           created_at=int(time.time() * 1000), created_by="benchmark")
                keys.append(key)
        return keys[0], keys[1]
    finally:
        store.dispose()


def _token() -> str:
    return secrets.token_hex(32)


def _bulk_body(n: int) -> Iterator[bytes]:
    for start in range(0, n, PER_ITEM):
        tokens = [_token() for _ in range(min(PER_ITEM, n - start))]
        yield json.dumps({"route": "apns", "tokens": tokens, "title": "Newsletter",
                          "body": "this week's news", "severity": "normal"}).encode() + b"\n"


def _post_bulk(url: str, key: str, body: Iterator[bytes] | bytes, items: int) -> None:
    with httpx.Client(timeout=3600) as client, client.stream(
            "POST", url + "/messages/bulk", content=body,
            headers={"content-type": "application/x-ndjson", "authorization": f"Bearer {key}"},
    ) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"/messages/bulk answered {resp.status_code}: {resp.read()[:300]!r}")
        lines = [json.loads(line) for line in resp.iter_lines() if line.strip()]
    bad = [doc for doc in lines if not doc.get("ok")]
    if len(lines) != items or bad:
        raise RuntimeError(f"{len(lines)} result lines for {items} items; first error: "
                           f"{bad[0] if bad else None}")


def _round(srv: ServerProcess, mock: _Mock, keys: tuple[str, str], n: int, b_token: str,
           opts: Options) -> dict[str, Any]:
    key_a, key_b = keys
    c0 = srv.cpu_seconds()
    t0 = time.perf_counter()
    _post_bulk(srv.url, key_a, _bulk_body(n), -(-n // PER_ITEM))
    accepted = time.perf_counter()
    opts.log(f"fairness: A's {n:,} accepted in {accepted - t0:.1f} s; "
             f"{mock.requests:,} delivered so far")
    b_sent = time.perf_counter()
    _post_bulk(srv.url, key_b, json.dumps({
        "route": "apns", "tokens": [b_token], "title": "Disk full", "body": "db-1 /var at 100%",
        "severity": "critical"}).encode() + b"\n", 1)
    deadline = time.perf_counter() + max(120.0, n / 500)
    while mock.requests < n + 1:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the mock had {mock.requests:,} of {n + 1:,}")
        time.sleep(0.01)
    if mock.watch_at is None:
        raise RuntimeError("B's notification never reached the mock")
    first = mock.first_at or t0
    wall = mock.last_at - first
    return {"bulk": n, "accept_s": accepted - t0, "b_latency_ms": (mock.watch_at - b_sent) * 1000,
            "a_before_b": mock.watch_requests, "a_rate": n / wall if wall > 0 else 0.0,
            "a_wall_s": wall, "server_cpu_pct": 100 * (srv.cpu_seconds() - c0)
            / max(1e-9, mock.last_at - t0)}


def run(opts: Options) -> Report:
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    n = opts.bulk_items or (20_000 if opts.quick else 1_000_000)
    backend = opts.backends[0]
    report = Report(
        name="fairness",
        description="one sender's message behind another sender's bulk backlog",
        params={"bulk": n, "db": "SQLite", "backend": backend, "pinned": pin,
                "mock": "pushgo.testing.counting_apns (in the benchmark process)",
                "weights": "1:1"},
        columns=COLUMNS,
    )
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-fairness-"))
    b_token = _token()
    row: dict[str, Any] = {"label": f"pushgo serve {backend}, SQLite", "impl": "pushgo"}
    try:
        if pin:
            os.sched_setaffinity(0, {1})
        db_url = f"sqlite:///{workdir}/pushgo.db"
        keys = _keys(db_url)
        with _Mock(workdir, b_token) as mock:
            srv = ServerProcess.pushgo(row["label"], {
                "PUSHGO_DB_URL": db_url, "PUSHGO_ASYNC_BACKEND": backend,
                "PUSHGO_TOKEN": secrets.token_urlsafe(24), **mock.env(),
            }, log=workdir / "serve.log", cpu=0 if pin else None)
            try:
                srv.start()
                row.update(_round(srv, mock, keys, n, b_token, opts))
            except Exception as exc:
                row["failed"] = f"{exc} {srv.log_tail(300)}"
                report.notes.append(f"{row['label']} failed: {row['failed']}")
            finally:
                srv.stop()
    finally:
        if pin:
            os.sched_setaffinity(0, set(range(cores)))
        shutil.rmtree(workdir, ignore_errors=True)
    if "b_latency_ms" in row:
        report.checks.append(Check(
            f"B's message within {B_TARGET_S:.0f} s behind A's bulk of {n:,}",
            row["b_latency_ms"] <= B_TARGET_S * 1000,
            f"{row['b_latency_ms']:,.0f} ms; {row['a_before_b']:,} of A's went first"))
        report.checks.append(Check(
            "A's throughput (no target figure: reported)", row["a_rate"] > 0,
            f"{row['a_rate']:,.0f}/s"))
    report.rows = [row]
    return report


register(Benchmark(
    name="fairness",
    description="a sender's message behind another's bulk: its latency and the bulk's rate",
    needs=NEEDS,
    run=run,
))
