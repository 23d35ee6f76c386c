"""Timestamps on input: Unix seconds or milliseconds, as a number or a numeric string.

|v| < 1e12 means seconds. Everything is stored as epoch milliseconds. Pure.
"""

from __future__ import annotations

import math

_SECONDS_LIMIT = 1_000_000_000_000
# Anything beyond year ~5138 in ms is nonsense input, not a time.
_MAX_MS = 100_000_000_000_000


def to_epoch_ms(value: object) -> int | None:
    """Return epoch ms, or None when ``value`` is not a usable timestamp."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number: float = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
    elif isinstance(value, int | float):
        number = value
    else:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    # round(): fractional seconds are not exact in binary (1.001 * 1000 == 1000.999…).
    ms = round(number * 1000) if abs(number) < _SECONDS_LIMIT else number
    if ms < 0 or ms > _MAX_MS:
        return None
    return int(ms)
