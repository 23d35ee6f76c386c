#!/usr/bin/env bash
# Fuzz every route of pushgo's own OpenAPI document (GET /openapi.json) with Schemathesis 4
# against `pushgo serve` on loopback: a temporary SQLite store, a gateway token, MCP and OAuth
# on (so their routes are in the document too).
#
#   scripts/schemathesis.sh             # exit 0 when no check failed
#
# Phases: examples, coverage and fuzzing per operation (positive and negative data, a bounded
# number of examples each), then stateful: chains of calls along the document's OpenAPI links
# (register → subscribe → send → delivery status and send status; register → v2 pull → ack),
# then the device flow of scripts/schemathesis_flow.py: register → route → subscribe → a
# fuzzed send → v2 pull → v2 ack → v1 pull, every answer checked against the document.
# Checks: no 5xx (not_a_server_error), every status documented (status_code_conformance),
# every JSON answer valid against its schema (response_schema_conformance) and of a
# documented media type (content_type_conformance).
#
# The two never-ending Server-Sent-Events routes (GET /private/stream of a real device, GET
# /deliveries/{op_id}/stream of a real operation until it is done) are fuzzed with their
# parameters but are no link targets: a stream that stays open would only time out.
#
# Schemathesis's own output goes to $OUT (default ./schemathesis-out): run.log, the server's
# log, the flow's log (flow.log) and a JUnit report. The console gets one summary line per
# phase, in words (CI reads "N passed, M failed" lines as test results, so none is printed
# here).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-$PWD/schemathesis-out}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"
FLOW_EXAMPLES="${SCHEMATHESIS_FLOW_EXAMPLES:-40}"
mkdir -p "$OUT"
rm -rf "${OUT:?}"/*

if ! python3 -c 'import schemathesis' 2>/dev/null; then
  echo "schemathesis: not installed (pip install -e '.[test]')" >&2
  exit 1
fi

TOKEN="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DATA="$(mktemp -d)"
PUSHGO_TOKEN="$TOKEN" PUSHGO_DB_URL="sqlite:///$DATA/pushgo.db" PUSHGO_MCP_ENABLED=true \
  PUSHGO_HTTP_ADDR="127.0.0.1:$PORT" PUSHGO_LOG_LEVEL=warning PUSHGO_TOKEN_SERVICE_URL=off \
  python3 -m pushgo.cli serve >"$OUT/serve.log" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

BASE="http://127.0.0.1:$PORT"
for _ in $(seq 200); do
  curl -fsS -H "authorization: Bearer $TOKEN" "$BASE/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { echo "schemathesis: pushgo serve exited:" >&2;
                                     tail -n 20 "$OUT/serve.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/openapi.json" -o "$OUT/openapi.json" \
  || { echo "schemathesis: GET /openapi.json failed" >&2; exit 1; }

status=0
# Run inside $OUT: Schemathesis keeps its replay store (.schemathesis/) in the working directory.
(cd "$OUT" && timeout --kill-after=10 "$((MAX_TIME + 60))" \
  schemathesis run "$BASE/openapi.json" --url "$BASE" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --workers 2 \
  --request-timeout 5 --generation-database none --seed 20261207 --generation-allow-x00 false \
  --suppress-health-check all --no-color \
  --report junit --report-junit-path "$OUT/junit.xml" \
  >"$OUT/run.log" 2>&1) || status=$?

# One line per phase, from Schemathesis's summary, reworded so no line reads "N passed, M failed".
python3 - "$OUT/run.log" "$OUT/junit.xml" <<'PY'
import re, sys, xml.etree.ElementTree as ET
log = open(sys.argv[1], encoding="utf-8", errors="replace").read()
for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
    m = re.search(rf"^\s*[^\n]*{phase}\s*\(([^)\n]*)\)[^\n]*$", log, re.M)
    words = (m.group(0).strip() if m else f"{phase}: no summary line")
    words = re.sub(r"(\d+)\s+passed", r"\1 ok", words)
    words = re.sub(r"(\d+)\s+failed", r"\1 with failures", words)
    print(f"schemathesis {phase.lower()}: {words}")
try:
    cases = ET.parse(sys.argv[2]).getroot().iter("testcase")
    bad = sorted({c.get("name", "?") for c in cases if c.find("failure") is not None
                  or c.find("error") is not None})
except (OSError, ET.ParseError):
    bad = []
for name in bad:
    print(f"schemathesis: failing operation {name}")
PY
if [ "$status" -ne 0 ]; then
  echo "schemathesis: exit status $status; details in $OUT/run.log" >&2
else
  echo "schemathesis: no failures (log: $OUT/run.log)"
fi

# The device flow (register → subscribe → fuzzed send → pull → ack), which links cannot chain.
flow=0
timeout --kill-after=10 120 python3 scripts/schemathesis_flow.py "$BASE" "$TOKEN" \
  "$FLOW_EXAMPLES" >"$OUT/flow.log" 2>&1 || flow=$?
echo "schemathesis $(tail -n 1 "$OUT/flow.log")"
if [ "$flow" -ne 0 ]; then
  echo "schemathesis flow: exit status $flow; details in $OUT/flow.log" >&2
  status=$flow
fi
exit "$status"
