"""Judge runs of the MCP conformance suite by their ``checks.json`` files (never by the
suite's own summary lines) and print one line per scenario.

    python -m tests.conformance.judge serve   OUT/serve   [--fixtures]
    python -m tests.conformance.judge fixtures OUT/fixtures EXPECTED_FAILURES_YML

``serve``: the scenarios that need no fixture of the suite's own, against ``pushgo serve``;
checks the suite itself marks "Not testable" (for want of its fixture tools) are allowed,
warnings are reported but allowed. ``fixtures``: every scenario the suite ran against the
fixture app; a check that FAILs or WARNs fails its scenario unless the expected-failures
file lists the scenario (or that check), and a listed one that passes is an error too (the
file is out of date). Exit status 0 when everything holds.

Each OUT directory holds one directory per suite run (``0.1.16``, ``2025-11-25``,
``2026-07-28``), each with the suite's ``<scenario>-<timestamp>/checks.json`` files.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNS = ("0.1.16", "2025-11-25", "2026-07-28")

#: Against ``pushgo serve``: run → the fixture-free scenarios judged there.
SERVE_SCENARIOS: dict[str, list[str]] = {
    "0.1.16": ["server-initialize", "ping", "tools-list", "dns-rebinding-protection"],
    "2025-11-25": ["server-initialize", "ping", "tools-list", "dns-rebinding-protection",
                   "server-session-lifecycle"],
    "2026-07-28": ["server-stateless", "http-header-validation", "caching",
                   "sep-2164-resource-not-found", "tools-list", "dns-rebinding-protection"],
}
#: Checks allowed to fail against ``pushgo serve``: pushgo serves no prompts.
SERVE_ALLOWED = {"sep-2549-prompts-list-caching-hints"}
BAD = ("FAILURE", "WARNING")
_STAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


@dataclass
class Expected:
    scenarios: set[str] = field(default_factory=set)
    checks: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Expected:
        """The ``server:`` list of an expected-failures YAML file (plain ``- item`` lines,
        ``#`` comments), without a YAML library."""
        out = cls()
        section = None
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            if not line.startswith((" ", "-")):
                section = line.strip().rstrip(":")
                continue
            item = line.strip()
            if section != "server" or not item.startswith("- "):
                continue
            entry = item[2:].strip()
            scenario, sep, check = entry.partition(":")
            if sep:
                out.checks.setdefault(scenario, set()).add(check)
            else:
                out.scenarios.add(scenario)
        return out


def latest_checks(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """scenario name → the checks of its latest run in ``run_dir``."""
    found: dict[str, tuple[str, Path]] = {}
    for checks in sorted(run_dir.glob("*/checks.json")):
        name = _STAMP.sub("", checks.parent.name).removeprefix("server-")
        stamp = checks.parent.name
        if name not in found or stamp > found[name][0]:
            found[name] = (stamp, checks)
    return {name: json.loads(p.read_text()) for name, (_, p) in found.items()}


def _bad(checks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in checks if c.get("status") in BAD]


def _why(checks: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c['id']}: {(c.get('errorMessage') or '')[:160]}" for c in checks)


@dataclass
class Verdict:
    ok: bool
    text: str


def judge_serve(run: str, scenario: str, checks: list[dict[str, Any]] | None) -> Verdict:
    if checks is None:
        return Verdict(False, "MISSING (the suite did not run it)")
    failing = [c for c in checks if c.get("status") == "FAILURE"
               and c["id"] not in SERVE_ALLOWED
               and not (c.get("errorMessage") or "").startswith("Not testable")]
    if failing:
        return Verdict(False, "FAIL " + _why(failing))
    return Verdict(True, "ok")


def judge_fixture(scenario: str, checks: list[dict[str, Any]], expected: Expected) -> Verdict:
    bad = _bad(checks)
    if scenario in expected.scenarios:
        if bad:
            return Verdict(True, "not offered (fails as listed)")
        return Verdict(False, "LISTED AS EXPECTED TO FAIL BUT NOW HOLDS: update "
                              "tests/conformance/expected-failures.yml")
    allowed = expected.checks.get(scenario, set())
    unexpected = [c for c in bad if c["id"] not in allowed]
    if unexpected:
        return Verdict(False, "FAIL " + _why(unexpected))
    holding = {c["id"] for c in checks if c.get("status") == "SUCCESS"} & allowed
    if holding:
        return Verdict(False, f"listed checks now hold ({', '.join(sorted(holding))}): update "
                              "tests/conformance/expected-failures.yml")
    if allowed:
        return Verdict(True, f"ok ({len(allowed)} check(s) of a capability not offered)")
    return Verdict(True, "ok")


def _print(target: str, scenario: str, runs: list[str], verdict: Verdict) -> None:
    print(f"conformance [{target}] {scenario}: {verdict.text} ({', '.join(runs)})")


def _report(target: str, verdicts: dict[str, dict[str, Verdict]]) -> int:
    """One line per scenario (runs with the same verdict folded together)."""
    bad = 0
    for scenario in sorted(verdicts):
        by_text: dict[str, list[str]] = {}
        results = verdicts[scenario]
        for run in RUNS:
            if run in results:
                by_text.setdefault(results[run].text, []).append(run)
        for text, runs in by_text.items():
            verdict = results[runs[0]]
            _print(target, scenario, runs, verdict)
            bad += not verdict.ok
    return bad


def main(argv: list[str]) -> int:
    mode, out = argv[0], Path(argv[1])
    verdicts: dict[str, dict[str, Verdict]] = {}
    if mode == "serve":
        for run, scenarios in SERVE_SCENARIOS.items():
            checks = latest_checks(out / run)
            for scenario in scenarios:
                verdicts.setdefault(scenario, {})[run] = judge_serve(
                    run, scenario, checks.get(scenario))
        return 1 if _report("serve", verdicts) else 0
    expected = Expected.read(Path(argv[2]))
    seen = 0
    for run in RUNS:
        for scenario, run_checks in latest_checks(out / run).items():
            seen += 1
            verdicts.setdefault(scenario, {})[run] = judge_fixture(scenario, run_checks,
                                                                   expected)
    if not seen:
        print("conformance [fixtures]: no results found", file=sys.stderr)
        return 1
    return 1 if _report("fixtures", verdicts) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
