"""Test doubles: the push providers as real HTTP/2 peers over TLS with pluggable behaviour,
and the MCP conformance suite's fixtures on pushgo's MCP engine.

- `tls`: throw-away CA, server certificate and CA file (`LocalCA`).
- `exchange`, `h2server`, `h11conn`, `records`: a generic HTTP/2 (+HTTP/1.1) test server
  (`H2Server`) whose handler chooses a response, RST_STREAM, GOAWAY, a dropped connection or a
  delay; records with event-based waiters (`Recorder`).
- `mock_apns`: `MockAPNs` (accept-all / validating / scripted), `APNsKey`.
- `mock_fcm`: `MockFCM` (OAuth token endpoint + messages:send), `ServiceAccount`.
- `counting_apns`: a light APNs peer that only counts (volume tests and benchmarks).
- `mockcli`: what the mocks' command lines share: one CA for every mock (under the user's
  cache dir), the gateway settings printed as `export` lines, a clean stop on Ctrl-C/SIGTERM.
- `scripted`: scripted answers for the mocks (rejections, GOAWAY, drops, silence, delays).
- `mcp_fixtures`: the tools and resources the MCP conformance suite calls by name.

Used by tests and benchmarks only: nothing in the gateway imports this package. This
`__init__` imports no submodule, so `python -m pushgo.testing.mock_apns` runs cleanly.
"""
