#!/usr/bin/env bash
# Run the official MCP conformance suite's `authorization` command
# (@modelcontextprotocol/conformance, 0.2.0 line) against pushgo's OAuth 2.1 authorization
# server: `pushgo serve` on loopback with MCP enabled.
#
#   scripts/conformance-auth.sh       # exit 0 when every authorization-server scenario passes
#
# The suite's scenarios: authorization-server-metadata-endpoint (RFC 8414 metadata at the
# issuer's well-known URL, issuer byte-exact) and authorization-code-grant (a PKCE S256
# authorization request with `resource`, a callback on http://127.0.0.1:<port>/callback
# carrying code, state and iss, then the token request). The suite prints the authorize URL
# for a user; here a small HTTP client plays the user: it opens that URL, fills the bind
# form (channel_id + password of a channel made through the HTTP API), approves, and follows
# the redirect to the suite's callback. The client is registered through DCR as a public
# client (token_endpoint_auth_method=none).
#
# Needs npm and curl. Node >= 22 and the suite (0.2.0-alpha.12) are installed into
# $PUSHGO_CONFORMANCE_DIR (default ~/.cache/pushgo-conformance) by scripts/mcp-node-tools.sh.
# The suite's own output and checks.json files go to $OUT (default ./conformance-auth-out);
# this script prints one line per scenario and judges by the suite's exit code and
# checks.json.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-$PWD/conformance-auth-out}"
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="${PORT:-$(free_port)}"
CALLBACK_PORT="${CALLBACK_PORT:-$(free_port)}"

