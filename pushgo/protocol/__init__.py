"""Pure wire code: stdlib, msgspec, h2/hpack only. No I/O, no clock, no anyio/trio/starlette/
sqlalchemy. Callers pass in randomness and time."""
