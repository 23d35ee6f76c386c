"""Starlette routes of the HTTP API: thin (decode, call a service, encode)."""