rm -rf "${OUT:?}"/*
TOOLS="$(scripts/mcp-node-tools.sh conformance 2>"$OUT/npm.log")" \
  || { echo "installing the conformance suite failed:" >&2; tail -n 20 "$OUT/npm.log" >&2; exit 1; }
eval "$TOOLS"
if [ -n "$PUSHGO_NODE_BIN" ]; then
  export PATH="$PUSHGO_NODE_BIN:$PATH"
fi
SUITE="$PUSHGO_CONFORMANCE_V2"

DATA="$(mktemp -d)"
GATEWAY_TOKEN="conformance-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
# The issuer is the loopback origin the suite is given (no PUSHGO_PUBLIC_BASE_URL).
env -u PUSHGO_PUBLIC_BASE_URL PUSHGO_MCP_ENABLED=true PUSHGO_MCP_AUTH_MODE=oauth \
  PUSHGO_MCP_DCR_ENABLED=true PUSHGO_TOKEN="$GATEWAY_TOKEN" \
  PUSHGO_DB_URL="sqlite:///$DATA/pushgo.db" PUSHGO_HTTP_ADDR="127.0.0.1:$PORT" \
  PUSHGO_LOG_LEVEL=warning python3 -m pushgo.cli serve >"$OUT/server.log" 2>&1 &
SERVER=$!
SUITE_PID=""
cleanup() {
  [ -n "$SUITE_PID" ] && kill "$SUITE_PID" 2>/dev/null || true
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
ready() { curl -fsS -H "authorization: Bearer $GATEWAY_TOKEN" "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; }
for _ in $(seq 300); do
  ready && break
  kill -0 "$SERVER" 2>/dev/null || { echo "pushgo serve exited; see $OUT/server.log" >&2; exit 1; }
  sleep 0.1
done
ready || { echo "pushgo serve did not become ready; see $OUT/server.log" >&2; exit 1; }
ISSUER="http://127.0.0.1:$PORT"

# A channel (through the HTTP API) and a public client (through DCR) for the suite.
CLIENT_ID="$(python3 - "$ISSUER" "$GATEWAY_TOKEN" "$CALLBACK_PORT" "$OUT/setup.json" <<'EOF'
import json, secrets, sys
import httpx

issuer, token, port, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
password = "conf-" + secrets.token_hex(8)
with httpx.Client(base_url=issuer, timeout=30,
                  headers={"authorization": f"Bearer {token}"}) as api:
    key = api.post("/device/register", json={"platform": "ios"}).json()["data"]["device_key"]
    resp = api.post("/channel/subscribe", json={"device_key": key, "channel_name": "conformance",
                                                "password": password})
    channel_id = resp.json()["data"]["channel_id"]
with httpx.Client(timeout=30) as http:
    meta = http.get(issuer + "/.well-known/oauth-authorization-server").json()
    resp = http.post(meta["registration_endpoint"], json={
        "client_name": "MCP conformance suite", "token_endpoint_auth_method": "none",
        "redirect_uris": [f"http://127.0.0.1:{port}/callback"],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]})
    if resp.status_code != 201:
        sys.exit(f"registration refused: {resp.status_code} {resp.text[:300]}")
    client_id = resp.json()["client_id"]
json.dump({"channel_id": channel_id, "password": password}, open(out, "w"))
print(client_id)
EOF
)"

# The suite, in the background: it prints the authorize URL, then waits for its callback.
"$SUITE" authorization --url "$ISSUER" --client-id "$CLIENT_ID" --resource "$ISSUER/mcp" \
  --port "$CALLBACK_PORT" -o "$OUT" >"$OUT/suite.log" 2>&1 &
SUITE_PID=$!

# The user: open the printed URL, fill in and approve the bind form, follow the redirect.
# When that fails the suite would wait minutes for its callback: stop it at once.
USER_OK=1
python3 - "$ISSUER" "$OUT/suite.log" "$OUT/setup.json" "$CALLBACK_PORT" >"$OUT/user.log" 2>&1 <<'EOF' || USER_OK=0
import json, re, sys, time
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin
import httpx

issuer, log_path, setup_path, port = sys.argv[1:5]
setup = json.load(open(setup_path))
callback = f"http://127.0.0.1:{port}/callback"


class FormParser(HTMLParser):
    """The form that has a channel_id field: its action, hidden fields, approve button."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": [], "names": set(),
                               "approve": None})
        elif self.forms and tag in ("input", "button"):
            form = self.forms[-1]
            name, kind = a.get("name"), (a.get("type") or "").lower()
            if name:
                form["names"].add(name)
            if tag == "input" and kind == "hidden" and name:
                form["fields"].append((name, a.get("value") or ""))
            if tag == "button" and name and (a.get("value") or "") == "approve":
                form["approve"] = (name, "approve")


url = None
deadline = time.monotonic() + 60
while url is None and time.monotonic() < deadline:
    text = open(log_path, errors="replace").read()
    m = re.search(r"^(https?://\S+/authorize\?\S+)$", text, re.M)
    if m:
        url = m.group(1)
    else:
        time.sleep(0.1)
if url is None:
    sys.exit("no authorize URL in the suite's output")
print("authorize URL printed by the suite")
with httpx.Client(timeout=30) as browser:
    page = browser.get(url)
    print("authorize page:", page.status_code)
    parser = FormParser()
    parser.feed(page.text)
    forms = [f for f in parser.forms if {"channel_id", "password"} <= f["names"]]
    if page.status_code != 200 or not forms:
        sys.exit("no bind form on the authorize page")
    form = forms[0]
    fields = [*form["fields"], ("channel_id", setup["channel_id"]),
              ("password", setup["password"])]
    if form["approve"]:
        fields.append(form["approve"])
    resp = browser.post(urljoin(str(page.url), form["action"]), content=urlencode(fields),
                        headers={"content-type": "application/x-www-form-urlencoded"})
    location = resp.headers.get("location", "")
    print("form answer:", resp.status_code, "to the callback" if location.startswith(
        callback + "?") else "elsewhere")
    if resp.status_code not in (302, 303) or not location.startswith(callback + "?"):
        sys.exit("the form did not redirect to the callback")
    # The suite logs when its callback listener is up; it starts before the URL is printed.
    while "Callback server started" not in open(log_path, errors="replace").read():
        if time.monotonic() > deadline:
            sys.exit("the suite's callback listener never started")
        time.sleep(0.05)
    print("callback:", browser.get(location).status_code)
EOF

[ "$USER_OK" = 1 ] || kill "$SUITE_PID" 2>/dev/null || true
set +e
wait "$SUITE_PID"
SUITE_RC=$?
set -e
SUITE_PID=""

python3 - "$OUT" "$SUITE_RC" <<'EOF'
"""One line per scenario from its checks.json; fail on any FAILURE, a missing scenario, or
the suite's own non-zero exit."""
import glob, json, os, sys

out, suite_rc = sys.argv[1], int(sys.argv[2])
SCENARIOS = ["authorization-server-metadata-endpoint", "authorization-code-grant"]
bad = 0
for s in SCENARIOS:
    found = sorted(glob.glob(os.path.join(out, f"authorization-server-{s}-*", "checks.json")))
    if not found:
        print(f"conformance authorization {s}: MISSING")
        bad += 1
        continue
    checks = json.load(open(found[-1]))
    failing = [c for c in checks if c["status"] == "FAILURE"]
    skipped = [c for c in checks if c["status"] == "SKIPPED"]
    warnings = [c for c in checks if c["status"] == "WARNING"]
    ok = not failing and not skipped and any(c["status"] == "SUCCESS" for c in checks)
    notes = [f"{len(checks)} checks"]
    if warnings:
        notes.append(f"warnings: {', '.join(c['id'] for c in warnings)}")
    print(f"conformance authorization {s}: {'ok' if ok else 'FAIL'} ({'; '.join(notes)})")
    for c in failing + skipped:
        print(f"    {c['id']} {c['status']}: {(c.get('errorMessage') or '')[:200]}")
    bad += not ok
if suite_rc != 0:
    print(f"conformance authorization: the suite exited {suite_rc} (see {out}/suite.log)")
    bad += 1
if bad:
    user = open(os.path.join(out, "user.log")).read().strip().splitlines()
    print(f"    the user's side of the flow ended with: {user[-1] if user else '(nothing)'}")
sys.exit(1 if bad else 0)
EOF
