"""``python -m benchmarks [--quick] [--only NAME] [--profile]`` — see benchmarks/README.md."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from benchmarks import harness
from benchmarks.harness import REGISTRY, Options

#: Benchmark modules, each registering itself on import. A new benchmark is a module here.
MODULES = ("benchmarks.sender", "benchmarks.sender_fcm", "benchmarks.fanout", "benchmarks.ingest",
           "benchmarks.mcp", "benchmarks.bulk", "benchmarks.private_fanout",
           "benchmarks.fairness")
#: The suite's planned rows, for --list: the ones not written yet.
PLANNED: tuple[str, ...] = ()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="pushgo's benchmark suite")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 5k per round, one measured round, short timed rounds "
                        "(the whole suite in under two minutes)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this benchmark (repeatable, or comma-separated)")
    p.add_argument("--n", type=int, help="notifications per measured round (100k; 5k with --quick)")
    p.add_argument("--rounds", type=int, help="measured rounds, median reported (5; 1 with --quick)")
    p.add_argument("--warmup", type=int, help="notifications in the warm-up round (n/5)")
    p.add_argument("--window", type=int, default=1000,
                   help="requests the Python clients keep in flight (1000)")
    p.add_argument("--backends", default="trio,asyncio", help="anyio backends for pushgo rows")
    p.add_argument("--profile", action="store_true",
                   help="also profile pushgo (cProfile and py-spy) and print the top costs")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the mock and the clients to separate CPUs")
    p.add_argument("--no-install", action="store_true",
                   help="do not apt-get/pip install missing tools: say what is missing and stop")
    p.add_argument("--baseline", metavar="REV", action="append", default=[],
                   help="also run pushgo as of this git revision (or from this directory "
                        "holding a pushgo package) beside the working tree's (sender, "
                        "sender-fcm): a change's before/after in one run; repeatable")
    p.add_argument("--bulk-items", type=int,
                   help="items in the bulk benchmark's body (20k; 1k with --quick; 1000000 for "
                        "the memory target)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    for mod in MODULES:
        importlib.import_module(mod)
    if args.list:
        for b in REGISTRY.values():
            print(f"{b.name:12} {b.description}")
        for name in PLANNED:
            if name not in REGISTRY:
                print(f"{name:12} (planned, see benchmarks/README.md)")
        return 0
    only = [n for item in args.only for n in item.split(",") if n]
    unknown = [n for n in only if n not in REGISTRY]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}",
              file=sys.stderr)
        return 2
    selected = [REGISTRY[n] for n in (only or list(REGISTRY))]

    n = args.n or (5_000 if args.quick else 100_000)
    opts = Options(
        quick=args.quick, n=n, warmup=args.warmup or max(1000, n // 5),
        rounds=args.rounds or (1 if args.quick else 5), window=args.window, pin=not args.no_pin,
        profile=args.profile, backends=tuple(b for b in args.backends.split(",") if b),
        verbose=args.verbose, stamp=harness.timestamp(), baseline=tuple(args.baseline),
        bulk_items=args.bulk_items,
    )
    for b in selected:
        needs = b.needs + (b.profile_needs if args.profile else ())
        missing = harness.ensure(needs, install=not args.no_install, log=opts.log)
        if missing:
            print(f"{b.name}: {harness.describe_missing(missing)}", file=sys.stderr)
            return 2

    machine = harness.machine()
    reports = []
    t0 = time.monotonic()
    for b in selected:
        opts.log(f"== {b.name}: {b.description}")
        report = b.run(opts)
        path = harness.write_result(report, machine, opts)
        opts.log(f"results: {path}")
        if report.chart is not None:
            png = path.with_suffix(".png")
            try:
                report.chart(report, png)
                opts.log(f"chart: {png}")
            except Exception as exc:  # a chart is a convenience, never a failed run
                opts.log(f"chart failed: {exc}")
        reports.append(report)

    v = machine["versions"]
    print()
    print(f"Machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gb']} GB, "
          f"Python {machine['python']}; " + ", ".join(f"{k} {v[k]}" for k in v if v[k])
          + f"; load {machine['load_avg'][0]:.2f}; {time.monotonic() - t0:.0f} s")
    print(f"Backends: {', '.join(opts.backends)}; {opts.n:,} per round, median of {opts.rounds} "
          f"round(s) after a {opts.warmup:,} warm-up")
    for report in reports:
        print()
        print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
