"""Test doubles for the push providers: real HTTP/2 peers over TLS with pluggable behaviour.

- `tls`: throw-away CA, server certificate and CA file (`LocalCA`).
- `exchange`, `h2server`, `h11conn`, `records`: a generic HTTP/2 (+HTTP/1.1) test server
  (`H2Server`) whose handler chooses a response, RST_STREAM, GOAWAY, a dropped connection or a
  delay; records with event-based waiters (`Recorder`).
- `mock_apns`: `MockAPNs` (accept-all / validating / scripted), `APNsKey`.
- `mock_fcm`: `MockFCM` (OAuth token endpoint + messages:send), `ServiceAccount`.

Used by tests and benchmarks only: nothing in the gateway imports this package. This
`__init__` imports no submodule, so `python -m pushgo.testing.mock_apns` runs cleanly.
"""
