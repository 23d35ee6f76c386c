"""``sender``: pushgo's APNs sender alone (no database) against a native mock (nginx, HTTP/2,
TLS), side by side with aioapns (the Python peer) and h2load (the machine's native ceiling) in
the same run.

Rows: pushgo ``ApnsSender`` with 1 and 4 connections on each anyio backend, aioapns 4.x with one
connection, h2load with 1 connection × 100 streams. Every Python row is its own process (its CPU
time and peak RSS are its own), pinned to one CPU while the mock's single worker is pinned to the
other. All clients are started, warmed up, then their measured rounds are interleaved (round r of
every client before round r+1 of any, the order rotating) so drift in a shared machine falls on
all rows alike; each figure is the median over the rounds.
"""

from __future__ import annotations

import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    RESULTS,
    Benchmark,
    Check,
    Column,
    Need,
    Options,
    Report,
    baseline_tree,
    executable,
    median,
    percentile,
    register,
    start_pyspy,
    stop_pyspy,
)
from benchmarks.nginx_mock import NginxMock

SATURATED_PCT = 90.0  # mock worker CPU share of one core above which a row is mock-bound
H2LOAD_STREAMS = 100
AIOAPNS_SMALL_WINDOW = 100

NEEDS = (
    Need("apt", "nginx", "nginx"),
    Need("apt", "libnginx-mod-http-headers-more-filter", "/usr/lib/nginx/modules/"
         "ngx_http_headers_more_filter_module.so"),
    Need("apt", "nghttp2-client", "h2load"),
    Need("pip", "aioapns>=4,<5", "aioapns"),
    Need("pip", "trustme>=1.1", "trustme"),
    Need("pip", "matplotlib>=3.8", "matplotlib"),
)
PROFILE_NEEDS = (Need("pip", "py-spy", "bin:py-spy"),)

COLUMNS = [
    Column("label", "client"),
    Column("rate", "notifications/s"),
    Column("spread", "min–max /s", "{}"),
    Column("vs_aioapns", "× aioapns", "{:.2f}×"),
    Column("p50_ms", "p50 ms", "{:,.1f}"),
    Column("p99_ms", "p99 ms", "{:,.1f}"),
    Column("cpu_per_10k", "CPU s / 10k", "{:.3f}"),
    Column("rss_mb", "peak RSS MB", "{:,.1f}"),
    Column("mock_cpu_pct", "mock CPU %", "{:.0f}%"),
    Column("errors", "errors", "{:,}"),
]


@dataclass
class Client:
    """One row: a long-lived Python client process, or h2load (a process per round)."""

    label: str
    impl: str  # pushgo | aioapns | h2load
    backend: str
    connections: int
    window: int | None = None  # requests in flight (None: the run's --window)
    proc: subprocess.Popen[str] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    warmup: dict[str, Any] | None = None
    failed: str | None = None
    tree: Path | None = None  # run pushgo from this tree (--baseline) instead of the checkout
    scale: int = 1  # a slow peer measures n/scale per round (its rate needs no more)


