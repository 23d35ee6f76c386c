"""The judge of scripts/conformance.sh (tests/conformance/judge.py) on made-up suite output:
it must fail a failing scenario, a listed one that started to hold, and a listed check that
holds, and read the real expected-failures file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conformance import judge

EXPECTED = Path(__file__).parents[1] / "conformance" / "expected-failures.yml"


def _write(root: Path, run: str, scenario: str, statuses: dict[str, str]) -> None:
    d = root / run / f"server-{scenario}-2026-01-01T00-00-00-000Z"
    d.mkdir(parents=True)
    checks = [{"id": cid, "status": st, "errorMessage": "why" if st != "SUCCESS" else None}
              for cid, st in statuses.items()]
    (d / "checks.json").write_text(json.dumps(checks))


def test_the_expected_failures_file_lists_scenarios_and_checks_with_reasons():
    expected = judge.Expected.read(EXPECTED)
    assert {"prompts-list", "logging-set-level", "tools-call-sampling"} <= expected.scenarios
    assert expected.checks["server-stateless"] == {
        "sep-2575-http-server-no-independent-requests-on-stream"}
    offered = {"tools-call-simple-text", "tools-call-with-progress", "server-sse-polling",
               "resources-read-binary", "json-schema-2020-12", "server-sse-multiple-streams"}
    assert not offered & expected.scenarios
    # Every run of entries follows a comment giving its reason.
    previous = ""
    for line in EXPECTED.read_text().splitlines():
        if line.startswith("  - "):
            assert previous.startswith(("  # ", "  - ")), line
        previous = line


def test_the_fixture_judgement(tmp_path, capsys):
    exp = EXPECTED
    _write(tmp_path, "2026-07-28", "tools-call-image", {"tools-call-image": "SUCCESS"})
    _write(tmp_path, "2026-07-28", "prompts-list", {"prompts-list": "FAILURE"})
    _write(tmp_path, "2026-07-28", "server-stateless", {
        "a": "SUCCESS", "sep-2575-http-server-no-independent-requests-on-stream": "FAILURE"})
    assert judge.main(["fixtures", str(tmp_path), str(exp)]) == 0
    out = capsys.readouterr().out
    assert "conformance [fixtures] tools-call-image: ok (2026-07-28)" in out
    assert "prompts-list: not offered" in out

    for scenario, statuses in [
            ("tools-call-audio", {"tools-call-audio": "WARNING"}),  # unexpected
            ("prompts-get-simple", {"prompts-get-simple": "SUCCESS"}),  # listed, now holds
            ("caching", {"sep-2549-prompts-list-caching-hints": "SUCCESS"})]:  # listed check
        bad = tmp_path / scenario
        _write(bad, "2025-11-25", scenario, statuses)
        assert judge.main(["fixtures", str(bad), str(exp)]) == 1, scenario
    assert judge.main(["fixtures", str(tmp_path / "empty"), str(exp)]) == 1


def test_the_serve_judgement_allows_only_what_needs_the_suites_fixtures(tmp_path):
    for run, scenarios in judge.SERVE_SCENARIOS.items():
        for s in scenarios:
            _write(tmp_path, run, s, {s: "SUCCESS"})
    assert judge.main(["serve", str(tmp_path)]) == 0
    d = tmp_path / "2026-07-28" / "server-caching-2026-01-02T00-00-00-000Z"
    d.mkdir()
    (d / "checks.json").write_text(json.dumps([
        {"id": "x", "status": "FAILURE", "errorMessage": "Not testable: needs a fixture"},
        {"id": "sep-2549-prompts-list-caching-hints", "status": "FAILURE"}]))
    assert judge.main(["serve", str(tmp_path)]) == 0  # the latest run of a scenario counts
    (d / "checks.json").write_text(json.dumps([{"id": "y", "status": "FAILURE"}]))
    assert judge.main(["serve", str(tmp_path)]) == 1
