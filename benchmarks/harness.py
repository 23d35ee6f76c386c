"""The suite's plumbing, shared by every benchmark: the registry, run options, tool checks,
the machine record, statistics, result files, the Markdown table and the chart.

A benchmark is a module that calls :func:`register` with a :class:`Benchmark`: a name, a
one-line description, what it needs (:class:`Need`), and ``run(opts) -> Report``. The report
holds rows (one per implementation/configuration, figures as plain numbers), the columns to
print, notes, and checks (the targets in benchmarks/README.md, pass/fail). ``__main__`` does the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"

#: Packages whose versions go into every result file.
VERSIONED = ("pushgo", "h2", "hpack", "anyio", "trio", "aioapns", "uvloop", "matplotlib")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    quick: bool
    n: int  # notifications / requests per measured round
    warmup: int  # per warm-up round
    rounds: int  # measured rounds (median reported)
    window: int  # requests kept in flight by the Python clients
    pin: bool  # mock on one CPU, clients on another
    profile: bool  # also profile pushgo (benchmarks that support it)
    backends: tuple[str, ...]
    verbose: bool
    stamp: str  # the run's UTC timestamp: names every file it writes
    #: git revisions (or directories holding a ``pushgo`` package) whose pushgo runs beside
    #: the working tree's in the same run, where a benchmark supports it
    baseline: tuple[str, ...] = ()
    bulk_items: int | None = None  # items in one bulk body (bulk benchmark)

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- requirements


@dataclass(frozen=True)
class Need:
    """Something a benchmark needs: an executable from a Debian package, or a Python module
    from a PyPI distribution."""

    kind: str  # "apt" or "pip"
    package: str
    #: what shows it is there: an importable module, "bin:NAME" (an executable on PATH or
    #: beside this interpreter; any apt need without "/" is one), or an absolute path
    provides: str

    def present(self) -> bool:
        p = self.provides
        if p.startswith("/"):
            return Path(p).exists()
        if self.kind == "apt" or p.startswith("bin:"):
            return executable(p.removeprefix("bin:")) is not None
        return importlib.util.find_spec(p) is not None


def executable(name: str) -> str | None:
    """An executable on PATH, in /usr/sbin, or beside this interpreter (pip's scripts)."""
    found = shutil.which(name)
    if found:
        return found
    for d in (Path("/usr/sbin"), Path(sys.executable).parent):
        if (d / name).exists():
            return str(d / name)
    return None


def start_pyspy(pyspy: str, pid: int, raw: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling process ``pid`` (500 Hz, without pausing it) into ``raw`` (collapsed
    stacks), attached by the time this returns."""
    spy = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--nonblocking",  # noqa: S603
                            "-f", "raw", "-r", "500", "-o", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    return spy


def stop_pyspy(spy: subprocess.Popen[bytes] | None) -> None:
    """Stop a ``start_pyspy`` (SIGINT: it writes its file), killed if it will not."""
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()


def ensure(needs: Sequence[Need], *, install: bool, log: Callable[[str], None]) -> list[Need]:
    """Install what is missing (apt-get as root, pip into this interpreter); return what is
    still missing afterwards."""
    missing = [n for n in needs if not n.present()]
    if install and missing:
        apt = sorted({n.package for n in missing if n.kind == "apt"})
        pip = sorted({n.package for n in missing if n.kind == "pip"})
        apt_get = shutil.which("apt-get")
        if apt and os.geteuid() == 0 and apt_get:
            log(f"installing from Debian: {' '.join(apt)}")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            # Fixed package names from the benchmark modules, not user input.
            subprocess.run([apt_get, "update", "-qq"], env=env, check=False,  # noqa: S603
                           stdout=subprocess.DEVNULL)
            subprocess.run([apt_get, "install", "-y", "-qq", *apt], env=env,  # noqa: S603
                           check=False, stdout=subprocess.DEVNULL)
        if pip:
            log(f"installing from PyPI: {' '.join(pip)}")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *pip],  # noqa: S603
                           check=False)
        importlib.invalidate_caches()
        missing = [n for n in needs if not n.present()]
    return missing


def describe_missing(missing: Sequence[Need]) -> str:
    apt = sorted({n.package for n in missing if n.kind == "apt"})
    pip = sorted({n.package for n in missing if n.kind == "pip"})
    parts = []
    if apt:
        parts.append("apt-get install -y " + " ".join(apt))
    if pip:
        parts.append("pip install " + " ".join(repr(p) if "<" in p or ">" in p else p for p in pip))
    return "missing: " + "; ".join(parts)


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
        "versions": versions,
    }


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    fmt: str = "{:,.0f}"

    def render(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        if value is None or value == "":
            return "–"
        if isinstance(value, str):
            return value
        try:
            return self.fmt.format(value)
        except (ValueError, TypeError):
            return str(value)


@dataclass
class Check:
    target: str
    passed: bool
    detail: str


@dataclass
class Report:
    name: str
    description: str
    params: dict[str, Any]
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. profiles
    appendix: str = ""  # Markdown printed below the table (e.g. profile tables)
    chart: Callable[[Report, Path], None] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": self.params,
            "rows": self.rows,
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "notes": self.notes,
            "extra": self.extra,
        }

    def markdown(self) -> str:
        head = "| " + " | ".join(c.title for c in self.columns) + " |"
        sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"
        lines = [f"### {self.name} — {self.description}", "", head, sep]
        lines += ["| " + " | ".join(c.render(r) for c in self.columns) + " |" for r in self.rows]
        if self.checks:
            lines.append("")
            for c in self.checks:
                lines.append(f"- {'PASS' if c.passed else 'FAIL'} {c.target}: {c.detail}")
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        if self.appendix:
            lines += ["", self.appendix]
        return "\n".join(lines)


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    needs: tuple[Need, ...]
    run: Callable[[Options], Report]
    profile_needs: tuple[Need, ...] = ()


REGISTRY: dict[str, Benchmark] = {}


def register(bench: Benchmark) -> Benchmark:
    REGISTRY[bench.name] = bench
    return bench


def baseline_tree(rev: str, dest: Path) -> Path:
    """pushgo as of git revision ``rev`` in ``dest/pushgo`` (beside a link to this
    ``benchmarks``): a client started with ``cwd=dest`` imports that pushgo, so a benchmark
    can measure a change against its base in the same run."""
    if Path(rev).is_dir() and (Path(rev) / "pushgo").is_dir():  # a copy made by hand
        tree = Path(rev).resolve()
        if not (tree / "benchmarks").exists():
            (tree / "benchmarks").symlink_to(ROOT, target_is_directory=True)
        return tree
    root = ROOT.parent
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("--baseline needs git")
    dest.mkdir(parents=True, exist_ok=True)
    # A revision named on our own command line; git rejects anything that is not one.
    archive = subprocess.run([git, "-C", str(root), "archive", "--format=tar", rev, "pushgo"],  # noqa: S603
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {rev}: {archive.stderr.decode(errors='replace').strip()}")
    tar = shutil.which("tar")
    if tar is None:
        raise RuntimeError("--baseline needs tar")
    subprocess.run([tar, "-x", "-C", str(dest)], input=archive.stdout, check=True)  # noqa: S603
    (dest / "benchmarks").symlink_to(ROOT, target_is_directory=True)
    return dest


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def write_result(report: Report, machine_info: dict[str, Any], opts: Options) -> Path:
    """``results/<name>-<stamp>.json`` (``results/quick/`` for smoke runs, never committed)."""
    folder = RESULTS / "quick" if opts.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = opts.stamp
    path = folder / f"{report.name}-{stamp}.json"
    doc = {
        "benchmark": report.name,
        "timestamp": stamp,
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]]),
        "machine": machine_info,
        "options": dataclasses.asdict(opts),
        **report.to_json(),
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