def _client_cmd(c: Client, mock: NginxMock, key: Path, opts: Options, cpu: int | None,
                profile_out: Path | None = None, n: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.sender_client", "--impl", c.impl,
           "--backend", c.backend, "--connections", str(c.connections), "--port", str(mock.port),
           "--ca", str(mock.ca_file), "--key", str(key),
           "--n", str(n or max(500, opts.n // c.scale)),
           "--warmup", str(max(100, opts.warmup // c.scale)),
           "--window", str(c.window or opts.window)]
    for pid in mock.worker_pids:
        cmd += ["--mock-pid", str(pid)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if profile_out is not None:
        cmd += ["--profile-out", str(profile_out)]
    return cmd


def _spawn(cmd: list[str], tree: Path | None = None) -> subprocess.Popen[str]:
    """A client process; with ``tree`` (a --baseline checkout) its pushgo comes from there."""
    root = str(tree or Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Our own command line (sys.executable and fixed arguments).
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                            text=True, env=env, cwd=root, bufsize=1)
    return proc


def _ask(proc: subprocess.Popen[str], command: str | None) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    if command is not None:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"client exited ({proc.wait()}) before answering {command or 'ready'}")
    doc: dict[str, Any] = json.loads(line)
    if "error" in doc:
        raise RuntimeError(doc["error"])
    return doc


def _quit(proc: subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        assert proc.stdin is not None
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- h2load


@dataclass
class H2LoadSetup:
    body: Path
    headers: list[tuple[str, str]]
    url: str
    cpu: int | None
    workdir: Path


def _h2load_setup(mock: NginxMock, key: Path, workdir: Path, cpu: int | None) -> H2LoadSetup:
    from benchmarks.sender_client import device_tokens, payload_template, request_headers
    from pushgo.push.credentials import ApnsJwtSource

    jwt = ApnsJwtSource(key.read_bytes(), "BENCHKEY01", "BENCHTEAM1").current()
    did = f"{7:032x}"
    token = device_tokens()[7]
    body = workdir / "payload.json"
    body.write_bytes(payload_template().render(did))
    headers = [(k, v) for k, v in request_headers(f"127.0.0.1:{mock.port}", jwt, token, did)
               if not k.startswith(":")]
    return H2LoadSetup(body, headers, f"{mock.url}/3/device/{token}", cpu, workdir)


def _h2load_round(setup: H2LoadSetup, mock: NginxMock, n: int) -> dict[str, Any]:
    log = setup.workdir / "h2load.tsv"
    out = setup.workdir / "h2load.out"
    cmd = ["h2load", "-n", str(n), "-c", "1", "-m", str(H2LOAD_STREAMS), "-t", "1",
           "-d", str(setup.body), "--log-file", str(log)]
    for k, v in setup.headers:
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(setup.url)
    if setup.cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(setup.cpu), *cmd]
    m0 = mock.cpu_seconds()
    with out.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,  # noqa: S603
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    mock_cpu = mock.cpu_seconds() - m0
    text = out.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited {proc.returncode}: {text[-500:]}")
    m = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text)
    ok = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", text)
    if not m or not ok:
        raise RuntimeError(f"cannot read h2load's output: {text[-500:]}")
    wall = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    lat = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines()
                 if line.count("\t") >= 2)
    errors = n - int(ok.group(1))
    return {"n": n, "wall_s": wall, "rate": float(m.group(3)), "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99), "cpu_s": usage.ru_utime + usage.ru_stime,
            "mock_cpu_s": mock_cpu, "errors": errors, "maxrss_kb": usage.ru_maxrss}


def _tool_versions() -> dict[str, str]:
    out = {}
    for name, cmd in (("nginx", ["-v"]), ("h2load", ["--version"]), ("py-spy", ["--version"])):
        exe = executable(name)
        if exe is None:
            continue
        try:
            done = subprocess.run([exe, *cmd], capture_output=True, text=True,  # noqa: S603
                                  timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (done.stdout + done.stderr).strip().splitlines()
        out[name] = text[0] if text else ""
    return out


# --------------------------------------------------------------------------- profiling


def _cprofile_summary(path: Path, top: int = 30) -> dict[str, Any]:
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        rows.append({"function": f"{func} ({_short(file)}:{line})", "ncalls": ncalls,
                     "tottime_s": tottime, "cumtime_s": cumtime, "self_pct": 100 * tottime / total})
    rows.sort(key=lambda r: -r["tottime_s"])
    by_cum = sorted((r for r in rows if any(m in "(" + r["function"] for m in _STUDIED)),
                    key=lambda r: -r["cumtime_s"])
    return {"total_s": total, "top_self": rows[:top], "top_cumulative": by_cum[:top]}


_PREFIX = re.compile(r"^.*(?:site-packages/|/lib/python3\.\d+/)")
_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def _short(file: str) -> str:
    """A source path without its installation prefix: ``hpack/hpack.py``, ``ssl.py``."""
    return _PREFIX.sub("", file.replace(_ROOT, ""))


_FRAME_LINE = re.compile(r":\d+\)$")


def pyspy_summary(path: Path, top: int = 30) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_FRAME_LINE.sub(")", f) for f in stack.split(";")]
        frames = [re.sub(r"\(([^)]*)\)", lambda m: "(" + _short(m.group(1)) + ")", f) for f in frames]
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for f in set(frames):
            incl_counts[f] = incl_counts.get(f, 0) + count
    total = total or 1

    def table(counts: dict[str, int], keep: Any = lambda f: True) -> list[dict[str, Any]]:
        items = sorted(((f, c) for f, c in counts.items() if keep(f)), key=lambda kv: -kv[1])
        return [{"function": f, "samples": c, "pct": 100 * c / total} for f, c in items[:top]]

    return {"samples": total, "top_self": table(self_counts),
            # Inclusive time of the code under study (the event loop's frames enclose everything).
            "top_inclusive": table(incl_counts, lambda f: any(m in f for m in _STUDIED))}


_STUDIED = ("(pushgo/", "(hpack/", "(anyio/streams/", "(ssl.py", "one_round")


def _profile(mock: NginxMock, key: Path, opts: Options, cpu: int | None,
             workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = opts.n
    for backend in opts.backends:
        c = Client(f"pushgo {backend} ×1", "pushgo", backend, 1)
        # cProfile: deterministic, exact call counts, but inflates small-function costs.
        pstats_file = workdir / f"pushgo-{backend}.pstats"
        opts.log(f"profiling {c.label} with cProfile ({n:,})")
        proc = _spawn(_client_cmd(c, mock, key, opts, cpu, profile_out=pstats_file, n=n))
        try:
            _ask(proc, None)
            _ask(proc, "warmup")
            under = _ask(proc, "round")
        finally:
            _quit(proc)
        entry: dict[str, Any] = {"cprofile_rate": under["rate"], "cprofile": _cprofile_summary(pstats_file)}
        # py-spy: sampled, low overhead: the real shares.
        pyspy = executable("py-spy")
        if pyspy:
            raw = workdir / f"pushgo-{backend}.pyspy.txt"
            opts.log(f"profiling {c.label} with py-spy ({n:,})")
            proc = _spawn(_client_cmd(c, mock, key, opts, cpu, n=n))
            spy = None
            try:
                ready = _ask(proc, None)
                _ask(proc, "warmup")
                spy = start_pyspy(pyspy, ready["pid"], raw)
                sampled = _ask(proc, "round")
            finally:
                stop_pyspy(spy)
                _quit(proc)
            if raw.exists():
                entry["pyspy_rate"] = sampled["rate"]
                entry["pyspy"] = pyspy_summary(raw)
        out[f"pushgo-{backend}-1conn"] = entry
        # Keep the raw profiles beside the results (snakeviz/pstats, flamegraph.pl).
        RESULTS.mkdir(parents=True, exist_ok=True)
        for src, suffix in ((pstats_file, "pstats"), (workdir / f"pushgo-{backend}.pyspy.txt",
                                                       "pyspy.txt")):
            if src.exists():
                dest = RESULTS / f"sender-{opts.stamp}-pushgo-{backend}.{suffix}"
                shutil.copyfile(src, dest)
                entry.setdefault("files", []).append(str(dest.relative_to(RESULTS.parent.parent)))
    return out


def _profile_markdown(profiles: dict[str, Any], top: int = 12) -> list[str]:
    lines: list[str] = []
    for name, entry in profiles.items():
        if "pyspy" in entry:
            p = entry["pyspy"]
            lines.append(f"#### {name}: py-spy, {p['samples']:,} samples at "
                         f"{entry['pyspy_rate']:,.0f}/s — self time")
            lines += ["", "| function | self % |", "|---|---:|"]
            lines += [f"| `{r['function']}` | {r['pct']:.1f} |" for r in p["top_self"][:top]]
            lines += ["", "| function (pushgo, hpack, TLS) | inclusive % (a floor: non-blocking "
                      "samples can miss outer frames) |", "|---|---:|"]
            lines += [f"| `{r['function']}` | {r['pct']:.1f} |" for r in p["top_inclusive"][:2 * top]]
            lines.append("")
        c = entry["cprofile"]
        lines.append(f"#### {name}: cProfile ({entry['cprofile_rate']:,.0f}/s under the profiler) "
                     f"— top self time")
        lines += ["", "| function | calls | self s | self % | cumulative s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| `{r['function']}` | {r['ncalls']:,} | {r['tottime_s']:.3f} | {r['self_pct']:.1f} | "
                  f"{r['cumtime_s']:.3f} |" for r in c["top_self"][:top]]
        lines += ["", "| function (pushgo, hpack, TLS) | calls | cumulative s | cumulative % |",
                  "|---|---:|---:|---:|"]
        lines += [f"| `{r['function']}` | {r['ncalls']:,} | {r['cumtime_s']:.3f} | "
                  f"{100 * r['cumtime_s'] / c['total_s']:.1f} |" for r in c["top_cumulative"][:2 * top]]
        lines.append("")
    return lines


# --------------------------------------------------------------------------- the run


def measure(clients: list[Client], mock: NginxMock, key: Path, setup: H2LoadSetup,
            opts: Options, client_cpu: int | None) -> None:
    """Start every client, warm each up, then run the measured rounds interleaved (round r of
    every client before round r+1 of any, the order rotating); rounds land in ``c.rounds``."""
    try:
        for c in clients:
            if c.impl == "h2load":
                continue
            c.proc = _spawn(_client_cmd(c, mock, key, opts, client_cpu), c.tree)
            _ask(c.proc, None)
        for c in clients:
            warm = opts.warmup if c.impl == "h2load" else max(100, opts.warmup // c.scale)
            opts.log(f"warm-up {c.label} ({warm:,})")
            try:
                if c.impl == "h2load":
                    c.warmup = _h2load_round(setup, mock, opts.warmup)
                else:
                    assert c.proc is not None
                    c.warmup = _ask(c.proc, "warmup")
            except Exception as exc:
                c.failed = str(exc)
                opts.log(f"  {c.label} failed: {exc}")
        for r in range(opts.rounds):
            order = clients[r % len(clients):] + clients[:r % len(clients)]
            for c in order:
                if c.failed:
                    continue
                try:
                    if c.impl == "h2load":
                        res = _h2load_round(setup, mock, opts.n)
                    else:
                        assert c.proc is not None
                        res = _ask(c.proc, "round")
                except Exception as exc:
                    c.failed = str(exc)
                    opts.log(f"  {c.label} failed: {exc}")
                    continue
                c.rounds.append(res)
                opts.log(f"round {r + 1}/{opts.rounds} {c.label}: {res['rate']:,.0f}/s "
                         f"p99 {res['p99_ms']:.1f} ms")
    finally:
        for c in clients:
            _quit(c.proc)


def _row(c: Client, aioapns_rate: float | None, *, peer: str = "aioapns") -> dict[str, Any]:
    rs = c.rounds
    if not rs:
        return {"label": c.label, "impl": c.impl, "backend": c.backend,
                "connections": c.connections, "failed": c.failed or "no rounds"}
    rate = median([r["rate"] for r in rs])
    row: dict[str, Any] = {
        "label": c.label, "impl": c.impl, "backend": c.backend, "connections": c.connections,
        "rate": rate,
        "spread": f"{min(r['rate'] for r in rs):,.0f}–{max(r['rate'] for r in rs):,.0f}",
        "p50_ms": median([r["p50_ms"] for r in rs]),
        "p99_ms": median([r["p99_ms"] for r in rs]),
        "cpu_per_10k": median([r["cpu_s"] / r["n"] * 10_000 for r in rs]),
        "rss_mb": max(r["maxrss_kb"] for r in rs) / 1024,
        "mock_cpu_pct": median([100 * r["mock_cpu_s"] / r["wall_s"] for r in rs]),
        "errors": sum(r["errors"] for r in rs),
        "rounds": rs,
        "warmup": c.warmup,
    }
    row["mock_saturated"] = row["mock_cpu_pct"] >= SATURATED_PCT
    if c.tree is not None:
        row["baseline"] = True
    if aioapns_rate and c.impl != peer:
        row[f"vs_{peer}"] = rate / aioapns_rate
    if c.failed:
        row["failed"] = c.failed
    return row


def run(opts: Options) -> Report:
    cores = len(os.sched_getaffinity(0))
    pin = opts.pin and cores >= 2
    mock_cpu, client_cpu = (1, 0) if pin else (None, None)
    clients: list[Client] = []
    for backend in opts.backends:
        for conns in (1,) if opts.quick else (1, 4):  # --quick: the smoke run's rows only
            clients.append(Client(f"pushgo {backend} ×{conns}", "pushgo", backend, conns))
    # aioapns manages a few thousand a second: a quarter of the round is plenty for its rate.
    if not opts.quick:
        clients.append(Client("aioapns asyncio ×1", "aioapns", "asyncio", 1, scale=4))
    if opts.window != AIOAPNS_SMALL_WINDOW:
        # Measured here: aioapns is faster with fewer in flight; compare with its better figure.
        clients.append(Client(f"aioapns asyncio ×1, {AIOAPNS_SMALL_WINDOW} in flight", "aioapns",
                              "asyncio", 1, window=AIOAPNS_SMALL_WINDOW, scale=4))
    h2 = Client(f"h2load ×1 ({H2LOAD_STREAMS} streams)", "h2load", "native", 1)
    clients.append(h2)
    workdir = Path(tempfile.mkdtemp(prefix="pushgo-bench-sender-"))
    for i, rev in enumerate(opts.baseline):
        tree = baseline_tree(rev, workdir / f"baseline-{i}")
        name = Path(rev).name if Path(rev).is_dir() else rev
        for backend in opts.backends:
            clients.insert(0, Client(f"pushgo@{name} {backend} ×1", "pushgo", backend, 1,
                                     tree=tree))

    report = Report(
        name="sender",
        description="APNs sender alone over TLS against nginx (HTTP/2)",
        params={"n": opts.n, "warmup": opts.warmup, "rounds": opts.rounds, "window": opts.window,
                "pinned": pin, "mock": "nginx 1 worker, http2_max_concurrent_streams 1000",
                "mock_response": "",
                "h2load": f"-c 1 -m {H2LOAD_STREAMS} -t 1, 200-byte body, pushgo's headers"},
        columns=COLUMNS,
    )
    try:
        with NginxMock(cpu=mock_cpu) as mock:
            from pushgo.testing.mock_apns import APNsKey

            key = APNsKey.generate("BENCHKEY01", "BENCHTEAM1").write(workdir / "key.p8")
            setup = _h2load_setup(mock, key, workdir, client_cpu)
            report.params["mock_response"] = mock.response_headers
            report.params["tools"] = _tool_versions()
            if not mock.trimmed:
                report.notes.append("the mock's 200 also carries server/date/content-type (no "
                                    "headers-more module): response decoding costs more than on APNs")
            opts.log(f"mock: nginx on 127.0.0.1:{mock.port} (worker pid {mock.worker_pids}, "
                     f"cpu {mock_cpu}), clients on cpu {client_cpu}")
            measure(clients, mock, key, setup, opts, client_cpu)
            if opts.profile:
                report.extra["profile"] = _profile(mock, key, opts, client_cpu, workdir)
            errors = mock.error_log().strip()
            if errors:
                report.notes.append("nginx error.log: " + errors.splitlines()[-1][:200])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    aio_rates = [median([r["rate"] for r in c.rounds]) for c in clients
                 if c.impl == "aioapns" and c.rounds]
    aio_rate = max(aio_rates) if aio_rates else None  # aioapns at its best in this run
    report.rows = [_row(c, aio_rate) for c in clients]
    _checks(report, aio_rate)
    for row in report.rows:
        if row.get("mock_saturated") and row["impl"] != "h2load":
            report.notes.append(f"{row['label']}: the mock's worker used {row['mock_cpu_pct']:.0f}% "
                                f"of its core — mock-bound, not client-bound")
        if row.get("failed"):
            report.notes.append(f"{row['label']} failed: {row['failed']}")
    for base in (r for r in report.rows if r.get("baseline") and "rate" in r):
        now = next((r for r in report.rows if r["impl"] == "pushgo" and not r.get("baseline")
                    and r["backend"] == base["backend"] and r["connections"] == 1
                    and "rate" in r), None)
        if now is not None:
            report.notes.append(
                f"{now['label']} vs {base['label']}: {now['rate'] / base['rate']:.2f}× the rate, "
                f"{now['cpu_per_10k'] / base['cpu_per_10k']:.2f}× the CPU per 10k")
    h2row = next((r for r in report.rows if r["impl"] == "h2load" and "rate" in r), None)
    if h2row:
        sat = "saturated (the ceiling is the mock's core)" if h2row["mock_saturated"] else \
            "not saturated (the ceiling is h2load's core)"
        report.notes.append(f"h2load: mock worker at {h2row['mock_cpu_pct']:.0f}% of a core, {sat}")
    report.notes.append("latency: pushgo from Job submission to Result taken from the ResultBuffer; "
                        f"aioapns per send_notification; {opts.window} in flight unless the row "
                        f"says otherwise; h2load per request with {H2LOAD_STREAMS} in flight. "
                        "× aioapns is against aioapns's best row")
    mock_note(report)
    if "profile" in report.extra:
        report.appendix = "\n".join(_profile_markdown(report.extra["profile"]))
    report.chart = chart
    return report


def _checks(report: Report, aio_rate: float | None) -> None:
    rows = [r for r in report.rows if r["impl"] == "pushgo" and "rate" in r
            and not r.get("baseline")]
    if not rows:
        return
    best = max(rows, key=lambda r: r["rate"])

    def listing(pred: Any) -> str:
        return ", ".join(f"{r['label']} {'✓' if pred(r) else '✗'}" for r in rows)

    if aio_rate:
        ok = [r for r in rows if r["rate"] >= 3 * aio_rate]
        report.checks.append(Check(
            "≥ 3× aioapns (same run)", len(ok) == len(rows),
            f"aioapns (its best row) {aio_rate:,.0f}/s; " + ", ".join(
                f"{r['label']} {r['vs_aioapns']:.1f}×" for r in rows)))
    report.checks.append(Check("≥ 5,000/s from one process over TLS",
                               all(r["rate"] >= 5000 for r in rows),
                               listing(lambda r: r["rate"] >= 5000)))
    report.checks.append(Check("goal ≥ 10,000/s from one process",
                               all(r["rate"] >= 10_000 for r in rows),
                               f"best {best['label']} {best['rate']:,.0f}/s; "
                               + listing(lambda r: r["rate"] >= 10_000)))


def mock_note(report: Report) -> None:
    """Say whether the mock stayed below saturation (the harness's check of the mock)."""
    rows = [r for r in report.rows if "mock_cpu_pct" in r and r.get("impl") != "h2load"]
    if not rows:
        return
    top = max(rows, key=lambda r: r["mock_cpu_pct"])
    ok = top["mock_cpu_pct"] < SATURATED_PCT
    report.notes.append(
        f"mock CPU: at most {top['mock_cpu_pct']:.0f}% of its core ({top['label']}) — "
        + ("below saturation: the clients, not the mock, set these figures" if ok else
           f"saturated (≥ {SATURATED_PCT:.0f}%): that row measures the mock"))


def chart(report: Report, path: Path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if "rate" in r]
    labels = [r["label"] for r in rows]
    colors = ["#90cdf4" if r.get("baseline") else "#2b6cb0" if r["impl"].startswith("pushgo")
              else "#718096" if r["impl"] == "h2load" else "#c05621" for r in rows]
    panels = [("rate", "notifications/s (log)", True), ("cpu_per_10k", "CPU s per 10k", False),
              ("p99_ms", "p99 latency ms", False), ("rss_mb", "peak RSS MB", False)]
    fig, axes = plt.subplots(1, len(panels), figsize=(18, 0.55 * len(rows) + 2.2), sharey=True)
    y = list(range(len(rows)))[::-1]
    for ax, (key, title, log) in zip(axes, panels, strict=True):
        values = [float(r.get(key) or 0) for r in rows]
        ax.barh(y, values, color=colors)
        if log:
            ax.set_xscale("log")
        ax.set_title(title)
        for yi, v in zip(y, values, strict=True):
            ax.text(v, yi, f" {v:,.0f}" if v >= 100 else f" {v:.2f}", va="center", fontsize=8)
        ax.margins(x=0.25)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(labels)
    p = report.params
    fig.suptitle(title or f"sender: {p['n']:,} notifications/round, median of {p['rounds']} "
                 f"round(s), TLS → nginx (one pinned core)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SENDER = register(Benchmark(
    name="sender",
    description="pushgo's APNs sender vs aioapns vs h2load on a native mock",
    needs=NEEDS,
    run=run,
    profile_needs=PROFILE_NEEDS,
))
