"""Identifiers: channel ids (128 bits as 26-char Crockford base32), device keys and the 32-hex
ids of messages and deliveries, op ids and event/thing ids.

Pure: generators take the random bytes from the caller.
"""

from __future__ import annotations

import re

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}
# Crockford's readable aliases: O→0, I/L→1.
_DECODE.update({"O": 0, "I": 1, "L": 1})

CHANNEL_ID_LEN = 26
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CHANNEL_SYMBOLS = re.compile(f"[{_CROCKFORD}]{{{CHANNEL_ID_LEN}}}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_TOKEN_ID = re.compile(r"[A-Za-z0-9_:\-]+")


def encode_channel_id(raw: bytes) -> str:
    """16 random bytes → 26 uppercase Crockford base32 characters, as v1.2.9: the 128 bits are
    shifted left by 2, so the last symbol carries 3 bits and its low 2 bits are always 0."""
    if len(raw) != 16:
        raise ValueError("a channel id is 16 bytes")
    value = int.from_bytes(raw, "big") << 2
    out = []
    for _ in range(CHANNEL_ID_LEN):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def parse_channel_id(text: str) -> str | None:
    """Normalize a channel id given on input (case-insensitive); None if it is not one.

    The canonical form is the input upper-cased with Crockford's aliases resolved (what
    decoding and re-encoding it gives), provided every symbol is Crockford's and the last one
    has its two low bits clear — checked without the per-symbol arithmetic (every send parses
    one)."""
    text = text.strip().upper()
    if len(text) != CHANNEL_ID_LEN:
        return None
    canonical = text.translate(_ALIASES)
    if _CHANNEL_SYMBOLS.fullmatch(canonical) is None:
        return None
    if _DECODE[canonical[-1]] & 3:  # not the canonical form v1.2.9 issues
        return None
    return canonical


def hex_id(raw: bytes) -> str:
    """16 random bytes → 32 lowercase hex characters (device keys, message and delivery ids)."""
    if len(raw) != 16:
        raise ValueError("an id is 16 bytes")
    return raw.hex()


def is_hex32(text: str) -> bool:
    return _HEX32.fullmatch(text) is not None


def parse_device_key(text: str) -> str | None:
    value = text.strip().lower()
    return value if is_hex32(value) else None


def is_token_id(text: str, max_len: int) -> bool:
    """op_id / event_id / thing_id shape: 1..max_len of [A-Za-z0-9_:-]."""
    return 0 < len(text) <= max_len and _TOKEN_ID.fullmatch(text) is not None


def redact(value: str) -> str:
    """An id as it may appear in a log line: ``abcd…wxyz``."""
    if len(value) <= 10:
        return "…"
    return f"{value[:4]}…{value[-4:]}"


def is_digits(text: str) -> bool:
    """One or more ASCII digits: ``str.isdigit`` alone also takes '²' and other digits that
    ``int`` refuses, which would turn bad input into an error of the gateway's own."""
    return text.isascii() and text.isdigit()
